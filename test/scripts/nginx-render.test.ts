// nodehost-nginx-render run for real: its site served by a local nginx on free ports, in HTTP and
// HTTPS form; what the VM adds (real ports 80/443, certbot's files, systemd) is proven there.
import * as fs from "fs";
import { spawn, ChildProcess } from "child_process";
import { request as httpsRequest } from "https";
import * as path from "path";
import { Duplex } from "stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, missing, run, runAsync, SCRIPTS, tmpDir, waitFor } from "./helpers";

const RENDER = path.join(SCRIPTS, "tools", "nodehost-nginx-render");
const need = missing("nginx", "openssl", "curl");
if (need.length) console.warn(`nginx renderer tests SKIPPED: missing ${need.join(", ")} (apt-get install nginx openssl curl)`);
if (missing("testssl").length) console.warn("testssl.sh scan of the rendered TLS configuration SKIPPED: apt-get install testssl.sh");

/** A private nginx in T (its own pid, logs and temp dirs) serving `site`. */
function writeNginxConf(T: string, site: string): void {
  fs.writeFileSync(path.join(T, "nginx.conf"), [
    `pid ${T}/nginx.pid;`, `error_log ${T}/error.log;`, "events {}",
    `http { include /etc/nginx/mime.types; access_log off; client_body_temp_path ${T}/tmp; proxy_temp_path ${T}/tmp;`,
    `  include ${site}; }`, "",
  ].join("\n"));
  fs.mkdirSync(path.join(T, "tmp"));
}
async function startNginx(T: string, nginxArgs: string[]): Promise<void> {
  const started = run("nginx", nginxArgs);
  expect(started.status, started.stderr).toBe(0);
  await waitFor(() => fs.existsSync(path.join(T, "nginx.pid")), "nginx");
}
function stopNginx(T: string): void {
  const pid = fs.existsSync(path.join(T, "nginx.pid")) ? fs.readFileSync(path.join(T, "nginx.pid"), "utf8").trim() : "";
  if (pid) process.kill(Number(pid), "SIGTERM");
}

