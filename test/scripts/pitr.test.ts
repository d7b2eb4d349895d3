// nodehost-pitr runs for real: a local PostgreSQL archives its WAL with Debian's pgBackRest into
// s3rver over TLS (pgBackRest speaks S3 over HTTPS only), base backups and restores go through the
// same pgBackRest. `docker` is the stand-in (fixtures/docker): `docker exec nodehost-postgres
// pgbackrest` and the restore's one-off container run pgbackrest as the local postgres user, and
// `docker stop/start nodehost-postgres` stop and start the local server. The container wiring
// itself (the image with pgBackRest, archive_command, the mounted configuration) is the VM's.
import * as fs from "fs";
import * as path from "path";
import { spawn, spawnSync, type ChildProcess } from "child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, missing, pgBinDir, run, runAsync, s3rverBin, SCRIPTS, tmpDir, waitFor } from "./helpers";

const TOOL = path.join(SCRIPTS, "tools", "nodehost-pitr");
const need = missing("pgbackrest", "psql", "runuser", "openssl", "s3cmd", "python3");
if (need.length) console.warn(`nodehost-pitr tests SKIPPED: missing ${need.join(", ")} (apt-get install pgbackrest postgresql s3cmd)`);

describe.skipIf(need.length > 0)("nodehost-pitr: WAL archive, base backups and point-in-time restore with pgBackRest", () => {
  const root = tmpDir("nodehost-pitr-");
  fs.chmodSync(root, 0o755);
  const etc = path.join(root, "etc");
  const data = path.join(root, "data");
  const pgData = path.join(data, "postgres");
  const sock = path.join(root, "sock");
  const confDir = path.join(root, "pgbackrest");
  const bucket = "nodehost-backups";
  const CIPHER = "pitr-cipher-" + Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2);
  const MARKER = "plaintext-row-marker-7f3a";
  let s3: ChildProcess;
  let s3Port = 0;
  let pgPort = 0;
  let env: NodeJS.ProcessEnv;
  const bin = pgBinDir();

  const psql = (q: string) => {
    const r = spawnSync("psql", ["-qAtX", "-v", "ON_ERROR_STOP=1", "-h", sock, "-p", String(pgPort), "-U", "app", "-d", "app"], { encoding: "utf8", input: q });
    if (r.status !== 0) throw new Error(`psql: ${r.stderr}`);
    return r.stdout.trim();
  };
  const tool = (args: string[]) => runAsync(TOOL, args, { env, timeoutMs: 300_000 });
  const s3cmd = (...args: string[]) => run("s3cmd", ["-c", path.join(etc, "s3cfg"), "--no-progress", ...args]);
  /** Every object under the bucket, as [key, local file] (s3rver keeps each object's body in `<key>._S3rver_object`). */
  const objects = () => {
    const out: string[] = [];
    const walk = (d: string) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name.endsWith("._S3rver_object")) out.push(p);
      }
    };
    walk(path.join(root, "s3", bucket));
    return out;
  };
  /** The WAL segment now being written is switched out and archived (pg_stat_archiver says so). */
  const archiveNow = async () => {
    const seg = psql("SELECT pg_walfile_name(pg_switch_wal())");
    await waitFor(() => psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") >= seg, `WAL ${seg} archived`, 60_000);
    return seg;
  };

  beforeAll(async () => {
    // A CA and a certificate for localhost: pgBackRest checks the name, and reads the CA from
    // repo1-storage-ca-file, which nodehost-pitr takes from the s3cfg's ca_certs_file.
    const tls = path.join(root, "tls");
    fs.mkdirSync(tls);
    const ssl = (...a: string[]) => expect(run("openssl", a, { cwd: tls }).status).toBe(0);
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=nodehost test CA");
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "s3.key", "-out", "s3.csr", "-subj", "/CN=localhost");
    fs.writeFileSync(path.join(tls, "ext"), "subjectAltName=DNS:localhost\n");
    ssl("x509", "-req", "-in", "s3.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "s3.pem", "-days", "2", "-extfile", "ext");
    fs.chmodSync(path.join(tls, "ca.pem"), 0o644);
    s3Port = await freePort();
    fs.mkdirSync(path.join(root, "s3"));
    s3 = spawn(s3rverBin(), ["-d", path.join(root, "s3"), "-a", "127.0.0.1", "-p", String(s3Port), "--key", path.join(tls, "s3.key"),
      "--cert", path.join(tls, "s3.pem"), "--no-vhost-buckets", "--configure-bucket", bucket, "--silent"],
      // ListObjectsV2 past 1,000 keys: s3rver's DES continuation token needs OpenSSL 3's legacy provider.
      { stdio: "ignore", env: { ...process.env, NODE_OPTIONS: "--openssl-legacy-provider" } });

    // A server laid out as the container's: data on the volume, owned by postgres, the app's
    // user a superuser trusted on the local socket (the official image's defaults), archiving
    // through pgBackRest with the configuration the container mounts.
    pgPort = await freePort();
    fs.mkdirSync(data);
    fs.mkdirSync(sock);
    spawnSync("chown", ["postgres:postgres", sock]);
    fs.mkdirSync(pgData, { mode: 0o700 });
    spawnSync("chown", ["postgres:postgres", pgData]);
    const asPg = (args: string[]) => {
      const r = spawnSync("runuser", ["-u", "postgres", "--", ...args], { encoding: "utf8" });
      if (r.status !== 0) throw new Error(`${args.join(" ")}: ${r.stderr}`);
    };
    asPg([`${bin}/initdb`, "-D", pgData, "-U", "app", "-A", "trust"]);
    fs.appendFileSync(path.join(pgData, "postgresql.conf"), [
      `port = ${pgPort}`, "listen_addresses = '127.0.0.1'", `unix_socket_directories = '${sock}'`,
      "archive_mode = on", `archive_command = 'PGBACKREST_CONFIG=${confDir}/pgbackrest.conf pgbackrest --stanza=nodehost archive-push %p'`, "",
    ].join("\n"));
    asPg([`${bin}/pg_ctl`, "-D", pgData, "-l", path.join(sock, "pg.log"), "-w", "start"]);
    spawnSync("createdb", ["-h", sock, "-p", String(pgPort), "-U", "app", "app"]);

    fs.mkdirSync(etc, { mode: 0o700 });
    fs.writeFileSync(path.join(etc, "backup.env"), [
      "APP_NAME='app'", "STACK='production'", `DATA_MOUNT='${data}'`, "POSTGRES_USER='app'", "POSTGRES_DB='app'",
      `S3_BUCKET='${bucket}'`, "S3_PREFIX='/prod/'", "PITR_RETENTION_FULL='2'", "PITR_FULL_EVERY_DAYS='7'", "",
    ].join("\n"));
    fs.writeFileSync(path.join(etc, "s3cfg"), [
      "[default]", "access_key = S3RVER", "secret_key = S3RVER", `host_base = localhost:${s3Port}`, `host_bucket = localhost:${s3Port}`,
      "bucket_location = fra1", "use_https = True", `ca_certs_file = ${path.join(tls, "ca.pem")}`, "signature_v2 = False", "",
    ].join("\n"), { mode: 0o600 });
    fs.writeFileSync(path.join(etc, "pitr.cipher"), CIPHER + "\n", { mode: 0o600 });
    fs.writeFileSync(path.join(data, ".nodehost-initialized"), "initialized=2026-01-01T00:00:00Z\nrestored=none\n");
    env = {
      PATH: `${path.join(__dirname, "fixtures")}:${process.env.PATH}`,
      NODEHOST_ETC: etc, NODEHOST_LOG: path.join(root, "backup.log"), NODEHOST_LOCK: path.join(root, "run", "backup.lock"),
      NODEHOST_PG_PATH: pgData, NODEHOST_PG_SOCKET: sock, NODEHOST_PG_PORT: String(pgPort), NODEHOST_RECOVERY_LIMIT: "120",
      PGHOST: sock, PGPORT: String(pgPort),
      SHIM_PG_BIN: bin, SHIM_PG_DATA: pgData, SHIM_PG_LOG: path.join(sock, "pg.log"), NODEHOST_PG_CONF_DIR: confDir, SHIM_MOUNTED: data,
      NODEHOST_STATUS: path.join(root, "status"),
    };
    await waitFor(() => s3cmd("ls", `s3://${bucket}/`).status === 0, "s3rver over TLS", 30_000);
  }, 120_000);

  afterAll(() => {
    spawnSync("runuser", ["-u", "postgres", "--", `${bin}/pg_ctl`, "-D", pgData, "-m", "immediate", "stop"]);
    s3?.kill();
  });

  it("writes pgbackrest.conf for this stack's own path, encrypted, readable by the server's user alone", async () => {
    const first = await tool(["configure"]);
    expect(first.status, first.stderr).toBe(0);
    expect(first.stdout).toContain("changed:");
    const conf = path.join(etc, "pgbackrest", "pgbackrest.conf");
    const text = fs.readFileSync(conf, "utf8");
    expect(text).toContain("repo1-path=/prod/pgbackrest/app-production\n");
    expect(text).toContain("repo1-cipher-type=aes-256-cbc\n");
    expect(text).toContain(`repo1-cipher-pass=${CIPHER}\n`);
    expect(text).toContain(`repo1-s3-endpoint=localhost\nrepo1-storage-port=${s3Port}\nrepo1-storage-ca-file=${confDir}/ca.pem\n`);
    expect(fs.readFileSync(path.join(etc, "pgbackrest", "ca.pem"), "utf8")).toContain("BEGIN CERTIFICATE");
    const st = fs.statSync(conf);
    expect((st.mode & 0o777).toString(8)).toBe("400");
    expect(st.uid).toBe(fs.statSync(pgData).uid);
    const again = await tool(["configure"]);
    expect(again.status).toBe(0);
    expect(again.stdout).not.toContain("changed:");
  });

  it("refuses a plain-HTTP endpoint, naming why", async () => {
    const cfg = path.join(etc, "s3cfg");
    const orig = fs.readFileSync(cfg, "utf8");
    fs.writeFileSync(cfg, orig.replace("use_https = True", "use_https = False"));
    try {
      const r = await tool(["configure"]);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain("pgBackRest talks to S3 over HTTPS only");
    } finally { fs.writeFileSync(cfg, orig); }
  });

  let beforeT = "";
  let t = "";
  it("archives WAL and takes base backups into the bucket, all of it ciphertext", async () => {
    const setup = await tool(["setup"]);
    expect(setup.status, setup.stderr).toBe(0);
    expect(await tool(["has-backup"]).then((r) => r.status)).toBe(1);
    psql(`CREATE TABLE orders (id int PRIMARY KEY, note text); INSERT INTO orders SELECT g, '${MARKER} ' || g FROM generate_series(1, 5) g;`);
    const full = await tool(["backup"]);
    expect(full.status, full.stderr).toBe(0);
    expect(fs.readFileSync(path.join(root, "backup.log"), "utf8")).toMatch(/full base backup done/);
    const diff = await tool(["backup"]);
    expect(diff.status, diff.stderr).toBe(0);
    expect(fs.readFileSync(path.join(root, "backup.log"), "utf8")).toMatch(/diff base backup done/);
    expect((await tool(["has-backup"])).status).toBe(0);

    psql("INSERT INTO orders SELECT g, 'later ' || g FROM generate_series(6, 10) g;");
    beforeT = psql("SELECT count(*) || ':' || md5(string_agg(id || note, ',' ORDER BY id)) FROM orders");
    t = psql("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'");
    await new Promise((r) => setTimeout(r, 1100));
    psql("INSERT INTO orders SELECT g, 'after T ' || g FROM generate_series(11, 15) g;");
    await archiveNow();

    const files = objects();
    const keys = files.map((f) => path.relative(path.join(root, "s3", bucket), f));
    expect(keys.some((k) => k.startsWith("prod/pgbackrest/app-production/archive/nodehost/"))).toBe(true);
    expect(keys.some((k) => k.startsWith("prod/pgbackrest/app-production/backup/nodehost/"))).toBe(true);
    expect(keys.every((k) => k.startsWith("prod/pgbackrest/app-production/"))).toBe(true);
    // With the bucket's key alone the rows do not show: every object, the info files included, is
    // OpenSSL-enveloped ciphertext ("Salted__" and a salt, pgBackRest's aes-256-cbc format), not
    // zstd (whose output keeps literals a scan for a marker may or may not find) or text.
    for (const f of files) {
      const body = fs.readFileSync(f);
      expect(body.subarray(0, 8).toString("latin1"), f).toBe("Salted__");
      expect(body.includes(MARKER), f).toBe(false);
    }
  }, 300_000);

  it("restores to the last archived point: every row the server archived, none lost to the base backup's age", async () => {
    const r = await tool(["restore", "--yes"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe("pitr:the last archived point");
    expect(psql("SELECT count(*) || ':' || max(id) FROM orders")).toBe("15:15");
    expect(fs.existsSync(path.join(data, "postgres.before-restore", "PG_VERSION"))).toBe(true);
    expect(psql("SELECT pg_is_in_recovery()")).toBe("f");
  }, 300_000);

  it("restores to a chosen time exactly the rows written before it", async () => {
    const r = await tool(["restore", "--to", t, "--yes"]);
    expect(r.status, r.stderr).toBe(0);
    expect(psql("SELECT count(*) || ':' || md5(string_agg(id || note, ',' ORDER BY id)) FROM orders")).toBe(beforeT);
    expect(psql("SELECT max(id) FROM orders")).toBe("10");
    psql("INSERT INTO orders VALUES (200, 'on the new timeline')");
    await archiveNow();
  }, 300_000);

  it("after a restore to a time, restores to the last point of the newest timeline, not of the one the base backup is on", async () => {
    // What a rebuild after an earlier restore to a time must do: the rows written since that
    // restore (id 200, on the timeline it began) come back, the ones it undid (11-15) do not.
    const r = await tool(["restore", "--yes"]);
    expect(r.status, r.stderr).toBe(0);
    expect(psql("SELECT string_agg(id::text, ',' ORDER BY id) FROM orders WHERE id > 8")).toBe("9,10,200");
  }, 300_000);

  it("puts the data back and starts the server on it when the target cannot be reached", async () => {
    const before = psql("SELECT count(*) || ':' || max(id) FROM orders");
    const future = new Date(Date.now() + 3600e3).toISOString().replace("T", " ").replace("Z", "+00");
    const r = await tool(["restore", "--to", future, "--yes"]);
    expect(r.status, r.stderr).toBe(1);
    // PostgreSQL 13+ exits (FATAL) short of a target: started again twice (a fetch that failed
    // at start would succeed then), then the restore undone.
    expect(r.stderr, r.stderr).toContain("the server stopped during recovery; starting it again (2 of 2)");
    expect(r.stderr, r.stderr).toContain("the data from before the restore is back");
    await waitFor(() => { try { return psql("SELECT pg_is_in_recovery()") === "f"; } catch { return false; } }, "the server back", 60_000);
    expect(psql("SELECT count(*) || ':' || max(id) FROM orders")).toBe(before);
  }, 300_000);

  it("reports archiving that fails (the heartbeat's check), and healthy again once WAL reaches the bucket", async () => {
    expect((await tool(["healthy"])).status).toBe(0);
    const conf = path.join(confDir, "pgbackrest.conf");
    const saved = fs.readFileSync(conf);
    fs.rmSync(conf);
    try {
      const failures = () => Number(psql("SELECT failed_count FROM pg_stat_archiver"));
      const before = failures();
      psql("INSERT INTO orders VALUES (300, 'while archiving fails')");
      psql("SELECT pg_switch_wal()");
      await waitFor(() => failures() > before, "a failed archive_command", 30_000);
      const r = await tool(["healthy"]);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain("WAL archiving fails");
    } finally {
      fs.writeFileSync(conf, saved);
      spawnSync("chown", ["postgres:postgres", conf]);
    }
    await archiveNow();
    expect((await tool(["healthy"])).status).toBe(0);
  }, 120_000);

  it("promotes only once the replay has the archive's newest segment: one the bucket fails to deliver stalls it, the data is put back, and no timeline of it reaches the archive", async () => {
    // Left to itself, PostgreSQL ends recovery at the first segment restore_command does not
    // deliver, whatever the reason, and promotes on the state before it. A segment the bucket
    // cannot serve (its body gone: s3rver lists it and fails the read, as a bucket that times out
    // or errors would) stands for that.
    psql("INSERT INTO orders VALUES (400, 'in the segment the bucket fails')");
    const gap = await archiveNow();
    psql("INSERT INTO orders VALUES (401, 'after it')");
    await archiveNow();
    const before = psql("SELECT count(*) || ':' || max(id) FROM orders");
    const body = objects().find((f) => path.basename(f).startsWith(`${gap}-`));
    expect(body, `the archived ${gap}`).toBeDefined();
    fs.renameSync(body!, `${body}.away`);
    try {
      const histories = () => objects().filter((f) => f.includes(".history")).length;
      const timelines = histories();
      const r = await runAsync(TOOL, ["restore", "--yes"], { env: { ...env, NODEHOST_RECOVERY_STALL: "20" }, timeoutMs: 300_000 });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/the replay did not reach the archive's newest segment [0-9A-F]{24} \(it stopped at [0-9A-F]+\/[0-9A-F]+/);
      expect(r.stderr).toContain("the data from before the restore is back");
      // Not promoted: no new timeline in the archive for the next restore's "latest" to follow.
      expect(histories()).toBe(timelines);
      await waitFor(() => { try { return psql("SELECT pg_is_in_recovery()") === "f"; } catch { return false; } }, "the server back", 60_000);
      expect(psql("SELECT count(*) || ':' || max(id) FROM orders")).toBe(before);
    } finally { fs.renameSync(`${body}.away`, body!); }
    // The same archive whole again: the replay reaches its end, rows 400 and 401 with it (with
    // the stalled replay promoted, as PostgreSQL alone would, this came back without them: the
    // abandoned timeline was the newest).
    const again = await tool(["restore", "--yes"]);
    expect(again.status, again.stderr).toBe(0);
    expect(psql("SELECT count(*) || ':' || max(id) FROM orders")).toBe(before);
  }, 300_000);

  it("undoes a restore whose point is older than a dump restored before it (--not-before), exit 3, the data before it serving", async () => {
    const before = psql("SELECT count(*) || ':' || max(id) FROM orders");
    // A position far past anything archived: the dump's, had archiving stopped before it was made.
    const r = await tool(["restore", "--yes", "--not-before", "FF/0"]);
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(/NOT RESTORED: the archive's last point \([0-9A-F]+\/[0-9A-F]+\) is older than FF\/0, the dump's/);
    await waitFor(() => { try { return psql("SELECT pg_is_in_recovery()") === "f"; } catch { return false; } }, "the server back", 60_000);
    expect(psql("SELECT count(*) || ':' || max(id) FROM orders")).toBe(before);
    for (const bad of ["0/0; rm -rf /", "$(id)", "0/16B3740'"]) {
      const h = await tool(["restore", "--yes", "--not-before", bad]);
      expect(h.status, bad).toBe(2);
    }
  }, 300_000);

  it("holds archive_timeout from the end of a restore, not from the server's first checkpoint: the restore wakes the checkpointer, once per start", async () => {
    // PostgreSQL 15+ starts the checkpointer before recovery ends, and its first sleep then is
    // checkpoint_timeout (5 min) with no archive_timeout in it: a restore to a time ends recovery
    // with a checkpoint it waits for, still in recovery, so without a wake nothing closes a
    // segment for the archive for five minutes (nodehost-pitr: wake_checkpointer).
    const archived = () => psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver");
    const ready = () => waitFor(() => { try { return psql("SELECT pg_is_in_recovery()") === "f"; } catch { return false; } }, "the server up", 60_000);
    psql("INSERT INTO orders VALUES (500, 'before T2')");
    await archiveNow();
    await new Promise((r) => setTimeout(r, 1100));
    const t2 = psql("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'");
    await new Promise((r) => setTimeout(r, 1100));
    psql("INSERT INTO orders VALUES (501, 'after T2')");
    await archiveNow();
    // The restored server runs with a 2 s archive_timeout (the container's is 30 s). Whether the
    // checkpointer works out its sleep before or after recovery is over is a race (about one start
    // in two here); a recovery_end_command that takes 3 s (run after the end-of-recovery
    // checkpoint, before recovery is marked over: xlog.c, StartupXLOG, CleanupAfterArchiveRecovery)
    // makes it lose every time, as a slow host does more often than not.
    const r = await runAsync(TOOL, ["restore", "--to", t2, "--yes"], { env: { ...env, SHIM_PG_OPTS: "-c archive_timeout=2 -c recovery_end_command='sleep 3'" }, timeoutMs: 300_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/woke the checkpointer started at .+: archive_timeout holds from now/);
    await ready();
    expect(psql("SELECT max(id) FROM orders")).toBe("500");
    psql("INSERT INTO orders VALUES (502, 'after the restore')");
    const seg = psql("SELECT pg_walfile_name(pg_current_wal_lsn())");
    // No pg_switch_wal: archive_timeout alone closes it (2 s, then the upload).
    await waitFor(() => archived() >= seg, `${seg} closed by archive_timeout and archived`, 20_000);
    // Once per checkpointer: no second reload for the same start; a new start gets one.
    const again = await tool(["wake"]);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stderr).not.toContain("woke");
    expect(run("docker", ["stop", "nodehost-postgres"], { env }).status).toBe(0);
    expect(run("docker", ["start", "nodehost-postgres"], { env }).status).toBe(0);
    await ready();
    const woke = await tool(["wake"]);
    expect(woke.status, woke.stderr).toBe(0);
    expect(woke.stderr).toContain("woke the checkpointer");
  }, 300_000);

  it("keeps hostile input off every command line and file", async () => {
    for (const bad of ["$(touch /tmp/pwned)", "2026-12-05 13:04:05", "2026-12-05 13:04:05+00'; DROP TABLE orders; --", "2026-12-05 13:04:05+00\nrecovery_target_action = 'shutdown'"]) {
      const r = await tool(["restore", "--to", bad, "--yes"]);
      expect(r.status, bad).toBe(2);
      expect(r.stderr).toContain("--to takes a time with its zone");
    }
    expect(fs.existsSync("/tmp/pwned")).toBe(false);
    expect(psql("SELECT count(*) > 0 FROM orders")).toBe("t");
  });

  it("calls no docker while the volume is not mounted (a boot without it: Docker is down, and a call would start it through its socket); the heartbeat's check is red", async () => {
    // A container name docker does not know: any `docker exec` fails, and wake with it.
    const noServer = { ...env, NODEHOST_PG_CONTAINER: "nodehost-absent" };
    expect((await runAsync(TOOL, ["wake"], { env: noServer })).status).toBe(1);
    const unmounted = { ...noServer, SHIM_MOUNTED: "" };
    const woke = await runAsync(TOOL, ["wake"], { env: unmounted });
    expect(woke.status, woke.stderr).toBe(0);
    const healthy = await runAsync(TOOL, ["healthy"], { env: unmounted });
    expect(healthy.status).toBe(1);
    expect(healthy.stderr).toContain("is not mounted");
  });

  it("takes no base backup of a volume never initialised or restored", async () => {
    fs.renameSync(path.join(data, ".nodehost-initialized"), path.join(root, "marker"));
    try {
      const r = await tool(["backup"]);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain("never initialised or restored");
    } finally { fs.renameSync(path.join(root, "marker"), path.join(data, ".nodehost-initialized")); }
  });
});
