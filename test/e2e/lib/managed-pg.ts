// DigitalOcean's managed PostgreSQL (database.mode managed) in the test world: the VM suite's own
// PostgreSQL 17 build (the root filesystem of the images.postgres image, service-images.ts's
// POSTGRES, extracted from its `docker load` archive and run with chroot on this machine, no
// Docker), so the server's major is the guest client's, as a cluster's is images.postgres' major
// (pg_restore 17 sends `SET transaction_timeout`, which a 15 server refuses). It listens on
// loopback, which the guest reaches at 10.0.2.2:<port>. As on DigitalOcean: TLS only (pg_hba.conf
// has hostssl lines alone, so a plain connection is refused), scram-sha-256 passwords, an admin
// "doadmin" that may create databases and roles but is no superuser, and an app database and user
// the admin makes, the user with no privileges on schema public until granted some. Unlike it: one
// node, no connection pooler (PgBouncer), no restrictions on doadmin beyond not being a superuser,
// and a server certificate from a CA made for the test (makeListenerCert) instead of the cluster's
// own CA. Nothing is ever mounted in the root filesystem (no /dev or /proc bind mounts, which a
// later `rm -rf` of the dir would go through): it gets the few device nodes PostgreSQL opens, made
// with mknod, and System V shared memory instead of /dev/shm.
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import { join, resolve } from "node:path";
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
export const newPassword = () => `${randomBytes(12).toString("base64url")}+/${randomBytes(6).toString("base64url")}`;

type Run = (what: string, r: SpawnSyncReturns<string>) => string;
const must: Run = (what, r) => {
  if (r.status !== 0) throw new Error(`managed PostgreSQL: ${what} exited ${r.status ?? r.signal}${r.error ? ` (${r.error.message})` : ""}:\n${tail(r.stderr || r.stdout || "", 40)}`);
  return r.stdout;
};

/** Inside the root filesystem: the cluster, the server's certificate and key, its socket, its log. */
const STANDIN = "/var/lib/standin";

/**
 * Extracts the single layer of the `docker load` archive `archive` into `rootfs` (fresh) and makes
 * the device nodes PostgreSQL opens (no mounts: see the header).
 */
function extractRootfs(archive: string, rootfs: string): void {
  const manifest = JSON.parse(must("tar (manifest.json)", spawnSync("tar", ["-xOf", archive, "manifest.json"], { encoding: "utf8" }))) as { Layers?: string[] }[];
  const layers = manifest[0]?.Layers ?? [];
  if (manifest.length !== 1 || layers.length !== 1) throw new Error(`managed PostgreSQL: ${archive}: want one image of one layer, manifest.json has ${JSON.stringify(manifest)}`);
  mkdirSync(rootfs, { recursive: true });
  // Straight from one tar to the other: the layer is ~150 MB.
  const q = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
  must("tar (layer)", spawnSync("bash", ["-o", "pipefail", "-c", `tar -xOf ${q(archive)} ${q(layers[0])} | tar -x --numeric-owner -C ${q(rootfs)}`], { encoding: "utf8", timeout: 5 * 60_000 }));
  const dev = join(rootfs, "dev");
  mkdirSync(dev, { recursive: true });
  for (const [name, minor] of [["null", 3], ["zero", 5], ["random", 8], ["urandom", 9]] as const) {
    must(`mknod /dev/${name}`, spawnSync("mknod", ["-m", "0666", join(dev, name), "c", "1", String(minor)], { encoding: "utf8" }));
  }
}

/** The uid and gid of `name` in `rootfs`'s /etc/passwd. */
function rootfsUser(rootfs: string, name: string): { uid: number; gid: number } {
  const line = readFileSync(join(rootfs, "etc/passwd"), "utf8").split("\n").find((l) => l.startsWith(`${name}:`));
  if (!line) throw new Error(`managed PostgreSQL: no ${name} user in ${rootfs}/etc/passwd`);
  const [, , uid, gid] = line.split(":");
  return { uid: Number(uid), gid: Number(gid) };
}

