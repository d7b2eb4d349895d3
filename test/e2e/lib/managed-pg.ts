// DigitalOcean's managed PostgreSQL (database.mode managed) in the test world: a cluster of this
// machine's PostgreSQL server, run as the postgres OS user, on loopback, which the guest reaches
// at 10.0.2.2:<port>. As on DigitalOcean: TLS only (pg_hba.conf has hostssl lines alone, so a
// plain connection is refused), scram-sha-256 passwords, an admin "doadmin" that may create
// databases and roles but is no superuser, and an app database and user the admin makes, the user
// with no privileges on schema public until granted some. Unlike it: one node, no connection pooler
// (PgBouncer), no restrictions on doadmin beyond not being a superuser, and a server certificate
// from a CA made for the test (makeListenerCert) instead of the cluster's own CA.
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, chmodSync, chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { dirname, join, resolve } from "node:path";
import { pgBinDir } from "../../scripts/helpers";
import { tail } from "./exec";
import { HOST_FROM_GUEST, makeListenerCert } from "./pebble";
import { freePort } from "./ports";
import { register } from "./registry";

/** The admin role DigitalOcean creates with every cluster. */
export const MANAGED_PG_ADMIN = "doadmin";

export interface ManagedPostgres {
  /** Where the guest reaches it. */
  host: string;
  port: number;
  /** The app database, created by the admin (so owned by it, as DigitalOcean's API makes it). */
  database: string;
  /** The app user: LOGIN only, created by the admin, no privileges on schema public. */
  user: string;
  /** The app user's password (random, with a '+' and a '/' in it: URLs must encode it). */
  password: string;
  /** "doadmin": LOGIN CREATEDB CREATEROLE, not a superuser. */
  adminUser: string;
  adminPassword: string;
  /** The CA that signed the server certificate (valid for IP 10.0.2.2 and 127.0.0.1). */
  caPem: string;
  /**
   * psql as the admin (or as the app user when asApp) against `database` (or `db`), from this
   * machine over TLS verify-full via 127.0.0.1; returns trimmed stdout; throws with stderr on failure.
   */
  sql(query: string, opts?: { asApp?: boolean; db?: string }): string;
  /** Stops the server (pg_ctl -m fast); again is a no-op. Leaves `dir` to its owner. */
  stop(): void;
}

/** A libpq conninfo value, quoted (single quotes, backslash escapes). */
const connValue = (v: string) => `'${v.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
const conninfo = (kv: Record<string, string>) => Object.entries(kv).map(([k, v]) => `${k}=${connValue(v)}`).join(" ");
const ident = (s: string) => `"${s.replace(/"/g, '""')}"`;
const literal = (s: string) => `'${s.replace(/'/g, "''")}'`;
/** Random, and always with a '+' and a '/', as base64 has them: a URL's userinfo must encode '/'. */
const newPassword = () => `${randomBytes(12).toString("base64url")}+/${randomBytes(6).toString("base64url")}`;

/** Runs a program as the postgres OS user (cwd `cwd`, which it can enter), bounded by `timeoutMs`. */
function asPostgres(cwd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): SpawnSyncReturns<string> {
  return spawnSync("runuser", ["-u", "postgres", "--", ...args], { cwd, encoding: "utf8", input: opts.input, timeout: opts.timeoutMs ?? 60_000 });
}

/**
 * Throws unless the postgres OS user can enter `dir`: it runs the server there. A dir under a home
 * that is 0700 (root's, where the e2e cache lives by default) is out of its reach, and chowning
 * `dir` does not change that.
 */
function assertReachable(dir: string): void {
  if (spawnSync("runuser", ["-u", "postgres", "--", "test", "-x", dir], { cwd: "/" }).status === 0) return;
  let blocked = dir;
  for (let p = dir; ; p = dirname(p)) {
    if (spawnSync("runuser", ["-u", "postgres", "--", "test", "-x", p], { cwd: "/" }).status !== 0) blocked = p;
    if (p === dirname(p)) break;
  }
  throw new Error(`managed PostgreSQL: the postgres OS user cannot enter ${blocked}, so not ${dir} either; give a dir it can reach (under ${tmpdir()}, say)`);
}

/**
 * Starts the stand-in in `dir` (fresh: the cluster is data/, the server's log postgres.log, the CA
 * and certificate ca.pem, cert.pem, key.pem): the postgres superuser (peer, on the unix socket in
 * data/) makes doadmin; doadmin (over TLS) makes `database` and `user`. The caller owns `dir`.
 */
