// Where the VM test host keeps its cache (images, VM state) and its run-time scratch files.
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
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

/** How long a run's leftovers (its world dir: Pebble, S3 and VM logs) are kept for a look after it. */
const KEEP_RUNS_MS = 3 * 24 * 3600_000;

/** Deletes what earlier runs left in `runsDir` (entries older than KEEP_RUNS_MS). */
export function pruneOldRuns(runsDir: string, now = Date.now()): string[] {
  if (!existsSync(runsDir)) return [];
  const pruned: string[] = [];
  for (const name of readdirSync(runsDir)) {
    const p = join(runsDir, name);
    if (now - statSync(p).mtimeMs < KEEP_RUNS_MS) continue;
    rmSync(p, { recursive: true, force: true });
    pruned.push(p);
  }
  return pruned;
}

/** A world dir for one run of a suite or the bench, under runs/ (old runs there are pruned first). */
export function newRunDir(kind: string): string {
  pruneOldRuns(cachePath("runs"));
  return cachePath("runs", `${kind}-${process.pid}`);
}
