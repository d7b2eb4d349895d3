// A private git repository behind a real OpenSSH server on this machine's loopback: the git host
// of the tests (scripts/tools/nodehost-git-fetch's own tests, and the VM suite's git release, whose
// guest reaches it at QEMU's 10.0.2.2). Only its deploy key gets in; its server key is pinned.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { userInfo } from "node:os";
import { join } from "node:path";
import { freePort } from "./ports";

export const SSHD = "/usr/sbin/sshd";

export interface GitServer {
  port: number;
  /** The server's public key line ("ssh-ed25519 AAAA..."), for app.gitHostKeys. */
  hostKey: string;
  /** The deploy key (private, unencrypted), the only key authorized. */
  deployKeyFile: string;
  /** The bare repository the URL names. */
  repo: string;
  /** ssh://<this user>@<host>:<port><repo>: host is 127.0.0.1 here, 10.0.2.2 from a VM. */
  url(host: string): string;
  stop(): void;
}

/** git with a fixed author, throwing with its stderr. */
export function git(cwd: string, ...args: string[]): string {
  const r = spawnSync("git", ["-c", "user.name=t", "-c", "user.email=t@t", ...args], { cwd, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.trim();
}

/** A new unencrypted ed25519 key at `file`; returns its public key line (type and key only). */
export function keygen(file: string): string {
  const r = spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "t", "-f", file], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(r.stderr);
  return readFileSync(`${file}.pub`, "utf8").trim().split(/\s+/).slice(0, 2).join(" ");
}

/**
 * sshd on 127.0.0.1 as the user running the tests (as root it may log in as root: key only), with
 * an empty bare repository at `<dir>/repo.git`.
 */
export async function startGitServer(dir: string): Promise<GitServer> {
  mkdirSync(dir, { recursive: true });
  const hostKey = keygen(join(dir, "host"));
  const deployKeyFile = join(dir, "deploy");
  writeFileSync(join(dir, "authorized_keys"), `${keygen(deployKeyFile)}\n`, { mode: 0o600 });
  const port = await freePort();
  writeFileSync(join(dir, "sshd_config"), [
    `Port ${port}`, "ListenAddress 127.0.0.1", `HostKey ${join(dir, "host")}`,
    `AuthorizedKeysFile ${join(dir, "authorized_keys")}`, "StrictModes no", "UsePAM no",
    "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
    `PidFile ${join(dir, "sshd.pid")}`,
  ].join("\n") + "\n");
  if (process.getuid?.() === 0) mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  const sshd: ChildProcess = spawn(SSHD, ["-D", "-e", "-f", join(dir, "sshd_config")], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  sshd.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  // Bounded: 100 tries, 100 ms apart.
  for (let i = 0; ; i++) {
    const up = await new Promise<boolean>((res) => {
      const s = net.connect(port, "127.0.0.1", () => { s.end(); res(true); }).on("error", () => res(false));
    });
    if (up) break;
    if (i >= 100 || sshd.exitCode !== null) { sshd.kill(); throw new Error(`sshd did not listen on 127.0.0.1:${port}: ${stderr}`); }
    await new Promise((r) => setTimeout(r, 100));
  }
  const repo = join(dir, "repo.git");
  git(dir, "init", "-q", "--bare", repo);
  const user = userInfo().username;
  return { port, hostKey, deployKeyFile, repo, url: (host) => `ssh://${user}@${host}:${port}${repo}`, stop: () => sshd.kill() };
}
