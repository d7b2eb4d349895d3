// Every QEMU and server a test run starts is recorded here, so the run's teardown stops them
// even when a test failed half-way (npm run local keeps its own, outside this registry).
// One file per run (named by the vitest main process's pid, which global-setup puts in
// NODEHOST_E2E_RUN): a run stops its own processes only, never those of another run going on
// beside it on the same machine, and stops a dead run's leftovers when it starts.
import { appendFileSync, existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { basename, dirname } from "node:path";
import { cachePath } from "./paths";
import { pidAlive, sleep } from "./exec";

const PREFIX = "test-run-pids";
const file = (run = process.env.NODEHOST_E2E_RUN) => cachePath(run ? `${PREFIX}-${run}` : PREFIX);

/** Records a process of this test run (only under vitest: `npm run local` keeps its VM). */
export function register(pid: number, cmdlineMark: string): void {
  if (process.env.VITEST) appendFileSync(file(), `${pid} ${cmdlineMark}\n`);
}

function stillOurs(pid: number, mark: string): boolean {
  try {
    return pidAlive(pid) && readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(mark);
  } catch {
    return false;
  }
}

async function stopFile(f: string): Promise<void> {
  if (!existsSync(f)) return;
  const pids = readFileSync(f, "utf8").split("\n").filter(Boolean)
    .map((l) => l.split(" ")).filter(([pid, mark]) => stillOurs(Number(pid), mark)).map(([pid]) => Number(pid));
  for (const pid of pids) if (pidAlive(pid)) process.kill(pid, "SIGTERM");
  for (let i = 0; i < 50 && pids.some(pidAlive); i++) await sleep(100);
  for (const pid of pids) if (pidAlive(pid)) process.kill(pid, "SIGKILL");
  rmSync(f, { force: true });
}

/** Stops this run's processes. */
export async function stopRegistered(): Promise<void> {
  await stopFile(file());
}

/** Stops what runs that are gone left behind (their main process no longer exists). */
export async function stopOrphans(): Promise<void> {
  const dir = dirname(file());
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) {
    const m = new RegExp(`^${PREFIX}(?:-(\\d+))?$`).exec(name);
    if (m && !(m[1] && pidAlive(Number(m[1])))) await stopFile(`${dir}/${basename(name)}`);
  }
}
