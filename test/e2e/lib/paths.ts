// Where the VM test host keeps its cache (images, VM state) and its run-time scratch files.
import { mkdirSync } from "node:fs";
import { homedir } from "node:os";
import { join, dirname } from "node:path";

export const e2eDir = dirname(__dirname);
export const repoRoot = dirname(dirname(e2eDir));

export function cacheDir(): string {
  const dir = process.env.NODEHOST_E2E_CACHE ?? join(homedir(), ".cache", "nodehost-e2e");
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function cachePath(...parts: string[]): string {
  const p = join(cacheDir(), ...parts);
  mkdirSync(dirname(p), { recursive: true });
  return p;
}