describe.skipIf(need.length > 0)("nodehost-nginx-render", () => {
  const T = tmpDir("nodehost-nginx-");
  let httpPort = 0, httpsPort = 0, appPort = 0;
  let backend: ChildProcess;
  const echoApps: ChildProcess[] = [];
  // The backend runs in its own process: curl runs synchronously here and would block one in ours.
  const seenFile = path.join(T, "seen");
  const seen = () => fs.readFileSync(seenFile, "utf8").trim().split("\n");
  const env = () => ({ NODEHOST_NGINX_ENV: path.join(T, "nginx.env"), NODEHOST_LE_LIVE: path.join(T, "live"), NODEHOST_NGINX_UPSTREAM: path.join(T, "upstream.conf") });
  const nginxArgs = ["-p", T, "-c", path.join(T, "nginx.conf")];
  let n = 0;
  const curl = (...args: string[]) => {
    const h = path.join(T, `h${++n}`), b = path.join(T, `b${n}`);
    const r = run("curl", ["-s", "-o", b, "-D", h, "-w", "%{http_code}", ...args]);
    const read = (f: string) => (fs.existsSync(f) ? fs.readFileSync(f, "utf8") : "");
    return { code: r.stdout.trim(), headers: read(h), body: read(b) };
  };
  const status = (r: ReturnType<typeof curl>) => r.code;

  beforeAll(async () => {
    fs.chmodSync(T, 0o755);
    [httpPort, httpsPort, appPort] = [await freePort(), await freePort(), await freePort()];
    fs.writeFileSync(seenFile, "");
    backend = spawn(process.execPath, ["-e", `
      const fs = require("fs");
      require("http").createServer((req, res) => {
        fs.appendFileSync(${JSON.stringify(seenFile)}, req.url + " upgrade=" + (req.headers.upgrade || "") + " auth=" + (req.headers.authorization ? "yes" : "no") + "\\n");
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify({ status: "ok", url: req.url }));
      }).listen(${appPort}, "127.0.0.1", () => fs.appendFileSync(${JSON.stringify(seenFile)}, "listening\\n"));`], { stdio: "inherit" });
    await waitFor(() => fs.readFileSync(seenFile, "utf8").includes("listening"), "backend");
    fs.mkdirSync(path.join(T, "dist"));
    fs.writeFileSync(path.join(T, "dist", "index.html"), "<h1>sample ui</h1>\n" + "padding ".repeat(400));
    fs.mkdirSync(path.join(T, "acme", ".well-known", "acme-challenge"), { recursive: true });
    fs.writeFileSync(path.join(T, "acme", ".well-known", "acme-challenge", "tok"), "token-body");
    const hash = run("openssl", ["passwd", "-apr1", "-stdin"], { input: "s3cret-pass" }).stdout.trim();
    fs.writeFileSync(path.join(T, "htpasswd"), `admin:${hash}\n`, { mode: 0o644 });
    fs.writeFileSync(path.join(T, "nginx.env"), [
      "APP_NAME='app'", "SERVER_NAMES='example.test www.example.test'", `APP_PORT='${appPort}'`,
      "ALLOW_IPS='127.0.0.0/8 ::1'", `HTPASSWD_FILE='${T}/htpasswd'`, `ACME_WEBROOT='${T}/acme'`,
      `UI_ROOT='${T}/dist'`, `STATUS_DIR='${T}/status'`, `HTTP_PORT='${httpPort}'`, `HTTPS_PORT='${httpsPort}'`, "",
    ].join("\n"));
    writeNginxConf(T, `${T}/site.conf`);
    // First render through the tool's own install path: write, nginx -t, (re)load.
    const r = run(RENDER, [], { env: { ...env(), NODEHOST_NGINX_SITE: path.join(T, "site.conf"),
      NODEHOST_NGINX_TEST: `nginx -t -q ${nginxArgs.join(" ")}`, NODEHOST_NGINX_RELOAD: "true" } });
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe(`changed: ${T}/site.conf (http), nginx reloaded`);
    await startNginx(T, nginxArgs);
  });

  afterAll(() => {
    stopNginx(T);
    backend?.kill();
    // A test that timed out never reached its own stop.
    for (const app of echoApps) app.kill();
  });

  const https = (name: string, p: string, ...args: string[]) =>
    curl("-k", "--resolve", `${name}:${httpsPort}:127.0.0.1`, ...args, `https://${name}:${httpsPort}${p}`);
  const makeCert = () => {
    const live = path.join(T, "live", "example.test");
    fs.mkdirSync(live, { recursive: true });
    const cert = run("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=example.test",
      "-keyout", path.join(live, "privkey.pem"), "-out", path.join(live, "fullchain.pem")]);
    expect(cert.status).toBe(0);
  };
  const envFile = path.join(T, "nginx.env");
  // Renders the site from `content` (the env file's new text) and reloads nginx, then waits until
  // every worker of the old configuration has exited: from then on only the new one answers.
  const rerender = async (content: string) => {
    const master = fs.readFileSync(path.join(T, "nginx.pid"), "utf8").trim();
    const workers = () => run("pgrep", ["-P", master]).stdout.trim().split("\n").filter(Boolean);
    const old = workers();
    fs.writeFileSync(envFile, content);
    const r = run(RENDER, [], { env: { ...env(), NODEHOST_NGINX_SITE: path.join(T, "site.conf"),
      NODEHOST_NGINX_TEST: `nginx -t -q ${nginxArgs.join(" ")}`, NODEHOST_NGINX_RELOAD: `nginx -s reload ${nginxArgs.join(" ")}` } });
    expect(r.status, r.stderr).toBe(0);
    // The renderer leaves an unchanged site alone, but the upstream file may have moved.
    if (r.stdout.startsWith("unchanged")) expect(run("nginx", ["-s", "reload", ...nginxArgs]).status).toBe(0);
    await waitFor(() => !workers().some((pid) => old.includes(pid)), "the old configuration's workers to exit");
  };

  it("before the certificate: port 80 serves ACME and redirects, no content and no basic auth; 443 refuses every handshake", () => {
    const host = ["-H", "Host: example.test"];
    const ui = curl(...host, "-u", "admin:s3cret-pass", `http://127.0.0.1:${httpPort}/`);
    expect(status(ui)).toBe("301");
    expect(ui.headers).toMatch(/^Location: https:\/\/example\.test\/\r?$/m);
    expect(status(curl(...host, `http://127.0.0.1:${httpPort}/api/health`))).toBe("301");
    expect(status(curl(...host, `http://127.0.0.1:${httpPort}/healthz/backup`))).toBe("301");
    expect(seen()).toEqual(["listening"]);
    const acme = curl(...host, `http://127.0.0.1:${httpPort}/.well-known/acme-challenge/tok`);
    expect(status(acme)).toBe("200");
    expect(acme.body).toBe("token-body");
    expect(status(https("example.test", "/api/health"))).toBe("000");
  });

  it("drops any other Host on HTTP (no redirect echoing it) and any other SNI on HTTPS", () => {
    expect(status(curl("-H", "Host: evil.example", `http://127.0.0.1:${httpPort}/`))).toBe("000");
    expect(status(curl(`http://127.0.0.1:${httpPort}/`))).toBe("000");
  });

  it("HTTPS form once a certificate exists: HTTP still only redirects (except ACME), HTTPS serves with HSTS", () => {
    makeCert();
    // Workers of the old config keep accepting until they handle their QUIT, which is slow on a
    // loaded machine: the checks below wait until every one of them has exited.
    const master = fs.readFileSync(path.join(T, "nginx.pid"), "utf8").trim();
    const oldWorkers = run("pgrep", ["-P", master]).stdout.trim().split("\n").filter(Boolean);
    expect(oldWorkers.length).toBeGreaterThan(0);
    const r = run(RENDER, [], { env: { ...env(), NODEHOST_NGINX_SITE: path.join(T, "site.conf"),
      NODEHOST_NGINX_TEST: `nginx -t -q ${nginxArgs.join(" ")}`, NODEHOST_NGINX_RELOAD: `nginx -s reload ${nginxArgs.join(" ")}` } });
    expect(r.stdout.trim()).toBe(`changed: ${T}/site.conf (https), nginx reloaded`);
    const oldWorkersGone = () => {
      const now = run("pgrep", ["-P", master]).stdout.trim().split("\n");
      return oldWorkers.every((pid) => !now.includes(pid));
    };
    return waitFor(() => oldWorkersGone() && status(https("example.test", "/api/health")) === "200", "the reload").then(() => {
      const redirect = curl("-H", "Host: www.example.test", `http://127.0.0.1:${httpPort}/some/page?x=1`);
      expect(status(redirect)).toBe("301");
      expect(redirect.headers).toMatch(/^Location: https:\/\/www\.example\.test\/some\/page\?x=1\r?$/m);
      expect(status(curl("-H", "Host: example.test", `http://127.0.0.1:${httpPort}/.well-known/acme-challenge/tok`))).toBe("200");
      const ui = https("example.test", "/");
      expect(status(ui)).toBe("401");
      expect(ui.headers.toLowerCase()).toContain("strict-transport-security: max-age=31536000");
      // Another name in SNI: the handshake is refused, nothing is served; the site's SNI with
      // another Host lands on the default server too, which answers nothing.
      expect(status(https("evil.example", "/api/health"))).toBe("000");
      expect(status(https("example.test", "/", "--http1.1", "-H", "Host: evil.example"))).toBe("000");
    });
  });

  it("HTTPS: the UI asks for basic auth, /api/ does not and reaches the backend", () => {
    expect(status(https("example.test", "/"))).toBe("401");
    const ui = https("example.test", "/", "-u", "admin:s3cret-pass");
    expect(status(ui)).toBe("200");
    expect(ui.body).toContain("<h1>sample ui</h1>");
    expect(status(https("example.test", "/", "-u", "admin:wrong"))).toBe("401");
    const api = https("www.example.test", "/api/health");
    expect(status(api)).toBe("200");
    expect(JSON.parse(api.body)).toEqual({ status: "ok", url: "/api/health" });
    expect(seen().at(-1)).toBe("/api/health upgrade= auth=no");
  });

  it("serves the backup heartbeat without basic auth: 404 while stale, 200 once the backup tools mark it fresh", () => {
    fs.mkdirSync(path.join(T, "status"), { recursive: true });
    fs.rmSync(path.join(T, "status", "backup-fresh"), { force: true });
    expect(status(https("example.test", "/healthz/backup"))).toBe("404");
    fs.writeFileSync(path.join(T, "status", "backup-fresh"), "ok\n");
    expect(status(https("example.test", "/healthz/backup"))).toBe("200");
  });

  it("passes websocket upgrades and sets the security headers, gzip, no version", () => {
    https("example.test", "/api/socket", "--http1.1", "-H", "Upgrade: websocket", "-H", "Connection: Upgrade");
    expect(seen().at(-1)).toBe("/api/socket upgrade=websocket auth=no");
    const r = https("example.test", "/", "-H", "Accept-Encoding: gzip", "-u", "admin:s3cret-pass");
    const h = r.headers.toLowerCase();
    expect(h).toContain("x-content-type-options: nosniff");
    expect(h).toContain("x-frame-options: deny");
    expect(h).toContain("referrer-policy: strict-origin-when-cross-origin");
    expect(h).toContain("content-security-policy: default-src 'self'; script-src 'self'");
    expect(h).toContain("content-encoding: gzip");
    expect(h).toMatch(/^server: nginx\r?$/m);
  });

  it("offers TLS 1.2 with ECDHE AEAD suites only (no CBC), and TLS 1.3", () => {
    const offered = (args: string[]) =>
      run("openssl", ["s_client", "-connect", `127.0.0.1:${httpsPort}`, "-servername", "example.test", ...args], { input: "" });
    expect(offered(["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"]).stdout).toMatch(/Cipher is ECDHE-RSA-AES128-GCM-SHA256/);
    for (const cbc of ["ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384", "AES128-SHA"]) {
      expect(offered(["-tls1_2", "-cipher", cbc]).stdout, cbc).toMatch(/Cipher is \(NONE\)/);
    }
    expect(offered(["-tls1_1"]).stdout).toMatch(/Cipher is \(NONE\)/);
    expect(offered(["-tls1_3"]).stdout).toMatch(/New, TLSv1\.3, Cipher is TLS_/);
  });

  it.skipIf(missing("testssl").length > 0)("testssl.sh finds nothing above LOW that the configuration causes", async () => {
    // Certificate findings (self-signed, short-lived, no OCSP) are this test's certificate, not the
    // configuration; on a host the certificate comes from the ACME CA.
    const dir = tmpDir("nodehost-testssl-");
    const json = path.join(dir, "findings.json");
    // Asynchronously: a minute-long scan run synchronously holds the worker past vitest's 60 s RPC
    // timeout on a loaded machine ("Timeout calling onTaskUpdate", seen beside a VM run).
    const r = await runAsync("testssl", ["--quiet", "--color", "0", "--warnings", "batch", "--ip", "127.0.0.1",
      "--jsonfile", json, `https://example.test:${httpsPort}`], { timeoutMs: 300_000 });
    expect(fs.existsSync(json), r.stdout + r.stderr).toBe(true);
    const findings = JSON.parse(fs.readFileSync(json, "utf8")) as { id: string; severity: string; finding: string }[];
    const serious = findings.filter((f) => ["MEDIUM", "HIGH", "CRITICAL"].includes(f.severity) && !f.id.startsWith("cert_"));
    expect(serious.map((f) => `${f.severity} ${f.id}: ${f.finding}`)).toEqual([]);
    // And it did test the server: protocols and suites were seen.
    expect(findings.find((f) => f.id === "TLS1_3")?.finding).toMatch(/offered/);
    expect(findings.find((f) => f.id === "TLS1_1")?.finding).toMatch(/not offered/);
  }, 320_000);

  it("rate-limits guesses at basic auth and bursts at the API per address (429)", () => {
    const codes = (p: string) => {
      const r = run("bash", ["-c", `for i in $(seq 1 80); do curl -sk -o /dev/null -w '%{http_code}\\n' --resolve example.test:${httpsPort}:127.0.0.1 -u admin:wrong-${"$"}i https://example.test:${httpsPort}${p} & done; wait`]);
      return r.stdout.trim().split("\n");
    };
    const ui = codes("/");
    expect(ui).toContain("429");
    expect(ui).toContain("401");
    const api = run("bash", ["-c", `for i in $(seq 1 150); do curl -sk -o /dev/null -w '%{http_code}\\n' --resolve example.test:${httpsPort}:127.0.0.1 https://example.test:${httpsPort}/api/x & done; wait`]).stdout.trim().split("\n");
    expect(api).toContain("429");
    expect(api).toContain("200");
  });

  it("the allow-list covers the UI and the API but not /api/health; API_PUBLIC opens /api/ alone", async () => {
    const original = fs.readFileSync(envFile, "utf8");
    const codes = () => [https("example.test", "/", "-u", "admin:s3cret-pass"), https("example.test", "/api/visits"), https("example.test", "/api/health")].map(status).join(" ");
    const elsewhere = original.replace("ALLOW_IPS='127.0.0.0/8 ::1'", "ALLOW_IPS='192.0.2.1/32'");
    try {
      await rerender(elsewhere);
      await waitFor(() => codes() === "403 403 200", "the allow-list");
      await rerender(`${elsewhere}API_PUBLIC=1\n`);
      await waitFor(() => codes() === "403 200 200", "API_PUBLIC");
    } finally {
      await rerender(original);
    }
    await waitFor(() => codes() === "200 200 200", "the allow-list back");
  });

  it("moves the app's traffic to the other slot with a graceful reload, failing no request on the way", async () => {
    // What nodehost-release does on a host: a second backend (the new release's slot) answers, the
    // upstream file names its port, nginx reloads; requests keep flowing all the while.
    const slotPort = await freePort();
    const slotSeen = path.join(T, "slot-seen");
    fs.writeFileSync(slotSeen, "");
    const slot = spawn(process.execPath, ["-e", `
      require("http").createServer((req, res) => res.end(JSON.stringify({ status: "ok", slot: "new" })))
        .listen(${slotPort}, "127.0.0.1", () => require("fs").writeFileSync(${JSON.stringify(slotSeen)}, "listening"));`], { stdio: "inherit" });
    const upstream = path.join(T, "upstream.conf");
    const reload = () => expect(run("nginx", ["-s", "reload", ...nginxArgs]).status).toBe(0);
    try {
      await waitFor(() => fs.readFileSync(slotSeen, "utf8") === "listening", "the new slot");
      expect(fs.readFileSync(upstream, "utf8")).toBe(`server 127.0.0.1:${appPort};\n`);
      // 15 requests a second: under the API's rate limit (30/s), so any failure is the switch's.
      const loop = runAsync("bash", ["-c", `for i in $(seq 1 120); do curl -sk -o /dev/null -w '%{http_code}\\n' --resolve example.test:${httpsPort}:127.0.0.1 https://example.test:${httpsPort}/api/health; sleep 0.066; done`], { timeoutMs: 120_000 });
      await new Promise((r) => setTimeout(r, 2_000));
      fs.writeFileSync(upstream, `server 127.0.0.1:${slotPort};\n`);
      reload();
      const codes = (await loop).stdout.trim().split("\n");
      expect(codes.length).toBe(120);
      expect(codes.filter((c) => c !== "200")).toEqual([]);
      await waitFor(() => https("example.test", "/api/health").body.includes('"slot":"new"'), "traffic on the new slot");
    } finally {
      fs.writeFileSync(upstream, `server 127.0.0.1:${appPort};\n`);
      reload();
      slot.kill();
    }
    await waitFor(() => !https("example.test", "/api/health").body.includes('"slot":"new"'), "traffic back on the first slot");
  });

  // An app that also takes websocket upgrades (101, then every chunk echoed back) and counts each
  // request's body; `withEchoApp` points the upstream at it and renders the site with `extra`.
  const startEchoApp = async () => {
    const port = await freePort();
    const seenFile = path.join(T, `echo-seen-${port}`);
    fs.writeFileSync(seenFile, "");
    const proc = spawn(process.execPath, ["-e", `
      const fs = require("fs");
      const log = (line) => fs.appendFileSync(${JSON.stringify(seenFile)}, line + "\\n");
      const server = require("http").createServer((req, res) => {
        let bytes = 0;
        req.on("data", (d) => { bytes += d.length; });
        req.on("end", () => {
          log(req.url + " upgrade=" + (req.headers.upgrade || "") + " bytes=" + bytes);
          res.setHeader("content-type", "application/json");
          res.end(JSON.stringify({ app: "echo", url: req.url, bytes }));
        });
      });
      server.on("upgrade", (req, socket) => {
        log(req.url + " upgraded");
        socket.on("error", () => {});
        socket.write("HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n\\r\\n");
        socket.on("data", (d) => { log(req.url + " got " + d); socket.write("echo:" + d); });
      });
      server.listen(${port}, "127.0.0.1", () => log("listening"));`], { stdio: "inherit" });
    await waitFor(() => fs.readFileSync(seenFile, "utf8").includes("listening"), "the echo app");
    echoApps.push(proc);
    return { seen: () => fs.readFileSync(seenFile, "utf8").trim().split("\n"), port, stop: () => proc.kill() };
  };
  const withEchoApp = async (extra: string, check: (app: Awaited<ReturnType<typeof startEchoApp>>) => Promise<void>) => {
    const upstream = path.join(T, "upstream.conf");
    const original = fs.readFileSync(envFile, "utf8");
    const app = await startEchoApp();
    try {
      fs.writeFileSync(upstream, `server 127.0.0.1:${app.port};\n`);
      await rerender(original + extra);
      await check(app);
    } finally {
      fs.writeFileSync(upstream, `server 127.0.0.1:${appPort};\n`);
      await rerender(original);
      app.stop();
    }
  };
  // A websocket client's opening request (node's https.request: the site is HTTPS only): the
  // status, and on 101 the upgraded connection.
  const upgrade = (p: string) => new Promise<{ status: number; socket?: Duplex }>((resolve, reject) => {
    const req = httpsRequest({ host: "127.0.0.1", port: httpsPort, servername: "example.test", path: p, agent: false,
      rejectUnauthorized: false, headers: { Host: "example.test", Connection: "Upgrade", Upgrade: "websocket" } });
    req.on("upgrade", (res, socket) => resolve({ status: res.statusCode!, socket }));
    req.on("response", (res) => { res.resume(); resolve({ status: res.statusCode! }); });
    req.on("error", reject);
    req.end();
  });
  const exchange = (socket: Duplex, text: string) => new Promise<string>((resolve, reject) => {
    socket.once("data", (d: Buffer) => resolve(String(d)));
    socket.once("error", reject);
    socket.write(text);
  });

  it("HEALTH_PATH moves the open health location: it answers outside the allow-list, /api/health then does not", async () => {
    const original = fs.readFileSync(envFile, "utf8");
    const elsewhere = original.replace("ALLOW_IPS='127.0.0.0/8 ::1'", "ALLOW_IPS='192.0.2.1/32'");
    const codes = () => ["/ready", "/api/health", "/api/visits"].map((p) => status(https("example.test", p))).join(" ");
    try {
      // The default first: /ready is the UI's and /api/health the open one, the rest of /api/ behind the allow-list.
      await rerender(elsewhere);
      await waitFor(() => codes() === "403 200 403", "the default health path");
      await rerender(`${elsewhere}HEALTH_PATH='/ready'\n`);
      await waitFor(() => codes() === "200 403 403", "the new health path");
      const health = https("example.test", "/ready");
      expect(JSON.parse(health.body)).toEqual({ status: "ok", url: "/ready" });
      expect(seen().at(-1)).toBe("/ready upgrade= auth=no");
    } finally {
      await rerender(original);
    }
  });

  it("a websocket route (WS=1) answers an upgrade with 101 and carries data both ways until IDLE quiet seconds; WS=0 does not upgrade", async () => {
    await withEchoApp("ROUTES='/ws/,1,30,- /ws-short/,1,2,- /plain/,0,30,-'\n", async (app) => {
      // Every upgraded connection is closed at the end, whatever failed: an open one would hold
      // an old nginx worker (and the next render's wait) until it ends.
      const open: Duplex[] = [];
      const connect = async (p: string) => {
        const r = await upgrade(p);
        if (r.socket) open.push(r.socket);
        return r;
      };
      try {
        const ws = await connect("/ws/chat");
        expect(ws.status).toBe(101);
        expect(await exchange(ws.socket!, "ping")).toBe("echo:ping");
        expect(app.seen()).toContain("/ws/chat got ping");
        // IDLE 2: nginx closes the quiet connection after 2 s; the IDLE 30 one outlives it.
        const short = await connect("/ws-short/chat");
        expect(short.status).toBe(101);
        const opened = Date.now();
        const closed = await Promise.race([
          new Promise((r) => short.socket!.once("close", () => r(true))),
          new Promise((r) => setTimeout(() => r(false), 10_000)),
        ]);
        expect(closed, "nginx closed the connection after IDLE seconds").toBe(true);
        expect(Date.now() - opened).toBeGreaterThan(1_500);
        expect(await exchange(ws.socket!, "still there")).toBe("echo:still there");
        const plain = await connect("/plain/chat");
        expect(plain.status).toBe(200);
        expect(app.seen().at(-1)).toBe("/plain/chat upgrade= bytes=0");
        expect(app.seen()).not.toContain("/plain/chat upgraded");
      } finally {
        for (const socket of open) socket.destroy();
      }
      // The routes live on HTTPS only: port 80 still just redirects.
      expect(status(curl("-H", "Host: example.test", `http://127.0.0.1:${httpPort}/ws/chat`))).toBe("301");
    });
  }, 60_000);

  it("MAX_BODY_SIZE limits the site (413) and a route's BODY raises it for that route alone", async () => {
    const big = path.join(T, "2mb"), small = path.join(T, "512k");
    fs.writeFileSync(big, Buffer.alloc(2 * 1024 * 1024, "x"));
    fs.writeFileSync(small, Buffer.alloc(512 * 1024, "x"));
    const post = (p: string, file: string) => https("example.test", p, "--data-binary", `@${file}`, "-H", "Content-Type: application/octet-stream");
    await withEchoApp("MAX_BODY_SIZE='1m'\nROUTES='/upload/,0,60,5m /plain/,0,30,-'\n", async (app) => {
      const upload = post("/upload/file", big);
      expect(status(upload)).toBe("200");
      expect(JSON.parse(upload.body)).toEqual({ app: "echo", url: "/upload/file", bytes: 2 * 1024 * 1024 });
      expect(status(post("/api/file", big))).toBe("413");
      expect(status(post("/plain/file", big))).toBe("413");
      expect(status(post("/api/file", small))).toBe("200");
      expect(app.seen().filter((l) => l !== "listening")).toEqual(["/upload/file upgrade= bytes=2097152", "/api/file upgrade= bytes=524288"]);
    });
  });

  it("a route with a PORT of its own reaches that service on 127.0.0.1, not the web process's slot", async () => {
    const service = await startEchoApp();
    try {
      await withEchoApp(`ROUTES='/ws-svc/,1,30,-,${service.port} /plain/,0,30,-'\n`, async (app) => {
        const { status: code, socket } = await upgrade("/ws-svc/chat");
        expect(code).toBe(101);
        expect(await exchange(socket!, "hi")).toBe("echo:hi");
        socket!.destroy();
        expect(status(https("example.test", "/plain/x"))).toBe("200");
        expect(service.seen()).toContain("/ws-svc/chat upgraded");
        expect(app.seen().some((l) => l.startsWith("/ws-svc/"))).toBe(false);
        expect(app.seen()).toContain("/plain/x upgrade= bytes=0");
      });
    } finally {
      service.stop();
    }
  });

  it("ROUTES: no basic auth, the allow-list unless API_PUBLIC=1 (as /api/)", async () => {
    const original = fs.readFileSync(envFile, "utf8");
    const elsewhere = original.replace("ALLOW_IPS='127.0.0.0/8 ::1'", "ALLOW_IPS='192.0.2.1/32'");
    const routes = "ROUTES='/ws/,1,30,- /plain/,0,30,-'\n";
    const codes = () => [https("example.test", "/", "-u", "admin:s3cret-pass"), https("example.test", "/api/x"),
      https("example.test", "/plain/x"), https("example.test", "/ws/x"), https("example.test", "/api/health")].map(status).join(" ");
    try {
      await rerender(original + routes);
      await waitFor(() => codes() === "200 200 200 200 200", "the routes");
      expect(seen().at(-2)).toBe("/ws/x upgrade= auth=no");
      await rerender(elsewhere + routes);
      await waitFor(() => codes() === "403 403 403 403 200", "the allow-list on the routes");
      await rerender(`${elsewhere}${routes}API_PUBLIC=1\n`);
      await waitFor(() => codes() === "403 200 200 200 200", "API_PUBLIC on the routes");
    } finally {
      await rerender(original);
    }
  });

  it("refuses hostile HEALTH_PATH, MAX_BODY_SIZE and ROUTES values, naming the setting, and leaves the previous site in place", () => {
    const sh = (v: string) => `'${v.replace(/'/g, `'\\''`)}'`;
    const original = fs.readFileSync(envFile, "utf8");
    // A copy of the site, so a check that let a value through could not touch the served one.
    const site = path.join(T, "checked-site.conf");
    fs.copyFileSync(path.join(T, "site.conf"), site);
    fs.writeFileSync(path.join(T, "checked-nginx.conf"), fs.readFileSync(path.join(T, "nginx.conf"), "utf8").replace(`${T}/site.conf`, site));
    const render = (settings: Record<string, string>, test: string) => {
      const file = path.join(T, "checked.env");
      fs.writeFileSync(file, original + Object.entries(settings).map(([k, v]) => `${k}=${sh(v)}\n`).join(""));
      return run(RENDER, [], { env: { ...env(), NODEHOST_NGINX_ENV: file, NODEHOST_NGINX_SITE: site, NODEHOST_NGINX_TEST: test, NODEHOST_NGINX_RELOAD: "true" } });
    };
    // The edges of what is allowed render, and real nginx takes them.
    const ok = render({ HEALTH_PATH: "/a.b/~c-d_e/" + "x".repeat(189), MAX_BODY_SIZE: "99999m",
      ROUTES: " /api/socketio,1,86400,99999k  /__proxy/,0,1,- /api,0,60,1 /svc/,1,60,-,1024 " }, `nginx -t -q -p ${T} -c ${T}/checked-nginx.conf`);
    expect(ok.status, ok.stderr).toBe(0);
    const previous = fs.readFileSync(site, "utf8");
    expect(previous).toContain("location ^~ /api/socketio {");
    expect(previous).toContain("client_max_body_size 99999m;");
    expect(previous).toContain("proxy_pass http://127.0.0.1:1024;");
    const hostile: [string, string][] = [
      ...["/api/health'", '/api/"health"', "/$(id)", "/`id`", "/api/health;", "/api/health{", "/api/health}", "/a\n/b", "/api/../admin",
        "/..", "/a//b", "http://x", "/a b", "api/health", "/" + "x".repeat(201), "/a\tb", "/a$host"].map((v): [string, string] => ["HEALTH_PATH", v]),
      ...["10m;", "$(id)", "`id`", "'", "0", "1g", "10 m", "1m\n2m", "123456", "-1", "1M", "{"].map((v): [string, string] => ["MAX_BODY_SIZE", v]),
      ...["/a',0,60,-", '/a",0,60,-', "/$(id),0,60,-", "/`id`,0,60,-", "/a;b,0,60,-", "/a{,0,60,-", "/a,0,60,-\n/b,0,60,-",
        "/a/../b,0,60,-", "/..,0,60,-", "http://x,0,60,-", "/a, 0,60,-", "/a,0,60,-\t/b,0,60,-", "/,0,60,-", "/api/,0,60,-",
        "/.well-known/acme-challenge/,0,60,-", "/a,0,60,- /b,1,60,- /a,1,60,-", "/a,0,0,-", "/a,0,86401,-", "/a,0,060,-",
        "/a,2,60,-", "/a,0,60,0", "/a,0,60,1g", "/a,0,60", "/a,0,60,-,x", "/a//b,0,60,-", ",0,60,-", "a,0,60,-",
        "/a,0,60,-,80", "/a,0,60,-,70000", `/a,0,60,-,${appPort}`, `/a,0,60,-,${appPort + 1}`, "/a,0,60,-,3000,1"].map((v): [string, string] => ["ROUTES", v]),
    ];
    for (const [setting, value] of hostile) {
      const what = `${setting}=${JSON.stringify(value)}`;
      // nginx -t "passes" here: only the renderer's own checks stand between the value and the site.
      const r = render({ [setting]: value }, "true");
      expect(r.status, what).toBe(1);
      expect(r.stderr, what).toMatch(new RegExp(`^nodehost-nginx-render: bad ${setting} `));
      expect(fs.readFileSync(site, "utf8"), what).toBe(previous);
      expect(fs.existsSync(`${site}.nodehost-prev`), what).toBe(false);
    }
  });

  it("a second render with nothing new changes nothing", () => {
    const r = run(RENDER, [], { env: { ...env(), NODEHOST_NGINX_SITE: path.join(T, "site.conf"), NODEHOST_NGINX_RELOAD: "false" } });
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(`unchanged: ${T}/site.conf`);
  });

  it("a run stopped after writing a new site and before nginx reloaded: the next run, finding the file new, still reloads", () => {
    const site = path.join(T, "stopped-site.conf");
    fs.copyFileSync(path.join(T, "site.conf"), site);
    const changedEnv = path.join(T, "stopped.env");
    fs.writeFileSync(changedEnv, `${fs.readFileSync(envFile, "utf8")}MAX_BODY_SIZE='77m'\n`);
    // The reload is where the run dies (SIGKILL to the renderer, as a lost connection would end it).
    const dies = path.join(T, "reload-dies");
    fs.writeFileSync(dies, "#!/bin/sh\nkill -9 $PPID\n", { mode: 0o755 });
    const logged = path.join(T, "reload-logged");
    const reloads = path.join(T, "reloads");
    fs.writeFileSync(logged, `#!/bin/sh\necho reload >> ${reloads}\n`, { mode: 0o755 });
    const render = (reload: string) => run(RENDER, [], { env: { ...env(), NODEHOST_NGINX_ENV: changedEnv, NODEHOST_NGINX_SITE: site, NODEHOST_NGINX_TEST: "true", NODEHOST_NGINX_RELOAD: reload } });
    const stopped = render(dies);
    expect(stopped.signal).toBe("SIGKILL");
    expect(fs.readFileSync(site, "utf8")).toContain("client_max_body_size 77m;");
    const again = render(logged);
    expect([again.status, again.stdout.trim()]).toEqual([0, `changed: ${site} (https), nginx reloaded`]);
    expect(fs.readFileSync(reloads, "utf8")).toBe("reload\n");
    // Loaded now: the next run changes nothing.
    expect(render(logged).stdout.trim()).toBe(`unchanged: ${site}`);
    expect(fs.readFileSync(reloads, "utf8")).toBe("reload\n");
  });

  it("puts the previous site back and fails when nginx -t rejects the new one", () => {
    const site = path.join(T, "site.conf");
    const before = fs.readFileSync(site, "utf8");
    fs.rmSync(path.join(T, "live"), { recursive: true }); // would switch back to the HTTP form
    const r = run(RENDER, [], { env: { ...env(), NODEHOST_NGINX_SITE: site, NODEHOST_NGINX_TEST: "false", NODEHOST_NGINX_RELOAD: "true" } });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("nginx -t rejected the new site; the previous one is back in place");
    expect(fs.readFileSync(site, "utf8")).toBe(before);
  });

  it("refuses values that could inject directives", () => {
    const bad = path.join(T, "bad.env");
    fs.writeFileSync(bad, `APP_NAME='app'\nSERVER_NAMES='x.test; include /etc/passwd'\nAPP_PORT='1'\nHTPASSWD_FILE='/x'\n`);
    const r = run(RENDER, ["--print"], { env: { NODEHOST_NGINX_ENV: bad } });
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe("nodehost-nginx-render: bad server name 'x.test;'");
  });
});

