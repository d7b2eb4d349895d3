// Child processes with bounded time and captured output: the one way e2e helpers run a program.
import { spawn, type SpawnOptions } from "node:child_process";
import type { Transcript } from "./transcript";

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface RunOptions {
  input?: string | Buffer;
  timeoutMs?: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Stream output to this process's stderr as it comes (long builds). */
  echo?: boolean;
  /** Also hands each chunk to it as it arrives, with its arrival time (a step's per-line times). */
  transcript?: Transcript;
}

export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const spawnOpts: SpawnOptions = { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ["pipe", "pipe", "pipe"] };
    const child = spawn(cmd, args, spawnOpts);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          child.kill("SIGKILL");
        }, opts.timeoutMs)
      : undefined;
    child.stdout!.on("data", (d: Buffer) => {
      out.push(d);
      opts.transcript?.add("stdout", d.toString(), Date.now());
      if (opts.echo) process.stderr.write(d);
    });
    child.stderr!.on("data", (d: Buffer) => {
      err.push(d);
      opts.transcript?.add("stderr", d.toString(), Date.now());
      if (opts.echo) process.stderr.write(d);
    });
    child.on("error", (e) => {
      if (timer) clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code, signal) => {
      if (timer) clearTimeout(timer);
      opts.transcript?.end(Date.now());
      const stderr = Buffer.concat(err).toString() + (timedOut ? `\n[timed out after ${opts.timeoutMs} ms]` : "");
      resolve({ code, signal, stdout: Buffer.concat(out).toString(), stderr, ms: Date.now() - started });
    });
    child.stdin!.on("error", () => {}); // a command that exits without reading stdin is not an error here
    child.stdin!.end(opts.input ?? "");
  });
}

/** Runs and throws, with the tail of stderr, unless the exit code is 0. */
export async function runOk(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} exited ${r.code ?? r.signal}:\n${tail(r.stderr || r.stdout, 40)}`);
  }
  return r;
}

export function tail(text: string, lines: number): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
