// The backup, list and restore tools run for real against a local PostgreSQL, Redis and S3 server
// (s3rver). `docker exec` is the one thing stood in for (test/scripts/fixtures/docker maps it onto
// the local servers); the containers themselves are proven on the VM.
import * as fs from "fs";
import * as path from "path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "child_process";
import { freePort, LocalPostgres, LocalS3, missing, pgBinDir, run, runAsync, SCRIPTS, startPostgres, startS3, tmpDir } from "./helpers";

const TOOLS = path.join(SCRIPTS, "tools");
const need = missing("psql", "pg_dump", "redis-server", "redis-cli", "redis-check-rdb", "s3cmd", "runuser");
if (need.length) console.warn(`backup tool tests SKIPPED: missing ${need.join(", ")} (apt-get install postgresql redis-server s3cmd)`);

describe.skipIf(need.length > 0)("nodehost-backup / nodehost-backups / nodehost-restore", () => {
  let pg: LocalPostgres;
  let s3: LocalS3;
  const root = tmpDir("nodehost-backup-");
  const drillRoot = tmpDir("nodehost-drill-");
  fs.chmodSync(drillRoot, 0o755);
  const etc = path.join(root, "etc");
  const data = path.join(root, "data");
  const redisDir = path.join(data, "redis");
  let env: NodeJS.ProcessEnv;
  const redisPass = "redis-pass-" + Math.random().toString(36).slice(2);
  const PASSPHRASE = "backup-passphrase-" + Math.random().toString(36).slice(2);
  /** The archive inside an encrypted backup, decrypted as an operator would with the passphrase. */
  const decrypt = (file: string, passphrase = PASSPHRASE) => {
    const home = tmpDir("nodehost-gnupg-");
    const pw = path.join(home, "pw");
    fs.writeFileSync(pw, passphrase, { mode: 0o600 });
    const out = path.join(home, "backup.tar.gz");
    const r = run("gpg", ["--batch", "--quiet", "--homedir", home, "--pinentry-mode", "loopback", "--passphrase-file", pw, "--decrypt", "-o", out, file]);
    run("gpgconf", ["--homedir", home, "--kill", "gpg-agent"]);
    return { status: r.status, stderr: r.stderr, out };
  };
  const tool = (name: string, args: string[] = [], extra: NodeJS.ProcessEnv = {}) => run(path.join(TOOLS, name), args, { env: { ...env, ...extra } });
  /** `tool` for tests of many long runs: it lets vitest's worker answer in between (helpers.runAsync). */
  const toolAsync = (name: string, args: string[] = [], extra: NodeJS.ProcessEnv = {}) => runAsync(path.join(TOOLS, name), args, { env: { ...env, ...extra } });
  const rcli = (...args: string[]) => run("redis-cli", ["-p", env.SHIM_REDIS_PORT!, ...args], { env: { REDISCLI_AUTH: redisPass } }).stdout.trim();
  const remote = () => s3.s3("ls", `s3://${s3.bucket}/prod/`).stdout.trim().split("\n").filter(Boolean).map((l) => l.split(/\s+/).pop()!.replace(/.*\//, ""));
  /** The UTC timestamp backup names carry (YYYYmmddTHHMMSSZ), for a time `ms`. */
  const stampAt = (ms: number) => new Date(ms).toISOString().replace(/[-:]/g, "").slice(0, 15) + "Z";
  /** Row count and digest of the test table: equal before and after means the data is the same. */
  const visitsDigest = () => pg.psql("SELECT count(*) || ':' || md5(string_agg(id || note, ',' ORDER BY id)) FROM visits");
  const writeEnv = (db: string) => fs.writeFileSync(path.join(etc, "backup.env"), [
    "APP_NAME='app'", "STACK='production'", `DATA_MOUNT='${data}'`, "POSTGRES_USER='app'", `POSTGRES_DB='${db}'`,
    `S3_BUCKET='${s3.bucket}'`, "S3_PREFIX='/prod/'", "RETENTION_LOCAL_DAYS='7'", "RETENTION_REMOTE_DAYS='30'", "",
  ].join("\n"));

  /** backup.env with one line changed (prefix, stack), for the length of `fn`. */
  const withEnv = <T>(from: string, to: string, fn: () => T): T => {
    fs.writeFileSync(path.join(etc, "backup.env"), fs.readFileSync(path.join(etc, "backup.env"), "utf8").replace(from, to));
    try { return fn(); } finally { writeEnv("app"); }
  };
  /** backup.env with the backups step's CACHE_MODE line (docker, managed) for the length of `fn`. */
  const withCache = async <T>(mode: string, fn: () => Promise<T>): Promise<T> => {
    fs.appendFileSync(path.join(etc, "backup.env"), `CACHE_MODE='${mode}'\n`);
    try { return await fn(); } finally { writeEnv("app"); }
  };
  /** The archives on the volume moved aside for the length of `fn`: it starts with none. */
  const withoutLocal = async <T>(fn: () => Promise<T>): Promise<T> => {
    const dir = path.join(data, "backups");
    const aside = tmpDir("nodehost-aside-");
    const moved = fs.readdirSync(dir).filter((f) => /\.tar\.gz(\.gpg)?$/.test(f));
    for (const f of moved) fs.renameSync(path.join(dir, f), path.join(aside, f));
    try { return await fn(); } finally {
      for (const f of fs.readdirSync(dir).filter((f) => /\.tar\.gz(\.gpg)?$/.test(f))) fs.rmSync(path.join(dir, f));
      for (const f of moved) fs.renameSync(path.join(aside, f), path.join(dir, f));
    }
  };
  const localArchives = () => fs.readdirSync(path.join(data, "backups")).filter((f) => /^app-production-.*\.tar\.gz\.gpg$/.test(f)).sort();

  /** A copy of etc/ whose backup.env has no STACK, as a host's from before names carried it. */
  const copyEtc = () => {
    const dir = tmpDir("nodehost-etc-");
    for (const f of fs.readdirSync(etc)) fs.copyFileSync(path.join(etc, f), path.join(dir, f));
    return dir;
  };
  const legacyEtc = () => {
    const dir = copyEtc();
    fs.writeFileSync(path.join(dir, "backup.env"), fs.readFileSync(path.join(etc, "backup.env"), "utf8").replace("STACK='production'\n", ""));
    return dir;
  };
  /** A copy of etc/ whose s3cfg names `port`, where nothing listens: the bucket "down". */
  const bucketDownEtc = (port: number) => {
    const dir = copyEtc();
    fs.writeFileSync(path.join(dir, "s3cfg"), fs.readFileSync(path.join(etc, "s3cfg"), "utf8").replace(/127\.0\.0\.1:\d+/g, `127.0.0.1:${port}`));
    return dir;
  };

  beforeAll(async () => {
    pg = await startPostgres();
    s3 = await startS3();
    fs.mkdirSync(etc, { recursive: true });
    fs.mkdirSync(redisDir, { recursive: true });
    fs.copyFileSync(s3.s3cfg, path.join(etc, "s3cfg"));
    fs.writeFileSync(path.join(etc, "backup.passphrase"), `${PASSPHRASE}\n`, { mode: 0o600 });
    writeEnv("app");
    // Written by the backups step once the database is initialised or restored (on the volume).
    fs.writeFileSync(path.join(data, ".nodehost-initialized"), "initialized=2026-01-01T00:00:00Z\nrestored=none\n");
    env = {
      PATH: `${path.join(__dirname, "fixtures")}:${process.env.PATH}`,
      NODEHOST_ETC: etc, NODEHOST_LOG: path.join(root, "backup.log"), NODEHOST_LOCK: path.join(root, "lock"),
      NODEHOST_BACKUP_TOOL: path.join(TOOLS, "nodehost-backup"), NODEHOST_LIST_TOOL: path.join(TOOLS, "nodehost-backups"),
      ...pg.env,
      SHIM_REDIS_PORT: String(await freePort()), SHIM_LOADER_PORT: String(await freePort()),
      SHIM_REDIS_PASS: redisPass, SHIM_REDIS_DIR: redisDir,
      // The drill's scratch server (a second local PostgreSQL, see fixtures/docker).
      SHIM_PG_BIN: pgBinDir(), SHIM_DRILL_PORT: String(await freePort()), SHIM_DRILL_DIR: path.join(drillRoot, "pg"),
      NODEHOST_STATUS: path.join(root, "status"),
      // The data directory plays the mounted volume (fixtures/mountpoint); "" plays it missing.
      SHIM_MOUNTED: data,
    };
    expect(run("docker", ["redis-up"], { env: { ...process.env, ...env } }).status).toBe(0);
    pg.psql("CREATE TABLE visits (id bigserial PRIMARY KEY, note text); INSERT INTO visits (note) SELECT 'row ' || g FROM generate_series(1, 50) g;");
    // A table name no line-based format survives unescaped.
    pg.psql(`CREATE TABLE "odd ""name""
with a newline" (id int); INSERT INTO "odd ""name""
with a newline" VALUES (1), (2);`);
    rcli("SET", "greeting", "hello");
  }, 120_000);

  afterAll(() => {
    if (env) rcli("SHUTDOWN");
    pg?.stop();
    s3?.stop();
  });

  it("uploads one verified archive, applies retention by the name's timestamp, marks freshness", () => {
    // Seed: an expired and a recent remote backup, another app's old object, an expired local file.
    const seed = path.join(root, "seed.tar.gz");
    fs.writeFileSync(seed, "x");
    const recent = `app-${stampAt(Date.now() - 2 * 86400e3)}.tar.gz`;
    for (const name of ["app-20000101T000000Z.tar.gz", recent, "other-20000101T000000Z.tar.gz"]) {
      expect(s3.s3("-q", "put", seed, `s3://${s3.bucket}/prod/${name}`).status).toBe(0);
    }
    fs.mkdirSync(path.join(data, "backups"), { recursive: true });
    fs.writeFileSync(path.join(data, "backups", "app-20000101T000000Z.tar.gz"), "old");

    // KEEP_NEWEST=1: retention by age alone here (its floor of newest backups has a test below).
    const r = tool("nodehost-backup", [], { KEEP_NEWEST: "1" });
    expect(r.status, r.stderr).toBe(0);
    const file = r.stdout.trim();
    const name = path.basename(file);
    expect(name).toMatch(/^app-production-\d{8}T\d{6}Z\.tar\.gz\.gpg$/);
    // Besides the backups, the record that this stack has run (nodehost-backups --start reads it).
    expect(remote().sort()).toEqual([name, recent, "other-20000101T000000Z.tar.gz", "app-production.nodehost-stack"].sort());
    expect(fs.readdirSync(path.join(data, "backups")).filter((f) => /\.tar\.gz(\.gpg)?$/.test(f))).toEqual([name]);
    expect(r.stderr).toContain("retention: removed remote app-20000101T000000Z.tar.gz");
    expect(r.stderr).toContain("retention: removed local app-20000101T000000Z.tar.gz");

    // Encrypted: nothing of the dump or the RDB is readable without the passphrase, which opens it.
    const bytes = fs.readFileSync(file);
    expect(bytes.includes("PGDMP")).toBe(false);
    expect(bytes.includes("MANIFEST")).toBe(false);
    const home = tmpDir("nodehost-gnupg-");
    const packets = run("gpg", ["--list-packets", "--batch", "--pinentry-mode", "cancel", "--homedir", home, file]).stdout;
    run("gpgconf", ["--homedir", home, "--kill", "gpg-agent"]);
    expect(packets).toMatch(/symkey enc packet: version \d, cipher 9/); // 9: AES-256
    expect(decrypt(file, "not-the-passphrase").status).not.toBe(0);
    const opened = decrypt(file);
    expect(opened.status, opened.stderr).toBe(0);
    expect(run("tar", ["-tzf", opened.out]).stdout.split("\n").filter(Boolean).sort()).toEqual(["MANIFEST", "postgres.dump", "redis.rdb", "rowcounts.tsv"]);
    expect(fs.readdirSync(path.join(data, "backups")).filter((f) => f.startsWith(".work"))).toEqual([]);
    const mark = fs.readFileSync(path.join(data, "backups", "LAST_SUCCESS"), "utf8");
    expect(mark).toContain(`object=s3://${s3.bucket}/prod/${name}\n`);
    expect(mark).toContain(`bytes=${fs.statSync(file).size}\n`);
    expect(fs.readFileSync(path.join(root, "backup.log"), "utf8")).toContain(`ok: ${name}`);
  });

  it("a failing pg_dump fails the run with one FAILED line and leaves the bucket and the mark alone", () => {
    const before = remote().sort();
    const mark = fs.readFileSync(path.join(data, "backups", "LAST_SUCCESS"), "utf8");
    writeEnv("no_such_db");
    try {
      const r = tool("nodehost-backup");
      expect(r.status).toBe(1);
      const failed = r.stderr.split("\n").filter((l) => l.includes("FAILED"));
      expect(failed, r.stderr).toHaveLength(1);
      expect(failed[0]).toMatch(/nodehost-backup: FAILED at pg_dump: .*database "no_such_db" does not exist/);
      expect(remote().sort()).toEqual(before);
      expect(fs.readFileSync(path.join(data, "backups", "LAST_SUCCESS"), "utf8")).toBe(mark);
      expect(fs.readdirSync(path.join(data, "backups")).filter((f) => f.startsWith(".work"))).toEqual([]);
    } finally {
      writeEnv("app");
    }
  });

  it("never runs two at once", () => {
    const held = run("flock", ["-n", env.NODEHOST_LOCK!, path.join(TOOLS, "nodehost-backup")], { env });
    expect(held.status).toBe(1);
    expect(held.stderr).toContain(`FAILED at setup: another backup or restore holds ${env.NODEHOST_LOCK}`);
  });

  it("lists remote and local backups with sizes and ages, newest last", () => {
    const r = tool("nodehost-backups");
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^where\s+size\s+age\s+name$/);
    const remoteRows = lines.filter((l) => l.startsWith("remote"));
    expect(remoteRows.at(-1)).toMatch(/^remote\s+\S+\s+\d+m\s+app-production-\d{8}T\d{6}Z\.tar\.gz\.gpg$/);
    expect(remoteRows.some((l) => /\s2d\s+app-/.test(l))).toBe(true);
    expect(lines.filter((l) => l.startsWith("local"))).toHaveLength(1);
    expect(lines.at(-1)).toMatch(/^last successful backup: \d{8}T\d{6}Z \(s3:\/\//);
  });

  it("keeps stacks that share a bucket apart: another stack's newer backup is not the newest, and its old ones are not pruned", () => {
    const seed = path.join(root, "seed-staging");
    fs.writeFileSync(seed, "not an archive");
    const newer = `app-staging-${stampAt(Date.now() + 3600e3)}.tar.gz.gpg`;
    const old = "app-staging-20000101T000000Z.tar.gz.gpg";
    for (const n of [newer, old]) expect(s3.s3("-q", "put", seed, `s3://${s3.bucket}/prod/${n}`).status).toBe(0);
    const newest = tool("nodehost-backups", ["--newest"]);
    expect(newest.status, newest.stderr).toBe(0);
    expect(newest.stdout.trim()).toMatch(/^app-production-\d{8}T\d{6}Z\.tar\.gz\.gpg$/);
    expect(newest.stdout.trim()).toBe(remote().filter((n) => n.startsWith("app-production-")).sort().at(-1));
    // Before names carried the stack (STACK unset): the newest of the old names, never a stack's.
    const legacy = tool("nodehost-backups", ["--newest"], { NODEHOST_ETC: legacyEtc() });
    expect(legacy.stdout.trim()).toMatch(/^app-\d{8}T\d{6}Z\.tar\.gz$/);
    const r = tool("nodehost-backup");
    expect(r.status, r.stderr).toBe(0);
    expect(remote()).toEqual(expect.arrayContaining([newer, old]));
  }, 60_000);

  it("restores the newest backup over changed data, after a pre-restore backup", async () => {
    const before = visitsDigest();
    await new Promise((r) => setTimeout(r, 1100)); // a new second: a new backup name
    const b = tool("nodehost-backup");
    expect(b.status, b.stderr).toBe(0);
    pg.psql("DELETE FROM visits WHERE id > 10; CREATE TABLE junk (x int);");
    rcli("SET", "greeting", "changed");
    rcli("SET", "extra", "1");

    const r = tool("nodehost-restore", ["latest", "--yes"]);
    expect(r.status, r.stderr).toBe(0);
    expect(visitsDigest()).toBe(before);
    expect(rcli("GET", "greeting")).toBe("hello");
    expect(rcli("EXISTS", "extra")).toBe("0");
    // The AOF Redis starts from now holds the restored data (a restart keeps it).
    rcli("SHUTDOWN");
    expect(run("docker", ["redis-up"], { env: { ...process.env, ...env } }).status).toBe(0);
    expect(rcli("GET", "greeting")).toBe("hello");
    expect(r.stderr).toMatch(/ok: restored s3:\/\/.*\/prod\/app-production-\d{8}T\d{6}Z\.tar\.gz\.gpg/);
    const pre = fs.readdirSync(path.join(data, "backups")).filter((f) => f.startsWith("pre-restore-"));
    expect(pre).toHaveLength(1);
    // The pre-restore backup holds the state just before: the 10 rows and the junk table.
    const list = run("sh", ["-c", `tar -xzOf ${decrypt(path.join(data, "backups", pre[0])).out} postgres.dump | pg_restore --list`]);
    expect(list.stdout).toContain("TABLE public junk");
    // The restored backup's MANIFEST, for a point-in-time restore after it (backups step, disaster
    // recovery: nodehost-pitr restore --not-before its postgres_wal_lsn).
    expect(fs.readFileSync(path.join(root, "status", "restored-manifest"), "utf8")).toMatch(/^app=app\nstack=production\n/m);
    expect(fs.readFileSync(path.join(root, "status", "restored-manifest"), "utf8")).toMatch(/^postgres_wal_lsn=[0-9A-F]+\/[0-9A-F]+$/m);
  }, 60_000);

  it("a restore whose Redis or PostgreSQL fails leaves both as they were, a table only the backup has included", async () => {
    await new Promise((r) => setTimeout(r, 1100)); // a new second: a new backup name
    pg.psql("CREATE TABLE only_in_backup (x int);");
    const b = await toolAsync("nodehost-backup");
    expect(b.status, b.stderr).toBe(0);
    const backedUp = visitsDigest();
    pg.psql("DELETE FROM visits WHERE id > 20; DROP TABLE only_in_backup;");
    rcli("SET", "greeting", "after the backup");
    const now = visitsDigest();
    expect(now).not.toBe(backedUp);
    const onlyInBackup = () => pg.psql("SELECT to_regclass('public.only_in_backup') IS NOT NULL");
    // The Redis container's next start fails (fixtures/docker), on the backup's files.
    fs.writeFileSync(path.join(data, "fail-next-start"), "");
    const r = await toolAsync("nodehost-restore", ["latest", "--yes"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("Redis is not healthy on the backup's data: putting Redis's previous files back");
    expect(r.stderr).toContain("FAILED at redis: Redis did not come back healthy on the backup's data; it is back on its previous files, and PostgreSQL was not touched");
    expect(fs.existsSync(path.join(data, "fail-next-start"))).toBe(false);
    expect(visitsDigest()).toBe(now);
    expect(onlyInBackup()).toBe("f");
    expect(rcli("GET", "greeting")).toBe("after the backup");
    // PostgreSQL's restore fails once Redis holds the backup's data (a view on a table the backup
    // replaces: --clean cannot drop it): the transaction leaves PostgreSQL as it was, and Redis goes back.
    pg.psql("CREATE VIEW blocks_restore AS SELECT id FROM visits;");
    const pgFails = await toolAsync("nodehost-restore", ["latest", "--yes"]);
    expect(pgFails.status).toBe(1);
    expect(pgFails.stderr).toContain("FAILED at postgres: pg_restore of the backup failed, and PostgreSQL is as it was (one transaction); Redis is back on its previous files");
    expect(visitsDigest()).toBe(now);
    expect(onlyInBackup()).toBe("f");
    expect(rcli("GET", "greeting")).toBe("after the backup");
    pg.psql("DROP VIEW blocks_restore;");
    // And a restore that works afterwards brings the backup's data.
    const again = await toolAsync("nodehost-restore", ["latest", "--yes"]);
    expect(again.status, again.stderr).toBe(0);
    expect(visitsDigest()).toBe(backedUp);
    expect(onlyInBackup()).toBe("t");
    expect(rcli("GET", "greeting")).toBe("hello");
  }, 180_000);

  it("into a database with no table and a Redis with no key (a new volume) it takes no pre-restore backup; a Redis failure there leaves both empty", async () => {
    const preRestores = () => fs.readdirSync(path.join(data, "backups")).filter((f) => f.startsWith("pre-restore-")).length;
    // The newest backup holds the data as it is now: the test above ended on a restore of it. No
    // backup of its own, and its one pre-restore backup goes again at its end: the tests after it
    // use the newest archive on the volume, and LOCAL_COPIES keeps 14 there.
    const onVolume = new Set(fs.readdirSync(path.join(data, "backups")));
    const backedUp = visitsDigest();
    const userTables = "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')";
    const empty = () => {
      const tables = pg.psql("SELECT string_agg(format('%I.%I', schemaname, tablename), ',') FROM pg_catalog.pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')");
      if (tables) pg.psql(`DROP TABLE ${tables} CASCADE`);
      rcli("FLUSHALL");
      expect([pg.psql(userTables), rcli("DBSIZE")]).toEqual(["0", "0"]);
    };
    empty();
    const pres = preRestores();
    fs.writeFileSync(path.join(data, "fail-next-start"), "");
    const failed = await toolAsync("nodehost-restore", ["latest", "--yes"]);
    expect(failed.status).toBe(1);
    expect(failed.stderr).toContain("the database holds no table and Redis no key: nothing to keep, no pre-restore backup");
    expect(failed.stderr).toContain("FAILED at redis: Redis did not come back healthy on the backup's data; it is back on its previous files, and PostgreSQL was not touched");
    expect([pg.psql(userTables), rcli("DBSIZE")]).toEqual(["0", "0"]);
    expect(preRestores()).toBe(pres);

    empty();
    const r = await toolAsync("nodehost-restore", ["latest", "--yes"]);
    expect(r.status, r.stderr).toBe(0);
    expect(visitsDigest()).toBe(backedUp);
    expect(rcli("GET", "greeting")).toBe("hello");
    expect(r.stderr).toContain("nothing to keep, no pre-restore backup");
    expect(r.stderr).toMatch(/ok: restored \S+ \(\d+ tables, \d+ Redis keys\)\n/);
    expect(preRestores()).toBe(pres);
    // A Redis with a key is something to keep, with no table: the pre-restore backup is taken.
    empty();
    rcli("SET", "only-here", "1");
    const kept = await toolAsync("nodehost-restore", ["latest", "--yes"]);
    expect(kept.status, kept.stderr).toBe(0);
    expect(kept.stderr).toContain("pre-restore backup of the current data: ");
    expect(preRestores()).toBe(pres + 1);
    expect(visitsDigest()).toBe(backedUp);
    for (const f of fs.readdirSync(path.join(data, "backups"))) if (!onVolume.has(f)) fs.rmSync(path.join(data, "backups", f), { recursive: true, force: true });
  }, 180_000);

  it("skips a newest backup that does not read back (cut short, corrupt) for the one before it, loudly", async () => {
    const stamp = stampAt(Date.now() + 7200e3);
    const broken = `app-production-${stamp}.tar.gz.gpg`;
    const good = remote().filter((n) => n.startsWith("app-production-")).sort().at(-1)!;
    const seed = path.join(root, "seed-broken");
    fs.writeFileSync(seed, fs.readFileSync(path.join(data, "backups", good)).subarray(0, 200)); // an upload cut short
    expect(s3.s3("-q", "put", seed, `s3://${s3.bucket}/prod/${broken}`).status).toBe(0);
    try {
      const r = tool("nodehost-restore", ["latest", "--yes"]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toContain(`skipping s3://${s3.bucket}/prod/${broken}: cannot decrypt`);
      expect(r.stderr).toContain(`restoring s3://${s3.bucket}/prod/${good}: the newer ones above could not be read`);
      expect(r.stdout.trim()).toBe(`s3://${s3.bucket}/prod/${good}`);
      // Asked for by name, the broken one is refused, not swapped for another.
      const named = tool("nodehost-restore", [broken, "--yes"]);
      expect(named.status).toBe(1);
      expect(named.stderr).toMatch(/FAILED at decrypt: cannot decrypt/);
    } finally {
      s3.s3("-q", "del", `s3://${s3.bucket}/prod/${broken}`);
    }
  }, 120_000);

  /** A copy of a backup with `edit` applied to its unpacked files, encrypted again with the stack's passphrase. */
  const repack = (file: string, edit: (dir: string) => void) => {
    const dir = tmpDir("nodehost-repack-");
    expect(run("tar", ["-xzf", decrypt(file).out, "-C", dir]).status).toBe(0);
    edit(dir);
    const tgz = path.join(dir, "..", path.basename(dir) + ".tar.gz");
    const files = ["MANIFEST", "postgres.dump", "redis.rdb", "rowcounts.tsv"].filter((f) => fs.existsSync(path.join(dir, f)));
    expect(run("tar", ["-czf", tgz, "-C", dir, ...files]).status).toBe(0);
    const home = tmpDir("nodehost-gnupg-");
    const out = tgz + ".gpg";
    const r = run("gpg", ["--batch", "--quiet", "--homedir", home, "--pinentry-mode", "loopback", "--passphrase-file", path.join(etc, "backup.passphrase"),
      "--symmetric", "--cipher-algo", "AES256", "-o", out, tgz]);
    run("gpgconf", ["--homedir", home, "--kill", "gpg-agent"]);
    expect(r.status, r.stderr).toBe(0);
    return out;
  };
  const newestOwn = () => remote().filter((n) => n.startsWith("app-production-")).sort().at(-1)!;

  it("writes a MANIFEST naming the app, stack, server versions and each file's checksum", () => {
    const dir = tmpDir("nodehost-manifest-");
    expect(run("tar", ["-xzf", decrypt(path.join(data, "backups", newestOwn())).out, "-C", dir]).status).toBe(0);
    const m = new Map(fs.readFileSync(path.join(dir, "MANIFEST"), "utf8").trim().split("\n").map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
    expect(m.get("format")).toBe("3");
    expect(m.get("cache")).toBe("docker");
    expect([m.get("app"), m.get("stack"), m.get("postgres_db")]).toEqual(["app", "production", "app"]);
    expect(m.get("postgres_server_version_num")).toBe(pg.psql("SHOW server_version_num"));
    // The WAL position of the dump's snapshot: behind the server's now, and ahead of no row it holds.
    expect(m.get("postgres_wal_lsn")).toMatch(/^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/);
    expect(pg.psql(`SELECT '${m.get("postgres_wal_lsn")}'::pg_lsn <= pg_current_wal_lsn()`)).toBe("t");
    expect(m.get("redis_version")).toBe(rcli("INFO", "server").match(/redis_version:([0-9.]+)/)![1]);
    const sha = (f: string) => run("sha256sum", [path.join(dir, f)]).stdout.split(" ")[0];
    expect([m.get("postgres_dump_sha256"), m.get("redis_rdb_sha256"), m.get("rowcounts_sha256")]).toEqual([sha("postgres.dump"), sha("redis.rdb"), sha("rowcounts.tsv")]);
    // Every table's rows, each name on one line whatever it holds.
    const counts = fs.readFileSync(path.join(dir, "rowcounts.tsv"), "utf8");
    expect(counts).toContain(`${pg.psql("SELECT count(*) FROM visits")}\t"public.visits"\n`);
    expect(counts).toContain(`2\t${JSON.stringify('public."odd ""name""\nwith a newline"')}\n`);
    expect([m.get("tables"), m.get("rows")]).toEqual([String(counts.trim().split("\n").length), String(counts.trim().split("\n").reduce((n, l) => n + Number(l.split("\t")[0]), 0))]);
  });

  it("a drill restores the newest backup into a scratch server and finds the manifest's rows, even with writes during the backup", async () => {
    // A writer inserts throughout the backup: counts taken apart from the dump's snapshot would
    // not match what the dump restores.
    const stop = path.join(root, "stop-writer");
    const writer = spawn("bash", ["-c", `until [ -e ${stop} ]; do psql -qAtX -c "INSERT INTO visits (note) VALUES ('during backup')" || exit 1; done`],
      { env: { ...process.env, ...pg.env }, stdio: "ignore" });
    const exited = new Promise((r) => writer.on("exit", r));
    let b;
    try {
      b = await toolAsync("nodehost-backup");
    } finally {
      fs.writeFileSync(stop, "");
      await exited;
      fs.rmSync(stop);
    }
    expect(b.status, b.stderr).toBe(0);
    const before = visitsDigest();
    const r = await toolAsync("nodehost-restore", ["--drill"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(`s3://${s3.bucket}/prod/${path.basename(b.stdout.trim())}`);
    expect(r.stderr).toMatch(/drill ok: .* restored into a scratch server \(\d+ tables, \d+ rows as in the manifest\), its RDB checked/);
    const status = fs.readFileSync(path.join(root, "status", "drill"), "utf8");
    expect(status).toMatch(/^result=ok\n/);
    expect(status).toContain(`object=s3://${s3.bucket}/prod/${path.basename(b.stdout.trim())}\n`);
    // Nothing of the live data moved; the scratch server is gone.
    expect(visitsDigest()).toBe(before);
    expect(fs.existsSync(path.join(drillRoot, "pg", "data"))).toBe(false);
  }, 180_000);

  it("a drill whose newest backup does not restore fails, says why and turns the heartbeat red; the one before is not taken instead", async () => {
    const good = newestOwn();
    fs.mkdirSync(path.join(root, "status"), { recursive: true });
    fs.writeFileSync(path.join(root, "status", "backup-fresh"), "ok\n");
    // A newest backup whose manifest counts one row more than its dump holds (its checksum fixed
    // to match): only restoring it shows it.
    const bad = repack(path.join(data, "backups", good), (dir) => {
      const f = path.join(dir, "rowcounts.tsv");
      const counts = fs.readFileSync(f, "utf8").replace(/^(\d+)(\t"public\.visits")$/m, (_m, n: string, rest: string) => `${Number(n) + 1}${rest}`);
      fs.writeFileSync(f, counts);
      const sum = run("sha256sum", [f]).stdout.split(" ")[0];
      const mf = path.join(dir, "MANIFEST");
      fs.writeFileSync(mf, fs.readFileSync(mf, "utf8").replace(/^rowcounts_sha256=.*$/m, `rowcounts_sha256=${sum}`));
    });
    const name = `app-production-${stampAt(Date.now() + 3600e3)}.tar.gz.gpg`;
    expect(s3.s3("-q", "put", bad, `s3://${s3.bucket}/prod/${name}`).status).toBe(0);
    try {
      const r = await toolAsync("nodehost-restore", ["--drill"]);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/FAILED at drill_rows: the restored row counts differ from the backup's manifest: -\d+\t"public.visits" \+\d+\t"public.visits"/);
      const status = fs.readFileSync(path.join(root, "status", "drill"), "utf8");
      expect(status).toMatch(/^result=failed\n/);
      expect(status).toContain(`object=s3://${s3.bucket}/prod/${name}\n`);
      expect(fs.existsSync(path.join(root, "status", "backup-fresh"))).toBe(false);
      expect(fs.existsSync(path.join(drillRoot, "pg", "data"))).toBe(false);
    } finally {
      s3.s3("-q", "del", `s3://${s3.bucket}/prod/${name}`);
    }
    // The next good drill clears it.
    const ok = await toolAsync("nodehost-restore", ["--drill"]);
    expect(ok.status, ok.stderr).toBe(0);
    expect(fs.readFileSync(path.join(root, "status", "drill"), "utf8")).toMatch(/^result=ok\n/);
  }, 180_000);

  it("latest skips a backup whose MANIFEST is another stack's (a copied or renamed object); by name it restores, said so", () => {
    const good = newestOwn();
    const stamp = stampAt(Date.now() + 7200e3);
    const foreign = `app-production-${stamp}.tar.gz.gpg`;
    const copy = repack(path.join(data, "backups", good), (dir) => {
      const m = path.join(dir, "MANIFEST");
      fs.writeFileSync(m, fs.readFileSync(m, "utf8").replace("stack=production\n", "stack=staging\n"));
    });
    expect(s3.s3("-q", "put", copy, `s3://${s3.bucket}/prod/${foreign}`).status).toBe(0);
    try {
      const r = tool("nodehost-restore", ["latest", "--yes"]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toContain(`skipping s3://${s3.bucket}/prod/${foreign}: s3://${s3.bucket}/prod/${foreign} is a backup of app 'app' stack 'staging' (its MANIFEST), not of this host's app 'app' stack 'production'`);
      expect(r.stdout.trim()).toBe(`s3://${s3.bucket}/prod/${good}`);
      const named = tool("nodehost-restore", [foreign, "--yes"]);
      expect(named.status, named.stderr).toBe(0);
      expect(named.stderr).toContain("is a backup of app 'app' stack 'staging', restored into app 'app' stack 'production' as asked by name");
    } finally {
      s3.s3("-q", "del", `s3://${s3.bucket}/prod/${foreign}`);
    }
  }, 120_000);

  it("refuses a backup whose files do not match its MANIFEST's checksums, or made by a newer PostgreSQL, before touching data", () => {
    const before = visitsDigest();
    const preRestores = () => fs.readdirSync(path.join(data, "backups")).filter((f) => f.startsWith("pre-restore-")).length;
    const pres = preRestores();
    const good = path.join(data, "backups", newestOwn());
    // Still an RDB by its header, so only the checksum can tell.
    const altered = repack(good, (dir) => fs.appendFileSync(path.join(dir, "redis.rdb"), "x"));
    const r = tool("nodehost-restore", [altered, "--yes"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/FAILED at verify: redis\.rdb in .* does not match the checksum its MANIFEST gives/);
    const server = Number(pg.psql("SHOW server_version_num"));
    const newer = repack(good, (dir) => {
      const m = path.join(dir, "MANIFEST");
      fs.writeFileSync(m, fs.readFileSync(m, "utf8").replace(/^postgres_server_version_num=.*$/m, `postgres_server_version_num=${server + 10000}`));
    });
    const n = tool("nodehost-restore", [newer, "--yes"]);
    expect(n.status).toBe(1);
    expect(n.stderr).toContain(`was made by PostgreSQL ${Math.floor(server / 10000) + 1}, this server is ${Math.floor(server / 10000)}: a dump does not restore into an older major`);
    expect(visitsDigest()).toBe(before);
    expect(preRestores()).toBe(pres); // refused before the pre-restore backup, so before any data
  }, 120_000);

  it("refuses to restore with another passphrase, and leaves the data alone", () => {
    const before = pg.psql("SELECT count(*) FROM visits");
    fs.writeFileSync(path.join(etc, "backup.passphrase"), "some-other-passphrase-entirely\n");
    try {
      const r = tool("nodehost-restore", ["latest", "--yes"]);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/FAILED at decrypt: cannot decrypt s3:\/\/.*\.tar\.gz\.gpg with the stack's backup passphrase/);
      expect(pg.psql("SELECT count(*) FROM visits")).toBe(before);
    } finally {
      fs.writeFileSync(path.join(etc, "backup.passphrase"), `${PASSPHRASE}\n`);
    }
  });

  it("after a passphrase rotation, tries backupPreviousPassphrases in order, and says which one opened the backup", async () => {
    const previous = path.join(etc, "backup.passphrases.previous");
    fs.writeFileSync(path.join(etc, "backup.passphrase"), "the-rotated-in-passphrase-xyz\n");
    fs.writeFileSync(previous, "an-even-older-passphrase-abc\n" + PASSPHRASE + "\n", { mode: 0o600 });
    try {
      const r = await toolAsync("nodehost-restore", ["--drill"]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toContain("decrypted with previous passphrase 2 (backupPreviousPassphrases), not the current one");
      expect(r.stderr).toMatch(/drill ok: /);
      // Neither passphrase shows in what the tool prints.
      expect(r.stderr).not.toContain(PASSPHRASE);
      fs.writeFileSync(previous, "an-even-older-passphrase-abc\n");
      const refused = await toolAsync("nodehost-restore", ["--drill"]);
      expect(refused.status).toBe(1);
      expect(refused.stderr).toMatch(/FAILED at decrypt: cannot decrypt s3:\/\/\S+ with the stack's backup passphrase or a previous one/);
    } finally {
      fs.writeFileSync(path.join(etc, "backup.passphrase"), `${PASSPHRASE}\n`);
      fs.rmSync(previous, { force: true });
    }
    // The drill's record back to ok for the tests after this one.
    expect((await toolAsync("nodehost-restore", ["--drill"])).status).toBe(0);
  }, 120_000);

  it("reads a backup from before encryption as it is, whatever the file is called", () => {
    const plain = path.join(root, "app-20200101T000000Z.tar.gz");
    const dump = path.join(root, "plain");
    fs.mkdirSync(dump, { recursive: true });
    const opened = decrypt(fs.readdirSync(path.join(data, "backups")).filter((f) => f.startsWith("app-")).map((f) => path.join(data, "backups", f))[0]);
    expect(run("tar", ["-xzf", opened.out, "-C", dump]).status).toBe(0);
    expect(run("tar", ["-czf", plain, "-C", dump, "MANIFEST", "postgres.dump", "redis.rdb", "rowcounts.tsv"]).status).toBe(0);
    const r = tool("nodehost-restore", [plain, "--yes"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain(`ok: restored ${plain}`);
    // Any file name will do, the one the tool uses inside its work dir included.
    const named = path.join(tmpDir("nodehost-named-"), "backup.tar.gz");
    fs.copyFileSync(plain, named);
    const again = tool("nodehost-restore", [named, "--yes"]);
    expect(again.status, again.stderr).toBe(0);
  }, 60_000);

  it("keeps the newest 3 backups whatever their age: failed backups for longer than the retention leave the last good ones", async () => {
    const listing = () => s3.s3("ls", `s3://${s3.bucket}/keep/`).stdout.trim().split("\n").filter(Boolean).map((l) => l.split(/\s+/).pop()!.replace(/.*\//, ""));
    const seed = path.join(root, "seed-keep");
    fs.writeFileSync(seed, "x");
    const old = [1, 2, 3, 4, 5].map((d) => `app-production-2000010${d}T000000Z.tar.gz.gpg`);
    for (const name of old) expect(s3.s3("-q", "put", seed, `s3://${s3.bucket}/keep/${name}`).status).toBe(0);
    // (The volume's archives of the tests above are moved aside: they would go up as a backlog.)
    await withoutLocal(async () => withEnv("S3_PREFIX='/prod/'", "S3_PREFIX='keep'", () => {
      const r = tool("nodehost-backup");
      expect(r.status, r.stderr).toBe(0);
      const name = path.basename(r.stdout.trim());
      expect(listing().filter((n) => n.endsWith(".gpg")).sort()).toEqual([name, old[4], old[3]].sort());
      expect(r.stderr).toContain(`retention: removed remote ${old[0]}`);
    }));
  }, 60_000);

  it("with the bucket down it keeps at most localCopies on the volume and fails unmarked; back up, the backlog goes up", async () => {
    const down = bucketDownEtc(await freePort());
    const mark = fs.readFileSync(path.join(data, "backups", "LAST_SUCCESS"), "utf8");
    await withoutLocal(async () => {
      const made: string[] = [];
      for (let i = 0; i < 4; i++) {
        const r = await toolAsync("nodehost-backup", [], { NODEHOST_ETC: down, LOCAL_COPIES: "3" });
        expect(r.status).toBe(1);
        expect(r.stderr).toMatch(/FAILED at upload: cannot list s3:\/\/.*; app-production-\S+ stays in .* and goes up with the next backup that reaches the bucket/);
        made.push(/(app-production-\d{8}T\d{6}Z\.tar\.gz\.gpg) stays in/.exec(r.stderr)![1]);
      }
      // Retention ran although the upload failed: the oldest of the four is gone, young as it is.
      expect(localArchives()).toEqual(made.slice(1).sort());
      expect(fs.readFileSync(path.join(data, "backups", "LAST_SUCCESS"), "utf8")).toBe(mark);
      expect(remote().filter((n) => made.includes(n))).toEqual([]);

      const r = await toolAsync("nodehost-backup", [], { LOCAL_COPIES: "3" });
      expect(r.status, r.stderr).toBe(0);
      const name = path.basename(r.stdout.trim());
      for (const f of made.slice(2)) expect(r.stderr).toContain(`backlog: uploaded ${f}`);
      expect(remote().filter((n) => n === name || made.includes(n)).sort()).toEqual([name, ...made.slice(2)].sort());
      expect(localArchives()).toEqual([...made.slice(2), name].sort());
      expect(fs.readFileSync(path.join(data, "backups", "LAST_SUCCESS"), "utf8")).toContain(name);
      // What went up is the same file, and it opens.
      const back = path.join(root, "backlog-copy.gpg");
      expect(s3.s3("-q", "get", "--force", `s3://${s3.bucket}/prod/${made[3]}`, back).status).toBe(0);
      expect(fs.readFileSync(back).equals(fs.readFileSync(path.join(data, "backups", made[3])))).toBe(true);
      expect(decrypt(back).status).toBe(0);
    });
  }, 180_000);

  it("decides a new volume's start: restore this stack's newest; empty on a first start; refuses when the bucket says the stack ran", () => {
    const start = (...args: string[]) => tool("nodehost-backups", ["--start", ...args]);
    // This stack has backups under /prod/: restore the one `latest` takes first.
    const r0 = start();
    expect(r0.status, r0.stderr).toBe(0);
    expect(r0.stdout.trim()).toBe(`restore ${tool("nodehost-backups", ["--newest"]).stdout.trim()}`);
    withEnv("S3_PREFIX='/prod/'", "S3_PREFIX='first'", () => {
      // Nothing under the prefix at all: a first start.
      expect(start().stdout.trim()).toBe("empty");
      // Another stack's record there changes nothing for this one.
      // (withEnv's end rewrites backup.env whole: the prefix is set again.)
      withEnv("STACK='production'", "STACK='staging'", () => expect(tool("nodehost-backups", ["--record"]).status).toBe(0));
      fs.writeFileSync(path.join(etc, "backup.env"), fs.readFileSync(path.join(etc, "backup.env"), "utf8").replace("S3_PREFIX='/prod/'", "S3_PREFIX='first'"));
      expect(start().stdout.trim()).toBe("empty");
      // Once this stack has run (its record is there) and no backup of it is: an error, not an empty start.
      const rec = tool("nodehost-backups", ["--record"]);
      expect(rec.status, rec.stderr).toBe(0);
      expect(s3.s3("ls", `s3://${s3.bucket}/first/`).stdout).toContain("app-production.nodehost-stack");
      const refused = start();
      expect(refused.status).toBe(1);
      expect(refused.stdout).toBe("");
      expect(refused.stderr).toContain("says this stack has run before, yet no backup of it is there: refusing to start it empty");
      expect(refused.stderr).toContain("backup.allowEmptyStart");
      const allowed = start("--allow-empty");
      expect(allowed.status, allowed.stderr).toBe(0);
      expect(allowed.stdout.trim()).toBe("empty");
      expect(allowed.stderr).toContain("starting empty as backup.allowEmptyStart says");
      // The record is not a backup: the listing leaves it out.
      expect(tool("nodehost-backups").stdout).not.toContain("nodehost-stack");
    });
    // A bucket that cannot be listed decides nothing.
    const r = tool("nodehost-backups", ["--start"], { NODEHOST_ETC: bucketDownEtc(1) });
    expect(r.status).not.toBe(0);
    expect(r.stdout).toBe("");
  });

  it("uploads nothing without the initialised marker (volume not mounted, or a restore that never finished); a local copy is still made", () => {
    const marker = path.join(data, ".nodehost-initialized");
    const saved = fs.readFileSync(marker);
    fs.rmSync(marker);
    try {
      const before = remote().sort();
      const r = tool("nodehost-backup");
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/FAILED at setup: .*\.nodehost-initialized is missing: the data volume is not mounted, or its database was never initialised or restored/);
      expect(remote().sort()).toEqual(before);
      const local = tool("nodehost-backup", ["--no-upload", "--prefix", "pre-restore"]);
      expect(local.status, local.stderr).toBe(0);
    } finally {
      fs.writeFileSync(marker, saved);
    }
  }, 60_000);

  it("encrypts to backup.publicKeys too: their private key alone opens an archive, and so does the passphrase; re-encrypted, it restores", () => {
    // An operator's key pair, made as the runbook says (its private half stays in `keys`).
    const keys = tmpDir("nodehost-offline-key-");
    const gpgKeys = (...args: string[]) => run("gpg", ["--batch", "--quiet", "--homedir", keys, ...args]);
    expect(gpgKeys("--passphrase", "", "--quick-gen-key", "backups offline <ops@example.invalid>", "future-default", "default", "never").status).toBe(0);
    const fpr = /^fpr:+([0-9A-F]{40}):/m.exec(gpgKeys("--with-colons", "--list-keys").stdout)![1];
    const dir = path.join(etc, "backup-keys");
    fs.mkdirSync(dir, { mode: 0o700 });
    fs.writeFileSync(path.join(dir, `${fpr}.asc`), gpgKeys("--armor", "--export", fpr).stdout);
    try {
      const r = tool("nodehost-backup", ["--no-upload", "--prefix", "keyed"]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/ok: keyed-\S+ \(\d+ bytes, \d+ s, encrypted to the passphrase and 1 public key\(s\)\)/);
      const file = r.stdout.trim();
      const packets = gpgKeys("--list-packets", "--pinentry-mode", "cancel", file).stdout + gpgKeys("--list-packets", "--pinentry-mode", "cancel", file).stderr;
      expect(packets).toMatch(/symkey enc packet: version \d, cipher 9/);
      expect(packets).toMatch(/pubkey enc packet: version \d, algo 18/);
      // The private key, no passphrase: the whole archive.
      const out = path.join(keys, "opened.tar.gz");
      const opened = gpgKeys("--pinentry-mode", "cancel", "--decrypt", "-o", out, file);
      expect(opened.status, opened.stderr).toBe(0);
      expect(run("tar", ["-tzf", out]).stdout.split("\n").filter(Boolean).sort()).toEqual(["MANIFEST", "postgres.dump", "redis.rdb", "rowcounts.tsv"]);
      expect(decrypt(file).status).toBe(0);

      // The disaster-recovery runbook's (c) with the passphrase lost: the archive opened with the
      // offline key, encrypted anew to a new passphrase, put in the bucket as the newest backup;
      // a host with that passphrase takes it as `latest` and it restores (here: a drill).
      const renewed = "a-new-passphrase-after-the-old-was-lost";
      fs.writeFileSync(path.join(keys, "new-passphrase.txt"), renewed + "\n");
      const again = gpgKeys("--pinentry-mode", "loopback", "--passphrase-file", path.join(keys, "new-passphrase.txt"), "--symmetric", "--cipher-algo", "AES256", "-o", path.join(keys, "new.gpg"), out);
      expect(again.status, again.stderr).toBe(0);
      const newest = `app-production-${stampAt(Date.now() + 3600e3)}.tar.gz.gpg`;
      expect(s3.s3("-q", "put", path.join(keys, "new.gpg"), `s3://${s3.bucket}/prod/${newest}`).status).toBe(0);
      fs.writeFileSync(path.join(etc, "backup.passphrase"), renewed + "\n");
      try {
        const drill = tool("nodehost-restore", ["--drill"]);
        expect(drill.status, drill.stderr).toBe(0);
        expect(drill.stderr).toContain(`drill ok: s3://${s3.bucket}/prod/${newest} restored into a scratch server`);
      } finally {
        fs.writeFileSync(path.join(etc, "backup.passphrase"), `${PASSPHRASE}\n`);
        s3.s3("-q", "del", `s3://${s3.bucket}/prod/${newest}`);
      }
      fs.rmSync(file);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      run("gpgconf", ["--homedir", keys, "--kill", "gpg-agent"]);
    }
  }, 60_000);

  it("backs up, restores and drills nothing while the volume is not mounted", () => {
    const archives = () => fs.readdirSync(path.join(data, "backups")).filter((f) => /\.tar\.gz(\.gpg)?$/.test(f)).sort();
    const before = archives();
    const remoteBefore = remote().sort();
    const unmounted = { SHIM_MOUNTED: "" };
    for (const [name, args] of [["nodehost-backup", []], ["nodehost-backup", ["--no-upload", "--prefix", "pre-restore"]], ["nodehost-restore", ["latest", "--yes"]], ["nodehost-restore", ["--drill"]]] as const) {
      const r = tool(name, [...args], unmounted);
      expect(r.status, `${name} ${args.join(" ")}`).toBe(1);
      expect(r.stderr).toContain(`FAILED at setup: ${data} is not a mounted volume`);
    }
    expect(archives()).toEqual(before);
    expect(remote().sort()).toEqual(remoteBefore);
    expect(fs.readdirSync(path.join(data, "backups")).filter((f) => f.startsWith("."))).toEqual([]);
  });

  it("brings back a single table beside the live one, by the restore runbook's block as written", async () => {
    // docs/runbooks/restore-backup.md, "Restore a single table": its sh block, run here with the
    // first line (the operator's own values) replaced and sudo as a pass-through.
    const doc = fs.readFileSync(path.join(SCRIPTS, "..", "docs", "runbooks", "restore-backup.md"), "utf8");
    const block = /## Restore a single table\n[\s\S]*?```sh\n([\s\S]*?)```/.exec(doc)![1].split("\n");
    expect(block[0]).toBe("user=app db=app table=orders dir=/mnt/data/backups/extract");
    const dir = path.join(data, "backups", "extract");
    const script = ["set -euo pipefail", 'sudo() { "$@"; }', `user=app db=app table=visits dir=${dir}`, ...block.slice(1)].join("\n");
    const rows = pg.psql("SELECT count(*) FROM visits");
    const backedUp = fs.readFileSync(path.join(data, "backups", "LAST_SUCCESS"), "utf8");
    expect(backedUp).toContain("object=");
    pg.psql("DELETE FROM visits WHERE id % 2 = 0");
    const r = await runAsync("bash", ["-c", script], { env: { ...env, PATH: `${TOOLS}:${env.PATH}` } });
    expect(r.status, r.stderr).toBe(0);
    // The backup's rows beside the live table, which still has only what the app left it.
    expect(Number(pg.psql("SELECT count(*) FROM visits_restored"))).toBeGreaterThan(Number(pg.psql("SELECT count(*) FROM visits")));
    expect(pg.psql("SELECT count(*) FROM visits_restored WHERE id % 2 = 0")).not.toBe("0");
    expect(pg.psql("SELECT datname FROM pg_database WHERE datname = 'restore_scratch'")).toBe("");
    expect(fs.existsSync(dir)).toBe(false);
    // The copy back the runbook suggests, then the live table is whole again.
    pg.psql("INSERT INTO visits SELECT * FROM visits_restored WHERE id NOT IN (SELECT id FROM visits); DROP TABLE visits_restored;");
    expect(pg.psql("SELECT count(*) FROM visits")).toBe(rows);
    // --extract wants an empty directory: it never mixes two backups' files.
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "x"), "");
    const busy = tool("nodehost-restore", ["--extract", dir, "latest"]);
    expect(busy.status).toBe(1);
    expect(busy.stderr).toContain(`FAILED at extract: ${dir} is not empty`);
    fs.rmSync(dir, { recursive: true });
  }, 120_000);

  it("without --yes and without a terminal it refuses", () => {
    const r = tool("nodehost-restore", ["latest"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("refusing to restore without --yes when not on a terminal");
  });

  // A stack whose cache is DigitalOcean's managed Valkey (backup.env CACHE_MODE='managed') has no
  // Redis container. Its name here is one the docker stand-in does not know: any call to it fails.
  const noRedis = { NODEHOST_REDIS_CONTAINER: "nodehost-no-redis" };
  let managedArchive = "";
  let managedDigest = "";

  it("with a managed cache a backup holds PostgreSQL alone, calls no Redis, and its MANIFEST says cache=managed", async () => {
    const b = await withCache("managed", () => toolAsync("nodehost-backup", ["--no-upload", "--prefix", "cache-managed"], noRedis));
    expect(b.status, b.stderr).toBe(0);
    managedArchive = b.stdout.trim();
    managedDigest = visitsDigest();
    const opened = decrypt(managedArchive);
    expect(opened.status, opened.stderr).toBe(0);
    expect(run("tar", ["-tzf", opened.out]).stdout.split("\n").filter(Boolean).sort()).toEqual(["MANIFEST", "postgres.dump", "rowcounts.tsv"]);
    const manifest = run("tar", ["-xzOf", opened.out, "MANIFEST"]).stdout;
    expect(manifest).toMatch(/^cache=managed$/m);
    expect(manifest).toMatch(/^postgres_dump_sha256=[0-9a-f]{64}$/m);
    expect(manifest).not.toMatch(/^redis_/m);
    // Any other value is refused, before anything is made.
    const bad = await withCache("valkey", () => toolAsync("nodehost-backup", ["--no-upload", "--prefix", "cache-bad"], noRedis));
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/FAILED at setup: CACHE_MODE in \S+ is 'valkey', neither docker nor managed/);
    expect(fs.readdirSync(path.join(data, "backups")).filter((f) => f.startsWith("cache-bad-"))).toEqual([]);
  }, 60_000);

  it("on a managed-cache host a restore brings back PostgreSQL alone and leaves the cache, said so; its drill checks no RDB", async () => {
    const preRestores = () => fs.readdirSync(path.join(data, "backups")).filter((f) => f.startsWith("pre-restore-")).length;
    const dockerArchive = path.join(data, "backups", localArchives().at(-1)!);
    pg.psql("DELETE FROM visits WHERE id > 5;");
    rcli("SET", "greeting", "the cache's own");
    const pres = preRestores();
    await withCache("managed", async () => {
      // Without --yes, on a terminal: the question names PostgreSQL alone.
      const asked = run("script", ["-qec", `${path.join(TOOLS, "nodehost-restore")} ${managedArchive}`, "/dev/null"], { env: { ...env, ...noRedis }, input: "no\n" });
      expect(asked.stdout).toContain(`Replace the data of PostgreSQL database app with ${managedArchive} (the cache is left as it is`);
      expect(asked.stdout).not.toMatch(/Replace the data of .* and Redis/);
      expect(asked.stdout).toContain("not confirmed");

      const r = await toolAsync("nodehost-restore", [managedArchive, "--yes"], noRedis);
      expect(r.status, r.stderr).toBe(0);
      expect(visitsDigest()).toBe(managedDigest);
      expect(r.stderr).toContain(`ok: restored ${managedArchive} (`);
      expect(r.stderr).toContain("the cache was not restored: DigitalOcean's managed Valkey keeps its own data); pre-restore backup: ");
      expect(preRestores()).toBe(pres + 1);
      // A backup from when the cache was the Redis container: PostgreSQL restored, its RDB left, said so.
      const d = await toolAsync("nodehost-restore", [dockerArchive, "--yes"], noRedis);
      expect(d.status, d.stderr).toBe(0);
      expect(d.stderr).toContain("the cache was not restored: DigitalOcean's managed Valkey keeps its own data; the backup's RDB was left unrestored); pre-restore backup: ");

      // Drills: no RDB checked, and never said to be.
      const drill = await toolAsync("nodehost-restore", ["--drill", managedArchive], noRedis);
      expect(drill.status, drill.stderr).toBe(0);
      expect(drill.stderr).toMatch(/drill ok: \S+ restored into a scratch server \(\d+ tables, \d+ rows as in the manifest\), RDB not checked: the backup has no RDB, its host's cache was managed/);
      const drillDocker = await toolAsync("nodehost-restore", ["--drill", dockerArchive], noRedis);
      expect(drillDocker.status, drillDocker.stderr).toBe(0);
      expect(drillDocker.stderr).toContain("RDB not checked: this host's cache is managed, no Redis container");
      expect(drillDocker.stderr + drill.stderr).not.toContain("its RDB checked");
    });
    expect(rcli("GET", "greeting")).toBe("the cache's own");
  }, 180_000);

  it("on a docker-cache host a managed-cache backup restores PostgreSQL and leaves Redis as it is, said so; one without cache=managed and no RDB is refused", async () => {
    pg.psql("DELETE FROM visits WHERE id > 3;");
    rcli("SET", "greeting", "kept by the restore");
    // A stop and start of the Redis container would fail this restore (fixtures/docker): it must do neither.
    const failStart = path.join(data, "fail-next-start");
    fs.writeFileSync(failStart, "");
    try {
      const r = await toolAsync("nodehost-restore", [managedArchive, "--yes"]);
      expect(r.status, r.stderr).toBe(0);
      expect(visitsDigest()).toBe(managedDigest);
      expect(r.stderr).toContain(`ok: restored ${managedArchive} (`);
      expect(r.stderr).toContain("Redis left as it was: the backup has no RDB, its host's cache was managed); pre-restore backup: ");
      expect(rcli("GET", "greeting")).toBe("kept by the restore");
      expect(fs.existsSync(failStart)).toBe(true);
    } finally {
      fs.rmSync(failStart, { force: true });
    }
    const drill = await toolAsync("nodehost-restore", ["--drill", managedArchive]);
    expect(drill.status, drill.stderr).toBe(0);
    expect(drill.stderr).toContain("RDB not checked: the backup has no RDB, its host's cache was managed");
    const dir = path.join(tmpDir("nodehost-extract-"), "out");
    const x = await toolAsync("nodehost-restore", ["--extract", dir, managedArchive]);
    expect(x.status, x.stderr).toBe(0);
    expect(fs.readdirSync(dir).sort()).toEqual(["MANIFEST", "postgres.dump", "rowcounts.tsv"]);

    // A docker-cache backup that lost its RDB (cut short) is refused on either host, before any data.
    const before = visitsDigest();
    const cut = repack(path.join(data, "backups", localArchives().at(-1)!), (d) => fs.rmSync(path.join(d, "redis.rdb")));
    for (const [mode, extra] of [["docker", {}], ["managed", noRedis]] as const) {
      const refused = await withCache(mode, () => toolAsync("nodehost-restore", [cut, "--yes"], extra));
      expect(refused.status, mode).toBe(1);
      expect(refused.stderr).toMatch(/FAILED at verify: \S+ is not a whole backup archive \(MANIFEST, postgres\.dump, redis\.rdb\)/);
    }
    expect(visitsDigest()).toBe(before);
    fs.rmSync(managedArchive);
  }, 180_000);
});
