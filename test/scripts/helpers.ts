// Local stand-ins for the host's services (PostgreSQL, Redis, an S3 server), all on 127.0.0.1,
// and helpers to run the scripts in scripts/ for real.
import { spawn, spawnSync, ChildProcess, SpawnSyncReturns } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { freePort } from "../e2e/lib/ports";

export const REPO = path.resolve(__dirname, "..", "..");
export const SCRIPTS = path.join(REPO, "scripts");

export function tmpDir(prefix = "nodehost-test-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export { freePort };

export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; cwd?: string; timeoutMs?: number } = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, {
    encoding: "utf8",
    env: { ...process.env, ...opts.env },
    input: opts.input,
    cwd: opts.cwd,
    timeout: opts.timeoutMs ?? 120_000,
  });
}

/**
 * `run` without blocking the event loop: a test made of many long tool runs in a row would otherwise
 * hold the worker past vitest's 60 s RPC timeout on a loaded machine ("Timeout calling onTaskUpdate").
 */
export function runAsync(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...opts.env }, cwd: opts.cwd, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "", stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => { stdout += d; });
    child.stderr.setEncoding("utf8").on("data", (d: string) => { stderr += d; });
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 120_000);
    child.on("error", reject);
    child.on("close", (status) => { clearTimeout(timer); resolve({ status, stdout, stderr }); });
  });
}

/** Binaries the local tests need (Debian packages: postgresql, redis-server, nginx, s3cmd, openssl). */
export function missing(...bins: string[]): string[] {
  return bins.filter((b) => spawnSync("sh", ["-c", `command -v ${b}`]).status !== 0 && !fs.existsSync(b));
}