/**
 * Starts the stand-in in `dir` (fresh): the image's root filesystem in rootfs/ (the cluster in
 * rootfs/var/lib/standin/data, the server's log in rootfs/var/lib/standin/postgres.log), the CA in
 * ca.pem. The postgres superuser (peer, on the unix socket) makes doadmin; doadmin (over TLS) makes
 * `database` and `user`. The caller owns `dir` (and may remove it once stop() returned: nothing is
 * mounted in it). `archive` is the PostgreSQL image's `docker load` archive: the `archive` field of
 * the ServiceImage for POSTGRES, i.e. `world.images.find((i) => i.recipe.id === POSTGRES.id)!.archive`
 * or `(await ensureServiceImage(POSTGRES)).archive`. Needs root (chroot, mknod).
 */
export async function startManagedPostgres(opts: { dir: string; database: string; user: string; archive: string }): Promise<ManagedPostgres> {
  if (userInfo().uid !== 0) throw new Error("managed PostgreSQL: runs the server chrooted in the image's root filesystem, so needs root");
  const dir = resolve(opts.dir);
  const rootfs = join(dir, "rootfs");
  if (existsSync(rootfs)) throw new Error(`managed PostgreSQL: ${rootfs} exists; start it in a fresh dir`);
  mkdirSync(dir, { recursive: true });
  extractRootfs(resolve(opts.archive), rootfs);

  const majors = readdirSync(join(rootfs, "usr/lib/postgresql"));
  if (majors.length !== 1) throw new Error(`managed PostgreSQL: want one major in ${rootfs}/usr/lib/postgresql, found ${majors.join(", ") || "none"}`);
  const bin = `/usr/lib/postgresql/${majors[0]}/bin`; // inside the root filesystem
  const pg = rootfsUser(rootfs, "postgres");
  const data = `${STANDIN}/data`;
  const ssl = `${STANDIN}/ssl`;
  const run = `${STANDIN}/run`;
  const log = `${STANDIN}/postgres.log`;
  const outside = (p: string) => join(rootfs, p);
  for (const d of [STANDIN, ssl, run]) {
    mkdirSync(outside(d), { recursive: true });
    chownSync(outside(d), pg.uid, pg.gid);
    chmodSync(outside(d), 0o700);
  }
  const lang = existsSync(join(rootfs, "usr/lib/locale/C.utf8")) ? "C.UTF-8" : "C";
  const env = { PATH: `${bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin` /* also where spawnSync finds chroot */, LANG: lang, HOME: STANDIN };
  /** A program of the root filesystem, run in it as its postgres user (numeric: no lookup here). */
  const asPostgres = (args: string[], o: { input?: string; timeoutMs?: number } = {}) =>
    spawnSync("chroot", [`--userspec=${pg.uid}:${pg.gid}`, rootfs, ...args], { cwd: "/", env, encoding: "utf8", input: o.input, timeout: o.timeoutMs ?? 60_000 });

  await makeListenerCert(dir, { cn: "managed-pg" });
  // The server refuses a key file that is not its own with mode 0600 (or root's, 0640, its group's).
  for (const f of ["cert.pem", "key.pem"]) {
    copyFileSync(join(dir, f), outside(`${ssl}/${f}`));
    chownSync(outside(`${ssl}/${f}`), pg.uid, pg.gid);
    chmodSync(outside(`${ssl}/${f}`), f === "key.pem" ? 0o600 : 0o644);
  }
  const caFile = join(dir, "ca.pem");
  const caPem = readFileSync(caFile, "utf8");

  must("initdb", asPostgres([`${bin}/initdb`, "-D", data, "-U", "postgres", "--auth-local=peer", "--auth-host=reject",
    "--encoding=UTF8", "--no-locale", "--no-instructions"]));
  const port = await freePort();
  appendFileSync(outside(`${data}/postgresql.conf`), [
    "", "# managed-pg.ts",
    `port = ${port}`,
    "listen_addresses = '127.0.0.1'", // chroot shares this machine's network: its loopback
    `unix_socket_directories = ${literal(run)}`,
    "dynamic_shared_memory_type = sysv", // no /dev/shm in the root filesystem
    "ssl = on",
    `ssl_cert_file = ${literal(`${ssl}/cert.pem`)}`,
    `ssl_key_file = ${literal(`${ssl}/key.pem`)}`,
    "password_encryption = 'scram-sha-256'",
    "log_connections = on", // who the guest connected as, and with which TLS version, for a failed run's look
    "",
  ].join("\n"));
  // Replaces initdb's: TLS from loopback (where 10.0.2.2 lands) with a password, and the superuser
  // on the socket for setup. No `host` line, so a connection without TLS matches none: refused.
  const hba = outside(`${data}/pg_hba.conf`);
  writeFileSync(hba, [
    "# TYPE  DATABASE USER     ADDRESS       METHOD",
    "local   all      postgres               peer",
    "hostssl all      all      127.0.0.1/32  scram-sha-256",
    "",
  ].join("\n"), { mode: 0o600 });
  chownSync(hba, pg.uid, pg.gid);
  chmodSync(hba, 0o600);

  const pgCtl = (...args: string[]) => asPostgres([`${bin}/pg_ctl`, "-D", data, "-w", "-t", "60", ...args], { timeoutMs: 90_000 });
  const started = pgCtl("-l", log, "start");
  if (started.status !== 0) {
    const serverLog = existsSync(outside(log)) ? tail(readFileSync(outside(log), "utf8"), 30) : "(no log)";
    throw new Error(`managed PostgreSQL: pg_ctl start exited ${started.status ?? started.signal}:\n${tail(started.stderr || started.stdout, 20)}\n${serverLog}`);
  }
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    const r = pgCtl("-m", "fast", "stop");
    // Exit 3 from status: no server running (it had died, or was stopped behind our back).
    if (r.status !== 0 && asPostgres([`${bin}/pg_ctl`, "-D", data, "status"]).status !== 3) must("pg_ctl stop", r);
    stopped = true;
    process.removeListener("exit", stop);
  };
  process.on("exit", stop); // not left behind by a script that dies
  // The run's teardown stops it even when a test failed half-way (postmaster.pid's first line; its
  // command line is the path inside the root filesystem).
  register(Number(readFileSync(outside(`${data}/postmaster.pid`), "utf8").split("\n")[0]), `${bin}/postgres`);

  const adminPassword = newPassword();
  const password = newPassword();
  // This machine's psql (an older major: fine for plain queries; -X -q -A -t, no banner or warning on stdout).
  const sql = (query: string, o: { asApp?: boolean; db?: string } = {}) => {
    const [role, pw] = o.asApp ? [opts.user, password] : [MANAGED_PG_ADMIN, adminPassword];
    const db = o.db ?? opts.database;
    const penv: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("PG")));
    const r = spawnSync(join(pgBinDir(), "psql"), ["-X", "-q", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1", "-d", conninfo({
      host: "127.0.0.1", port: String(port), dbname: db, user: role, sslmode: "verify-full", sslrootcert: caFile, connect_timeout: "10",
    })], { encoding: "utf8", input: query, env: { ...penv, PGPASSWORD: pw }, timeout: 60_000 });
    if (r.status !== 0) throw new Error(`psql as ${role} on ${db} exited ${r.status ?? r.signal}${r.error ? ` (${r.error.message})` : ""}: ${r.stderr.trim()}`);
    return r.stdout.trim();
  };
  try {
    must("psql as postgres", asPostgres([`${bin}/psql`, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", run, "-p", String(port), "-U", "postgres", "-d", "postgres"], {
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