// Behind DigitalOcean's load balancer (LB_FROM, issue 13): the balancer ends TLS and connects from
// the stack's VPC range. Here curl on loopback plays the balancer (LB_FROM 127.0.0.0/8), sending the
// X-Forwarded-For and X-Forwarded-Proto it adds; a re-render with a range loopback is not in plays
// anyone else on the network, whose headers must not be believed.
describe.skipIf(need.length > 0)("nodehost-nginx-render behind a load balancer (LB_FROM)", () => {
  const T = tmpDir("nodehost-nginx-lb-");
  let httpPort = 0, appPort = 0;
  let backend: ChildProcess;
  const envFile = path.join(T, "nginx.env");
  const site = path.join(T, "site.conf");
  const nginxArgs = ["-p", T, "-c", path.join(T, "nginx.conf")];
  const baseEnv = () => [
    "APP_NAME='app'", "SERVER_NAMES='example.test'", `APP_PORT='${appPort}'`, `HTPASSWD_FILE='${T}/htpasswd'`,
    `UI_ROOT='${T}/dist'`, `STATUS_DIR='${T}/status'`, `HTTP_PORT='${httpPort}'`,
  ];
  const render = (extra: string[], reload = `nginx -s reload ${nginxArgs.join(" ")}`) => {
    fs.writeFileSync(envFile, [...baseEnv(), ...extra, ""].join("\n"));
    return run(RENDER, [], { env: { NODEHOST_NGINX_ENV: envFile, NODEHOST_LE_LIVE: path.join(T, "live"), NODEHOST_NGINX_UPSTREAM: path.join(T, "upstream.conf"),
      NODEHOST_NGINX_SITE: site, NODEHOST_NGINX_TEST: `nginx -t -q ${nginxArgs.join(" ")}`, NODEHOST_NGINX_RELOAD: reload } });
  };
  let n = 0;
  const curl = (...args: string[]) => {
    const b = path.join(T, `b${++n}`);
    const r = run("curl", ["-s", "-o", b, "-w", "%{http_code}", "--max-time", "10", ...args]);
    return { code: r.stdout.trim(), exit: r.status, body: fs.existsSync(b) ? fs.readFileSync(b, "utf8") : "" };
  };
  const url = (p: string) => `http://127.0.0.1:${httpPort}${p}`;
  /** What the app was told: the headers nginx sent it. */
  const told = (...args: string[]) => JSON.parse(curl(...args).body) as Record<string, string>;

  beforeAll(async () => {
    fs.chmodSync(T, 0o755);
    [httpPort, appPort] = [await freePort(), await freePort()];
    const ready = path.join(T, "ready");
    backend = spawn(process.execPath, ["-e", `
      require("http").createServer((req, res) => {
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify({ url: req.url, host: req.headers.host, realIp: req.headers["x-real-ip"], proto: req.headers["x-forwarded-proto"], xff: req.headers["x-forwarded-for"] }));
      }).listen(${appPort}, "127.0.0.1", () => require("fs").writeFileSync(${JSON.stringify(ready)}, ""));`], { stdio: "inherit" });
    await waitFor(() => fs.existsSync(ready), "backend");
    fs.mkdirSync(path.join(T, "dist"));
    fs.writeFileSync(path.join(T, "dist", "index.html"), "<h1>ui</h1>\n");
    const hash = run("openssl", ["passwd", "-apr1", "-stdin"], { input: "s3cret-pass" }).stdout.trim();
    fs.writeFileSync(path.join(T, "htpasswd"), `admin:${hash}\n`, { mode: 0o644 });
    writeNginxConf(T, site);
    // Written and tested by nginx -t; nginx is started after it (nothing to reload yet).
    const r = render(["LB_FROM='127.0.0.0/8'", "ALLOW_IPS='198.51.100.0/24'"], "true");
    expect([r.status, r.stderr, r.stdout.trim()]).toEqual([0, "", `changed: ${site} (http behind the load balancer), nginx reloaded`]);
    await startNginx(T, nginxArgs);
  });

  afterAll(() => {
    stopNginx(T);
    backend?.kill();
  });

  it("serves the site on HTTP with no HTTPS server or redirect, telling the app the client's address and https from the balancer", () => {
    const printed = run(RENDER, ["--print"], { env: { NODEHOST_NGINX_ENV: envFile, NODEHOST_LE_LIVE: path.join(T, "live"), NODEHOST_NGINX_UPSTREAM: path.join(T, "upstream.conf") } }).stdout;
    expect(printed).not.toMatch(/\bssl\b|return 301|acme-challenge/);
    // The client (in the allow-list) as the balancer names it, last in X-Forwarded-For.
    const app = told("-H", "Host: example.test", "-H", "X-Forwarded-For: 198.51.100.7", "-H", "X-Forwarded-Proto: https", url("/api/whoami"));
    expect(app).toMatchObject({ url: "/api/whoami", host: "example.test", realIp: "198.51.100.7", proto: "https" });
    // Reached over HTTP and said so, not https by default.
    expect(told("-H", "Host: example.test", "-H", "X-Forwarded-For: 198.51.100.7", "-H", "X-Forwarded-Proto: http", url("/api/whoami")).proto).toBe("http");
  });

  it("applies the allow-list and basic auth to the client's address, not the balancer's", () => {
    const ui = (client: string) => curl("-H", "Host: example.test", "-H", `X-Forwarded-For: ${client}`, url("/")).code;
    expect(ui("203.0.113.7")).toBe("403");
    expect(ui("198.51.100.9")).toBe("401");
    expect(curl("-u", "admin:s3cret-pass", "-H", "Host: example.test", "-H", "X-Forwarded-For: 198.51.100.9", url("/")).code).toBe("200");
  });

  it("answers the health path whatever Host the balancer's health check sends, and closes anything else for another name", () => {
    const health = curl("-H", "Host: 10.10.0.5", url("/api/health"));
    expect([health.code, JSON.parse(health.body).url]).toEqual(["200", "/api/health"]);
    // 444: the connection closed with no answer (curl: empty reply).
    const other = curl("-H", "Host: 10.10.0.5", url("/api/whoami"));
    expect([other.code, other.exit]).toEqual(["000", 52]);
  });

  it("believes X-Forwarded-For and X-Forwarded-Proto from the balancer's ranges alone", () => {
    const r = render(["LB_FROM='10.99.0.0/16'"]);
    expect([r.status, r.stdout.trim()], r.stderr).toEqual([0, `changed: ${site} (http behind the load balancer), nginx reloaded`]);
    const app = () => told("-H", "Host: example.test", "-H", "X-Forwarded-For: 203.0.113.7", "-H", "X-Forwarded-Proto: https", url("/api/whoami"));
    // The reload is graceful: old workers may answer for a moment.
    return waitFor(() => app().realIp === "127.0.0.1", "the new site loaded").then(() => {
      expect(app()).toMatchObject({ realIp: "127.0.0.1", proto: "http" });
    });
  });

  it("refuses an LB_FROM that is not an address range, naming it, and keeps the site", () => {
    const before = fs.readFileSync(site, "utf8");
    for (const bad of ["10.0.0.0/8;", "10.0.0.0", "10.0.0.0/8 include", "$(id)/8"]) {
      const r = render([`LB_FROM='${bad}'`]);
      expect(r.status, bad).toBe(1);
      expect(r.stderr).toMatch(/^nodehost-nginx-render: bad LB_FROM entry '/);
      expect(fs.readFileSync(site, "utf8")).toBe(before);
    }
  });
});
