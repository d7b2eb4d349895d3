// A deterministic .tar.gz of a local app directory: same files in, same bytes (and release id) out.
import * as fs from "fs";
import * as path from "path";
import * as zlib from "zlib";

const SKIP = new Set(["node_modules", ".git", ".DS_Store"]);

function listFiles(root: string, rel = ""): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
    if (SKIP.has(entry.name)) continue;
    const child = rel ? `${rel}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...listFiles(root, child));
    else if (entry.isFile()) out.push(child);
  }
  return out.sort();
}

function header(name: string, size: number, mode: number): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`archive: path longer than 100 bytes: ${name}`);
  const h = Buffer.alloc(512);
  const field = (value: string, offset: number, length: number) => h.write(value, offset, length, "utf8");
  const octal = (n: number, length: number) => n.toString(8).padStart(length - 1, "0") + "\0";
  field(name, 0, 100);
  field(octal(mode, 8), 100, 8);
  field(octal(0, 8), 108, 8);
  field(octal(0, 8), 116, 8);
  field(octal(size, 12), 124, 12);
  field(octal(0, 12), 136, 12);
  field("        ", 148, 8);
  field("0", 156, 1);
  field("ustar\0" + "00", 257, 8);
  let sum = 0;
  for (const byte of h) sum += byte;
  field(octal(sum, 7) + " ", 148, 8);
  return h;
}

/** Packs `dir` (without node_modules/.git) as a gzipped ustar archive, entries under `./`. */
export function packDirectory(dir: string): Buffer {
  if (!fs.existsSync(path.join(dir, "package.json"))) {
    throw new Error(`app directory ${dir} has no package.json`);
  }
  const parts: Buffer[] = [];
  for (const rel of listFiles(dir)) {
    const full = path.join(dir, rel);
    const data = fs.readFileSync(full);
    const mode = fs.statSync(full).mode & 0o111 ? 0o755 : 0o644;
    parts.push(header(rel, data.length, mode), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return zlib.gzipSync(Buffer.concat(parts), { level: 9 });
}
