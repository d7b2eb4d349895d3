// DigitalOcean's managed Valkey (cache.mode managed) in the test world: this machine's Debian
// redis-server (7.0, already in .ci/run's packages for test/scripts) on loopback, which the guest
// reaches at 10.0.2.2:<port>. As on DigitalOcean: TLS only (no plain port), the `default` user with
// a password, no client certificate asked for. Unlike it: Redis 7.0 where DigitalOcean runs Valkey 8
// (the same protocol and commands the app and the move use; a DUMP payload from a newer Redis than
// the cluster's server would be refused there, not here, as the suite's images.redis is Debian's
// 7.0 too), one node, no command restrictions, and a certificate from a CA made for the test
// (makeListenerCert) where DigitalOcean's is Let's Encrypt's: the test adds that CA to the guest's
// trust store and to the app's (NODE_EXTRA_CA_CERTS), where a droplet trusts Let's Encrypt already.
import { spawn, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { sleep } from "./exec";
import { newPassword } from "./managed-pg";
import { HOST_FROM_GUEST, makeListenerCert } from "./pebble";
import { freePort } from "./ports";
import { register } from "./registry";

export interface ManagedValkey {
  /** Where the guest reaches it. */
  host: string;
  port: number;
  /** "default", the one user a DigitalOcean caching cluster has. */
  user: string;
  /** Random, with a '+' and a '/' (URLs must encode it). */
  password: string;
  /** The CA that signed the server certificate (valid for IP 10.0.2.2 and 127.0.0.1). */
  caPem: string;
  /** redis-cli from this machine over verified TLS as `default`: trimmed stdout; throws on failure. */
  cli(...args: string[]): string;
  /** Stops the server; again is a no-op. Leaves `dir` to its owner. */
  stop(): void;
}

/** Starts the stand-in in `dir` (fresh; the caller removes it after stop()): CA, certificate, config, log. */
export async function startManagedValkey(opts: { dir: string }): Promise<ManagedValkey> {
  const dir = resolve(opts.dir);
  await makeListenerCert(dir, { cn: "managed-valkey" });
  const caFile = join(dir, "ca.pem");
  const password = newPassword();
  const port = await freePort();
  const conf = join(dir, "valkey.conf");
  // The password in the config file (mode 0600), never on redis-server's command line.
  writeFileSync(conf, [
    "port 0", `tls-port ${port}`, "bind 127.0.0.1",
    `tls-cert-file ${join(dir, "cert.pem")}`, `tls-key-file ${join(dir, "key.pem")}`, `tls-ca-cert-file ${caFile}`,
    "tls-auth-clients no",
    `user default on >${password} ~* &* +@all`,
    `dir ${dir}`, "save \"\"", "appendonly no", `logfile ${join(dir, "valkey.log")}`, "daemonize no", "",
  ].join("\n"), { mode: 0o600 });
  const child = spawn("redis-server", [conf], { stdio: "ignore", detached: true });
  child.unref();
  if (!child.pid) throw new Error("managed Valkey: redis-server did not start");
  register(child.pid, "redis-server");
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    try { process.kill(child.pid!, "SIGTERM"); } catch { /* gone already */ }
    process.removeListener("exit", stop);
  };
  process.on("exit", stop);

  const cli = (...args: string[]) => {
    const r = spawnSync("redis-cli", ["--tls", "--cacert", caFile, "-h", "127.0.0.1", "-p", String(port), "--user", "default", ...args],
      { encoding: "utf8", env: { ...process.env, REDISCLI_AUTH: password }, timeout: 30_000 });
    if (r.status !== 0 || /^(ERR|WRONGPASS|NOAUTH)/.test(r.stdout)) throw new Error(`managed Valkey: redis-cli ${args.join(" ")} exited ${r.status ?? r.signal}: ${(r.stderr || r.stdout).trim()}`);
    return r.stdout.trim();
  };
  for (let i = 0; ; i++) {
    try {
      if (cli("PING") === "PONG") break;
    } catch (e) {
      if (i >= 50) {
        stop();
        let log = "";
        try { log = readFileSync(join(dir, "valkey.log"), "utf8").slice(-2000); } catch { /* none */ }
        throw new Error(`managed Valkey: no PONG over TLS within 10 s: ${(e as Error).message}\n${log}`);
      }
    }
    await sleep(200);
  }
  return { host: HOST_FROM_GUEST, port, user: "default", password, caPem: readFileSync(caFile, "utf8"), cli, stop };
}