export async function startManagedPostgres(opts: { dir: string; database: string; user: string }): Promise<ManagedPostgres> {
  if (userInfo().uid !== 0) throw new Error("managed PostgreSQL: runs the server as the postgres OS user, so needs root (runuser)");
  const bin = pgBinDir();
  const dir = resolve(opts.dir);
  const data = join(dir, "data");
  const log = join(dir, "postgres.log");
  if (existsSync(data)) throw new Error(`managed PostgreSQL: ${data} exists; start it in a fresh dir`);
  mkdirSync(dir, { recursive: true });
  const pg = userUidGid("postgres");
  chownSync(dir, pg.uid, pg.gid);
  chmodSync(dir, 0o755);
  assertReachable(dir);

  await makeListenerCert(dir, { cn: "managed-pg" });
  // The server refuses a key file that is not its own with mode 0600 (or root's, 0640, its group's).
  chownSync(join(dir, "key.pem"), pg.uid, pg.gid);
  chmodSync(join(dir, "key.pem"), 0o600);
  const caFile = join(dir, "ca.pem");
  const caPem = readFileSync(caFile, "utf8");

  const must = (what: string, r: SpawnSyncReturns<string>) => {
    if (r.status !== 0) throw new Error(`managed PostgreSQL: ${what} exited ${r.status ?? r.signal}${r.error ? ` (${r.error.message})` : ""}:\n${tail(r.stderr || r.stdout || "", 40)}`);
    return r.stdout;
  };
  must("initdb", asPostgres(dir, [`${bin}/initdb`, "-D", data, "-U", "postgres", "--auth-local=peer", "--auth-host=reject",
    "--encoding=UTF8", "--locale=C", "--no-instructions"]));
  const port = await freePort();
  appendFileSync(join(data, "postgresql.conf"), [
    "", "# managed-pg.ts",
    `port = ${port}`,
    "listen_addresses = '127.0.0.1'",
    `unix_socket_directories = ${literal(data)}`,
    "ssl = on",
    `ssl_cert_file = ${literal(join(dir, "cert.pem"))}`,
    `ssl_key_file = ${literal(join(dir, "key.pem"))}`,
    "password_encryption = 'scram-sha-256'",
    "log_connections = on", // who the guest connected as, and with which TLS version, for a failed run's look
    "",
  ].join("\n"));
  // Replaces initdb's: TLS from loopback (where 10.0.2.2 lands) with a password, and the superuser
  // on the socket for setup. No `host` line, so a connection without TLS matches none: refused.
  const hba = join(data, "pg_hba.conf");
  writeFileSync(hba, [
    "# TYPE  DATABASE USER     ADDRESS       METHOD",
    "local   all      postgres               peer",
    "hostssl all      all      127.0.0.1/32  scram-sha-256",
    "",
  ].join("\n"), { mode: 0o600 });
  chownSync(hba, pg.uid, pg.gid);
  chmodSync(hba, 0o600);

  const pgCtl = (...args: string[]) => asPostgres(dir, [`${bin}/pg_ctl`, "-D", data, "-w", "-t", "60", ...args], { timeoutMs: 90_000 });
  const started = pgCtl("-l", log, "start");
  if (started.status !== 0) {
    const serverLog = existsSync(log) ? tail(readFileSync(log, "utf8"), 30) : "(no log)";
    throw new Error(`managed PostgreSQL: pg_ctl start exited ${started.status ?? started.signal}:\n${tail(started.stderr || started.stdout, 20)}\n${serverLog}`);
  }
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    const r = pgCtl("-m", "fast", "stop");
    // Exit 3 from status: no server running (it had died, or was stopped behind our back).
    if (r.status !== 0 && asPostgres(dir, [`${bin}/pg_ctl`, "-D", data, "status"]).status !== 3) must("pg_ctl stop", r);
    stopped = true;
    process.removeListener("exit", stop);
  };
  process.on("exit", stop); // not left behind by a script that dies
  // The run's teardown stops it even when a test failed half-way (postmaster.pid's first line).
  register(Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0]), `${bin}/postgres`);

  const adminPassword = newPassword();
  const password = newPassword();
  const sql = (query: string, o: { asApp?: boolean; db?: string } = {}) => {
    const [role, pw] = o.asApp ? [opts.user, password] : [MANAGED_PG_ADMIN, adminPassword];
    const db = o.db ?? opts.database;
    const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("PG")));
    const r = spawnSync(`${bin}/psql`, ["-X", "-q", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1", "-d", conninfo({
      host: "127.0.0.1", port: String(port), dbname: db, user: role, sslmode: "verify-full", sslrootcert: caFile, connect_timeout: "10",
    })], { encoding: "utf8", input: query, env: { ...env, PGPASSWORD: pw }, timeout: 60_000 });
    if (r.status !== 0) throw new Error(`psql as ${role} on ${db} exited ${r.status ?? r.signal}${r.error ? ` (${r.error.message})` : ""}: ${r.stderr.trim()}`);
    return r.stdout.trim();
  };
  try {
    must("psql as postgres", asPostgres(dir, [`${bin}/psql`, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", data, "-p", String(port), "-d", "postgres"], {
      input: `CREATE ROLE ${ident(MANAGED_PG_ADMIN)} LOGIN CREATEDB CREATEROLE PASSWORD ${literal(adminPassword)};\n`,
    }));
    // As DigitalOcean's API does it: the admin makes both, so the admin owns the database (and,
    // PostgreSQL 15+, its schema public, through pg_database_owner), and the user gets nothing.
    sql(`CREATE DATABASE ${ident(opts.database)};`, { db: "postgres" });
    sql(`CREATE ROLE ${ident(opts.user)} LOGIN PASSWORD ${literal(password)};`, { db: "postgres" });
  } catch (e) {
    stop();
    throw e;
  }
  return {
    host: HOST_FROM_GUEST,
    port,
    database: opts.database,
    user: opts.user,
    password,
    adminUser: MANAGED_PG_ADMIN,
    adminPassword,
    caPem,
    sql,
    stop,
  };
}

function userUidGid(name: string): { uid: number; gid: number } {
  const line = readFileSync("/etc/passwd", "utf8").split("\n").find((l) => l.startsWith(`${name}:`));
  if (!line) throw new Error(`no ${name} OS user (apt-get install postgresql)`);
  const [, , uid, gid] = line.split(":");
  return { uid: Number(uid), gid: Number(gid) };
}