/** Polls `check` every `everyMs` (a check that throws counts as not yet) until it holds, or fails after `ms`. */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string, ms = 20_000, everyMs = 200): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try {
      if (await check()) return;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what}`);
}

export function pgBinDir(): string {
  const base = "/usr/lib/postgresql";
  const versions = fs.existsSync(base) ? fs.readdirSync(base).sort((a, b) => Number(b) - Number(a)) : [];
  if (!versions.length) throw new Error("no PostgreSQL server installed (apt-get install postgresql)");
  return path.join(base, versions[0], "bin");
}

export interface LocalPostgres {
  port: number;
  user: string;
  password: string;
  db: string;
  url: string;
  env: NodeJS.ProcessEnv;
  psql(sql: string): string;
  stop(): void;
}

/** A throw-away cluster owned by the postgres OS user, password auth on 127.0.0.1. */
export async function startPostgres(): Promise<LocalPostgres> {
  const bin = pgBinDir();
  const dir = tmpDir("nodehost-pg-");
  fs.chmodSync(dir, 0o755);
  const data = path.join(dir, "data");
  const port = await freePort();
  const user = "app";
  const password = "pw-'quoted\"-" + Math.random().toString(36).slice(2);
  const db = "app";
  spawnSync("chown", ["postgres:postgres", dir]);
  const asPg = (args: string[], input?: string) => {
    const r = spawnSync("runuser", ["-u", "postgres", "--", ...args], { encoding: "utf8", input });
    if (r.status !== 0) throw new Error(`${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  };
  const pwfile = path.join(dir, "pw");
  fs.writeFileSync(pwfile, "postgres-admin\n", { mode: 0o600 });
  spawnSync("chown", ["postgres:postgres", pwfile]);
  asPg([`${bin}/initdb`, "-D", data, "-A", "scram-sha-256", "-U", "postgres", `--pwfile=${pwfile}`]);
  fs.rmSync(pwfile);
  asPg([`${bin}/pg_ctl`, "-D", data, "-l", path.join(dir, "log"), "-w", "-o",
    `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`, "start"]);
  const admin = { ...process.env, PGPASSWORD: "postgres-admin", PGHOST: "127.0.0.1", PGPORT: String(port) };
  const sql = (q: string, database = "postgres") => {
    const r = spawnSync("psql", ["-qAt", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", database], { encoding: "utf8", input: q, env: admin });
    if (r.status !== 0) throw new Error(`psql: ${r.stderr}`);
    return r.stdout;
  };
  // A superuser, as POSTGRES_USER is in the official image (its docker-entrypoint.sh runs
  // `initdb --username="$POSTGRES_USER"`, docker-library/postgres @6edb0a8), which the stack runs.
  sql(`CREATE USER ${user} SUPERUSER PASSWORD '${password.replace(/'/g, "''")}'; CREATE DATABASE ${db} OWNER ${user};`);
  const env = { PGHOST: "127.0.0.1", PGPORT: String(port), PGPASSWORD: password, PGUSER: user, PGDATABASE: db };
  return {
    port, user, password, db, env,
    url: `postgres://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}/${db}`,
    psql: (q: string) => {
      const r = spawnSync("psql", ["-qAt", "-v", "ON_ERROR_STOP=1"], { encoding: "utf8", input: q, env: { ...process.env, ...env } });
      if (r.status !== 0) throw new Error(`psql: ${r.stderr}`);
      return r.stdout.trim();
    },
    stop: () => {
      spawnSync("runuser", ["-u", "postgres", "--", `${bin}/pg_ctl`, "-D", data, "-m", "immediate", "stop"]);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface LocalRedis {
  port: number;
  password: string;
  dir: string;
  url: string;
  proc: ChildProcess;
  cli(...args: string[]): string;
  stop(): Promise<void>;
  start(): Promise<void>;
}

/** redis-server on 127.0.0.1 with a password and AOF, data in `dir` (like the container's /data). */
export async function startRedis(dir = tmpDir("nodehost-redis-")): Promise<LocalRedis> {
  const port = await freePort();
  const password = "redis-" + Math.random().toString(36).slice(2);
  const self: LocalRedis = {
    port, password, dir, proc: undefined as unknown as ChildProcess,
    url: `redis://:${password}@127.0.0.1:${port}`,
    cli: (...args: string[]) => {
      const r = spawnSync("redis-cli", ["-p", String(port), ...args], { encoding: "utf8", env: { ...process.env, REDISCLI_AUTH: password } });
      return r.stdout.trim();
    },
    start: async () => {
      self.proc = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir,
        "--requirepass", password, "--appendonly", "yes", "--save", "3600 1"], { stdio: "ignore" });
      await waitFor(() => self.cli("PING") === "PONG", "redis");
    },
    stop: async () => {
      if (self.proc.exitCode !== null) return;
      const done = new Promise((r) => self.proc.once("exit", r));
      self.proc.kill("SIGTERM");
      await done;
    },
  };
  await self.start();
  return self;
}

export interface LocalS3 {
  port: number;
  bucket: string;
  dir: string;
  s3cfg: string;
  s3(...args: string[]): SpawnSyncReturns<string>;
  stop(): void;
}

/** s3rver (npm) on 127.0.0.1 playing the Spaces bucket; s3cmd talks to it path-style. */
export async function startS3(): Promise<LocalS3> {
  const dir = tmpDir("nodehost-s3-");
  const port = await freePort();
  const bucket = "nodehost-backups";
  const bin = s3rverBin();
  const proc = spawn(bin, ["-d", dir, "-a", "127.0.0.1", "-p", String(port), "--configure-bucket", bucket, "--silent"], { stdio: "ignore" });
  await waitFor(() => new Promise<boolean>((resolve) => {
    const sock = net.connect(port, "127.0.0.1", () => { sock.end(); resolve(true); });
    sock.on("error", () => resolve(false));
  }), "s3rver");
  const s3cfg = path.join(dir, "s3cfg");
  fs.writeFileSync(s3cfg, [
    "[default]", "access_key = S3RVER", "secret_key = S3RVER", `host_base = 127.0.0.1:${port}`,
    `host_bucket = 127.0.0.1:${port}`, "bucket_location = fra1", "use_https = False", "signature_v2 = False", "",
  ].join("\n"), { mode: 0o600 });
  return {
    port, bucket, dir, s3cfg,
    s3: (...args: string[]) => run("s3cmd", ["-c", s3cfg, "--no-progress", ...args]),
    stop: () => { proc.kill(); },
  };
}

/**
 * s3rver, the devDependency `npm ci` installed (the VM suite's test/e2e/lib/s3.ts runs the same
 * copy). It was once installed into a shared /tmp dir on first use: on a cold machine two test
 * files did that at once and one failed with npm's ENOTEMPTY.
 */
export function s3rverBin(): string {
  const bin = path.join(REPO, "node_modules", ".bin", "s3rver");
  if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: run npm ci`);
  return bin;
}

const byVersion = (a: string, b: string) => {
  const [x, y] = [a, b].map((v) => v.split(".").map(Number));
  return x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
};
/** The releases of `pkg` in the npm registry whose version is `prefix` or starts with `prefix.`, oldest first. */
export async function registryReleases(pkg: string, prefix: string): Promise<string[]> {
  const res = await fetch(`https://registry.npmjs.org/${pkg}`, { headers: { accept: "application/vnd.npm.install-v1+json" }, signal: AbortSignal.timeout(60_000) });
  const doc = (await res.json()) as { versions: Record<string, unknown> };
  return Object.keys(doc.versions).filter((v) => /^\d+\.\d+\.\d+$/.test(v) && (v === prefix || v.startsWith(`${prefix}.`))).sort(byVersion);
}
