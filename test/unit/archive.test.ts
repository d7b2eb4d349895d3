// The app archive (components/host/archive.ts): what goes in, that GNU tar (as on the host)
// reads it back whole, and that the same files give the same bytes on any machine.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { appFiles, packDirectory } from "../../components/host/archive";

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "nodehost-archive-"));
const put = (dir: string, rel: string, text = `${rel}\n`, mode = 0o644) => {
  fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
  fs.writeFileSync(path.join(dir, rel), text, { mode });
  fs.chmodSync(path.join(dir, rel), mode);
};
/** Extracts with GNU tar as app.sh does, and lists what arrived (path -> mode). */
const extract = (archive: Buffer): Map<string, { mode: number; text: string }> => {
  const dir = tmp();
  fs.writeFileSync(path.join(dir, "a.tgz"), archive);
  fs.mkdirSync(path.join(dir, "out"));
  execFileSync("tar", ["-xzf", path.join(dir, "a.tgz"), "-C", path.join(dir, "out"), "--no-same-owner"]);
  const out = new Map<string, { mode: number; text: string }>();
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(dir, "out", rel), { withFileTypes: true })) {
      const child = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(child);
      else out.set(child, { mode: fs.statSync(path.join(dir, "out", child)).mode & 0o777, text: fs.readFileSync(path.join(dir, "out", child), "utf8") });
    }
  };
  walk("");
  return out;
};

describe("packDirectory", () => {
  it("carries paths of any length (the hand-written ustar writer stopped at 100 bytes)", () => {
    const dir = tmp();
    put(dir, "package.json", "{}\n");
    const deep = `src/${"a-rather-long-directory-name/".repeat(6)}${"file-".repeat(20)}.ts`;
    expect(Buffer.byteLength(deep)).toBeGreaterThan(255);
    put(dir, deep, "export const x = 1;\n");
    const got = extract(packDirectory(dir));
    expect(got.get(deep)?.text).toBe("export const x = 1;\n");
  });

  it("gives the same bytes for the same files, whatever their times or mode bits beyond executable or not", () => {
    const a = tmp();
    const b = tmp();
    for (const [d, fileMode, exeMode] of [[a, 0o644, 0o755], [b, 0o600, 0o700]] as const) {
      put(d, "package.json", "{\"name\":\"x\"}\n", fileMode);
      put(d, "bin/run", "#!/bin/sh\n", exeMode);
    }
    fs.utimesSync(path.join(b, "package.json"), new Date(2001, 1, 1), new Date(2001, 1, 1));
    expect(packDirectory(a).equals(packDirectory(b))).toBe(true);
    const got = extract(packDirectory(b));
    expect(got.get("bin/run")?.mode).toBe(0o755);
    expect(got.get("package.json")?.mode).toBe(0o644);
    // A real change is a new archive.
    put(b, "package.json", "{\"name\":\"y\"}\n");
    expect(packDirectory(a).equals(packDirectory(b))).toBe(false);
  });

  it("leaves out node_modules, .git and symlinks (a link to /etc/passwd ships nothing)", () => {
    const dir = tmp();
    put(dir, "package.json", "{}\n");
    put(dir, "node_modules/x/index.js");
    put(dir, "lib/node_modules/y.js");
    put(dir, ".git/HEAD");
    fs.symlinkSync("/etc/passwd", path.join(dir, "passwd"));
    expect(appFiles(dir)).toEqual(["package.json"]);
    expect([...extract(packDirectory(dir)).keys()]).toEqual(["package.json"]);
  });

  it("follows .gitignore, or .nodehostignore in its place when there is one", () => {
    const dir = tmp();
    put(dir, "package.json", "{}\n");
    put(dir, "server.js");
    put(dir, ".env", "API_KEY=local-secret\n");
    put(dir, "dist/app.js");
    put(dir, "logs/today.log");
    put(dir, ".gitignore", ".env\ndist/\n*.log\n");
    expect(appFiles(dir)).toEqual([".gitignore", "package.json", "server.js"]);
    // .nodehostignore wins: ship the built dist/ but still no .env, and negation works.
    put(dir, ".nodehostignore", ".env\n*.log\n!logs/keep.log\n");
    put(dir, "logs/keep.log");
    expect(appFiles(dir)).toEqual([".gitignore", ".nodehostignore", "dist/app.js", "logs/keep.log", "package.json", "server.js"]);
  });

  it("refuses a directory without package.json, or an ignore file that leaves it out", () => {
    const dir = tmp();
    put(dir, "server.js");
    expect(() => packDirectory(dir)).toThrow(/has no package.json/);
    put(dir, "package.json", "{}\n");
    put(dir, ".nodehostignore", "*.json\n");
    expect(() => packDirectory(dir)).toThrow(/ignore file leaves out package.json/);
  });
});
