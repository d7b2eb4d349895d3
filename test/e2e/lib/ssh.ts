// OpenSSH client helpers: run a command with stdin, wait for SSH, reboot, copy a file in.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, runOk, sleep, type RunResult } from "./exec";
import type { Transcript } from "./transcript";

export interface SshTarget {
  host: string;
  port: number;
  user: string;
  keyFile: string;
  /**
   * The server's public key line: when set, the connection accepts that key only, of that type
   * only, as pulumi-command does with connection.hostKey; unset, any key (as the provider).
   */
  hostKey?: string;
}

export interface SshKey {
  privateKeyFile: string;
  publicKey: string;
}

/** One ed25519 key per run (or per local stack), never a key of the operator's. */
export async function generateKey(dir: string, name = "id_ed25519"): Promise<SshKey> {
  const privateKeyFile = join(dir, name);
  if (!existsSync(privateKeyFile)) {
    await runOk("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "nodehost-e2e", "-f", privateKeyFile]);
  }
  return { privateKeyFile, publicKey: readFileSync(`${privateKeyFile}.pub`, "utf8").trim() };
}

/** A known_hosts file holding just `hostKey` for the target's address and port. */
function knownHostsFile(t: SshTarget & { hostKey: string }): string {
  const [type, key] = t.hostKey.trim().split(/\s+/);
  const line = `[${t.host}]:${t.port} ${type} ${key}\n`;
  const dir = join(tmpdir(), "nodehost-known-hosts");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, createHash("sha256").update(line).digest("hex").slice(0, 16));
  if (!existsSync(file)) writeFileSync(file, line, { mode: 0o600 });
  return file;
}

export function sshArgs(t: SshTarget, connectTimeoutS = 10): string[] {
  const hostKeys = t.hostKey
    ? ["-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${knownHostsFile({ ...t, hostKey: t.hostKey })}`,
      "-o", `HostKeyAlgorithms=${t.hostKey.trim().split(/\s+/)[0]}`]
    : ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"];
  return [
    ...hostKeys,
    "-o", "GlobalKnownHostsFile=/dev/null",
    "-o", "BatchMode=yes",
    "-o", "IdentitiesOnly=yes",
    "-o", `ConnectTimeout=${connectTimeoutS}`,
    "-o", "ServerAliveInterval=15",
    "-o", "ServerAliveCountMax=8",
    "-o", "LogLevel=ERROR",
    "-i", t.keyFile,
    "-p", String(t.port),
    `${t.user}@${t.host}`,
  ];
}

/** The command a person types to reach the host. */
export function sshCommandLine(t: SshTarget): string {
  return `ssh -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -i ${t.keyFile} -p ${t.port} ${t.user}@${t.host}`;
}

/** Runs `command` on the host (as the remote user's shell would) with `input` on its stdin. */
export function ssh(t: SshTarget, command: string, opts: { input?: string | Buffer; timeoutMs?: number; transcript?: Transcript } = {}): Promise<RunResult> {
  return run("ssh", [...sshArgs(t), command], { input: opts.input, timeoutMs: opts.timeoutMs ?? 30 * 60_000, transcript: opts.transcript });
}

/** Like ssh() but throws with the exit code and stderr tail unless the command succeeded. */
export async function sshOk(t: SshTarget, command: string, opts: { input?: string | Buffer; timeoutMs?: number } = {}): Promise<string> {
  const r = await ssh(t, command, opts);
  if (r.code !== 0) {
    throw new Error(`ssh ${t.user}@${t.host}:${t.port} '${command}' exited ${r.code}:\n${(r.stderr || r.stdout).trimEnd().split("\n").slice(-30).join("\n")}`);
  }
  return r.stdout;
}

export interface WaitOptions {
  timeoutMs: number;
  /** Called between tries: throw to stop waiting (e.g. the VM process died). */
  check?: () => void;
  intervalMs?: number;
}

/** Dials until `true` runs over SSH; returns the time it took. Exit 255 is ssh's own failure. */
export async function waitForSsh(t: SshTarget, opts: WaitOptions): Promise<number> {
  const started = Date.now();
  let last = "";
  for (;;) {
    opts.check?.();
    const r = await run("ssh", [...sshArgs(t, 5), "true"], { timeoutMs: 20_000 });
    if (r.code === 0) return Date.now() - started;
    last = r.stderr.trim();
    if (Date.now() - started > opts.timeoutMs) {
      throw new Error(`SSH to ${t.user}@${t.host}:${t.port} not up after ${opts.timeoutMs} ms; last error: ${last}`);
    }
    await sleep(opts.intervalMs ?? 2000);
  }
}

export async function bootId(t: SshTarget): Promise<string> {
  return (await sshOk(t, "cat /proc/sys/kernel/random/boot_id", { timeoutMs: 60_000 })).trim();
}

/** Reboots the host and waits until SSH answers from a new boot; returns the time it took. */
export async function reboot(t: SshTarget, opts: WaitOptions): Promise<number> {
  const before = await bootId(t);
  const started = Date.now();
  // The connection drops as the host goes down: ssh's exit status says nothing here.
  await ssh(t, "sudo -n systemctl reboot", { timeoutMs: 60_000 });
  for (;;) {
    await waitForSsh(t, { ...opts, timeoutMs: Math.max(1000, opts.timeoutMs - (Date.now() - started)) });
    const r = await ssh(t, "cat /proc/sys/kernel/random/boot_id", { timeoutMs: 60_000 });
    if (r.code === 0 && r.stdout.trim() !== before) return Date.now() - started;
    if (Date.now() - started > opts.timeoutMs) throw new Error(`host did not come back from reboot within ${opts.timeoutMs} ms`);
    await sleep(2000);
  }
}

/** Copies a local file to `remotePath` (written as root through sudo, with `mode`). */
export async function copyIn(t: SshTarget, localPath: string, remotePath: string, mode = "0644"): Promise<void> {
  const q = shellQuote(remotePath);
  await sshOk(t, `sudo -n install -D -m ${mode} /dev/stdin ${q}.part && sudo -n mv ${q}.part ${q}`, {
    input: readFileSync(localPath),
    timeoutMs: 30 * 60_000,
  });
}

/**
 * Copies a local file to `remotePath` over SFTP as the target's user, as pulumi-command's
 * CopyToRemote does (github.com/pkg/sftp: parents made, the file created or overwritten; a relative
 * path lands under the user's home), with the same connection options as ssh().
 */
export async function sftpPut(t: SshTarget, localPath: string, remotePath: string): Promise<void> {
  if (/["\s\\]/.test(localPath + remotePath)) throw new Error(`sftpPut: a path with a quote, space or backslash: ${localPath} -> ${remotePath}`);
  const args = sshArgs(t).map((a, i, all) => (a === "-p" && i < all.length - 1 ? "-P" : a));
  const dirs = remotePath.split("/").slice(0, -1).map((_, i, parts) => parts.slice(0, i + 1).join("/")).filter((d) => d && d !== ".");
  // "-mkdir": an existing directory is not an error (batch mode stops on any other failure).
  const batch = [...dirs.map((d) => `-mkdir "${d}"`), `put "${localPath}" "${remotePath}"`].join("\n") + "\n";
  await runOk("sftp", ["-q", "-b", "-", ...args], { input: batch, timeoutMs: 30 * 60_000 });
}

export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
