// A deterministic .tar.gz of a local app directory: same files in, same bytes (and release id)
// out, whatever the machine's clock, umask or file times. Written by node-tar (pax headers, so
// no path-length limit); which files go in follows the app's ignore file.
import * as fs from "fs";
import * as path from "path";
import ignore from "ignore";
import * as tar from "tar";

/** Never shipped: the host installs dependencies itself, and git's data is not the app. */
const ALWAYS_SKIPPED = ["node_modules/", ".git/", ".DS_Store"];
/**
 * The first of these the app has decides what else stays behind (gitignore syntax), as
 * gcloud's .gcloudignore falls back to .gitignore: a checkout's ignored files (a local `.env`,
 * build output) do not travel unless `.nodehostignore` says otherwise.
 */
export const IGNORE_FILES = [".nodehostignore", ".gitignore"];

/** The app's files to ship, relative to `dir`, sorted; symlinks and other non-files are left out. */
export function appFiles(dir: string): string[] {
  const rules = ignore().add(ALWAYS_SKIPPED);
  const ignoreFile = IGNORE_FILES.find((f) => fs.existsSync(path.join(dir, f)));
  if (ignoreFile) rules.add(fs.readFileSync(path.join(dir, ignoreFile), "utf8"));
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const entry of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const child = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        if (!rules.ignores(`${child}/`)) walk(child);
      } else if (entry.isFile() && !rules.ignores(child)) {
        out.push(child);
      }
    }
  };
  walk("");
  return out.sort();
}

/** Packs `dir`'s app files as a gzipped tar (entries relative to `dir`), byte for byte repeatable. */
export function packDirectory(dir: string): Buffer {
  if (!fs.existsSync(path.join(dir, "package.json"))) {
    throw new Error(`app directory ${dir} has no package.json`);
  }
  const files = appFiles(dir);
  if (!files.includes("package.json")) {
    throw new Error(`app directory ${dir}: its ignore file leaves out package.json`);
  }
  const chunks: Buffer[] = [];
  const stream = tar.create(
    {
      sync: true,
      cwd: dir,
      gzip: { level: 9 },
      strict: true,
      portable: true, // no uid, gid, user or group names, atime or ctime
      mtime: new Date(0),
      noDirRecurse: true,
      onWriteEntry(entry) {
        // Only whether a file is executable counts, as in git.
        const stat = entry.stat;
        if (stat) stat.mode = (stat.mode & 0o170000) | (stat.mode & 0o111 ? 0o755 : 0o644);
      },
    },
    // "./" keeps a name that starts with "@" from being read as an archive to merge.
    files.map((f) => `./${f}`),
  );
  stream.on("data", (c: Buffer) => chunks.push(c));
  return Buffer.concat(chunks);
}
