// Every QEMU and server a test run starts is recorded here, so the run's teardown stops them
// even when a test failed half-way (npm run local keeps its own, outside this registry).
import { appendFileSync, existsSync, readFileSync, rmSync } from "node:fs";
import { cachePath } from "./paths";
import { pidAlive, sleep } from "./exec";

const file = () => cachePath("test-run-pids");

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

export async function stopRegistered(): Promise<void> {
  if (!existsSync(file())) return;
  const pids = readFileSync(file(), "utf8").split("\n").filter(Boolean)
    .map((l) => l.split(" ")).filter(([pid, mark]) => stillOurs(Number(pid), mark)).map(([pid]) => Number(pid));
  for (const pid of pids) if (pidAlive(pid)) process.kill(pid, "SIGTERM");
  for (let i = 0; i < 50 && pids.some(pidAlive); i++) await sleep(100);
  for (const pid of pids) if (pidAlive(pid)) process.kill(pid, "SIGKILL");
  rmSync(file(), { force: true });
}
