// Loopback servers that play the outside world run as child processes; `npm run local` leaves
// them running (detached), so each one is tracked by a pid file next to its log.
import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { pidAlive, sleep } from "./exec";
import { register } from "./registry";

export interface Daemon {
  name: string;
  pid: number;
  log: string;
  stop(): Promise<void>;
}

export function startDaemon(dir: string, name: string, cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; detached?: boolean } = {}): Daemon {
  const log = join(dir, `${name}.log`);
  const fd = openSync(log, "a");
  const child = spawn(cmd, args, { env: { ...process.env, ...opts.env }, stdio: ["ignore", fd, fd], detached: opts.detached ?? false, cwd: dir });
  closeSync(fd);
  if (opts.detached) child.unref();
  else process.on("exit", () => child.kill("SIGTERM")); // not left behind by a script that dies
  const pid = child.pid!;
  register(pid, cmd === process.execPath ? args[0] : cmd);
  writeFileSync(join(dir, `${name}.pid`), String(pid));
  return daemonHandle(dir, name, pid);
}

function daemonHandle(dir: string, name: string, pid: number): Daemon {
  return {
    name,
    pid,
    log: join(dir, `${name}.log`),
    async stop() {
      if (pidAlive(pid)) process.kill(pid, "SIGTERM");
      for (let i = 0; i < 50 && pidAlive(pid); i++) await sleep(100);
      if (pidAlive(pid)) process.kill(pid, "SIGKILL");
      rmSync(join(dir, `${name}.pid`), { force: true });
    },
  };
}

/** The daemon an earlier process started in `dir`, if its pid file names a live process. */
export function findDaemon(dir: string, name: string): Daemon | undefined {
  const f = join(dir, `${name}.pid`);
  if (!existsSync(f)) return undefined;
  const pid = Number(readFileSync(f, "utf8"));
  return pidAlive(pid) ? daemonHandle(dir, name, pid) : undefined;
}

export function logTail(d: Daemon, lines = 20): string {
  return existsSync(d.log) ? readFileSync(d.log, "utf8").trimEnd().split("\n").slice(-lines).join("\n") : "";
}

/** Polls `probe` until it resolves true; fails with the daemon's log when it dies or times out. */
export async function waitReady(d: Daemon, probe: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!pidAlive(d.pid)) throw new Error(`${d.name} exited:\n${logTail(d)}`);
    if (await probe().catch(() => false)) return;
    await sleep(200);
  }
  throw new Error(`${d.name} not ready after ${timeoutMs} ms:\n${logTail(d)}`);
}
