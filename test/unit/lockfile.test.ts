// package-lock.json must be complete for every platform, or `npm ci` refuses it ("Missing: ... from
// lock file") on a fresh clone. npm silently leaves out optional platform packages it cannot fetch
// when it writes the lock, so a registry that lacks some of them produces an incomplete lock.
import * as fs from "fs";
import * as path from "path";
import { describe, expect, test } from "vitest";

type Entry = { version?: string; optionalDependencies?: Record<string, string> };
const lock = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "..", "package-lock.json"), "utf8")) as {
  packages: Record<string, Entry>;
};

/** Node's lookup: the package's own node_modules, then each parent's, up to the root. */
function resolves(from: string, dep: string): boolean {
  let dir = from;
  for (;;) {
    if (lock.packages[`${dir ? `${dir}/` : ""}node_modules/${dep}`]) return true;
    const up = dir.lastIndexOf("/node_modules/");
    if (dir === "") return false;
    dir = up < 0 ? "" : dir.slice(0, up);
  }
}

describe("package-lock.json", () => {
  test("every optional dependency of every locked package has its own entry", () => {
    const missing: string[] = [];
    for (const [at, entry] of Object.entries(lock.packages)) {
      for (const dep of Object.keys(entry.optionalDependencies ?? {})) {
        if (!resolves(at, dep)) missing.push(`${at || "(root)"} -> ${dep}`);
      }
    }
    expect(missing).toEqual([]);
  });
});
