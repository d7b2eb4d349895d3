// The bundled sample app (app/) installed from its lockfile and run against local PostgreSQL and Redis.
import { spawn, ChildProcess } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, LocalPostgres, LocalRedis, missing, REPO, run, startPostgres, startRedis, tmpDir, waitFor } from "./helpers";

const need = missing("psql", "redis-server", "runuser");
if (need.length) console.warn(`sample app tests SKIPPED: missing ${need.join(", ")} (apt-get install postgresql redis-server)`);

describe.skipIf(need.length > 0)("sample app", () => {
  let pg: LocalPostgres;
  let redis: LocalRedis;
  let port = 0;
  let app: ChildProcess;
  let output = "";
  const dir = tmpDir("nodehost-app-");
  const base = () => `http://127.0.0.1:${port}`;
  const get = async (p: string, init?: RequestInit) => {
    const res = await fetch(base() + p, init);
    return { status: res.status, body: await res.json() };
  };
  const start = (script: string, extra: NodeJS.ProcessEnv = {}) => {
    const child = spawn(process.execPath, [script], {
      cwd: dir,
      env: { PATH: process.env.PATH, NODE_ENV: "production", HOST: "127.0.0.1", PORT: String(port), DATABASE_URL: pg.url, REDIS_URL: redis.url, ...extra },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout!.on("data", (d) => (output += d));
    child.stderr!.on("data", (d) => (output += d));
    return child;
  };

  beforeAll(async () => {
    // Exactly what the app step does with a release: the files, then npm ci --omit=dev.
    for (const f of ["package.json", "package-lock.json", "server.js", "worker.js"]) fs.copyFileSync(path.join(REPO, "app", f), path.join(dir, f));
    const ci = run("npm", ["ci", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: dir });
    expect(ci.status, ci.stderr).toBe(0);
    [pg, redis, port] = [await startPostgres(), await startRedis(), await freePort()];
    app = start("server.js");
    await waitFor(() => output.includes("listening on"), "the app to listen");
  }, 120_000);

  afterAll(async () => {
    app?.kill("SIGKILL");
    await redis?.stop();
    pg?.stop();
  });

  it("reports both backends healthy", async () => {
    await waitFor(async () => (await get("/api/health")).status === 200, "healthy");
    expect(await get("/api/health")).toEqual({ status: 200, body: { status: "ok", postgres: "ok", redis: "ok" } });
  });

  it("writes a visit per request to PostgreSQL (and counts it in Redis), with a checksum to compare restores", async () => {
    const first = await get("/api/visits?note=a");
    const second = await get("/api/visits", { method: "POST" });
    expect(second.body.count).toBe(first.body.count + 1);
    expect(second.body.redisCounter).toBe(first.body.redisCounter + 1);
    expect(pg.psql("SELECT count(*) FROM visits")).toBe(String(second.body.count));
    const summary = await get("/api/visits/summary");
    expect(summary.body).toEqual({ count: second.body.count, checksum: second.body.checksum });
    expect(summary.body.checksum).toMatch(/^[0-9a-f]{32}$/);
  });

  it("answers 503 naming Redis when Redis is down, and recovers when it is back", async () => {
    await redis.stop();
    await waitFor(async () => (await get("/api/health")).status === 503, "503");
    const down = await get("/api/health");
    expect(down.body.status).toBe("error");
    expect(down.body.postgres).toBe("ok");
    expect(down.body.redis).toMatch(/^error: /);
    await redis.start();
    await waitFor(async () => (await get("/api/health")).status === 200, "recovery", 30_000);
  }, 60_000);

  it("answers 503 naming PostgreSQL when the database refuses", async () => {
    const broken = await freePort();
    const other = start("server.js", { PORT: String(broken), DATABASE_URL: pg.url.replace(`:${pg.port}/`, `:${await freePort()}/`) });
    try {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${broken}/api/health`)).status === 503, "503");
      const body = await (await fetch(`http://127.0.0.1:${broken}/api/health`)).json();
      expect(body).toMatchObject({ status: "error", redis: "ok" });
      expect(body.postgres).toMatch(/^error: /);
    } finally {
      other.kill("SIGKILL");
    }
  });

  it("the worker ticks a Redis counter", async () => {
    const worker = start("worker.js", { WORKER_INTERVAL_MS: "200" });
    try {
      await waitFor(async () => (await get("/api/worker")).body.ticks >= 3, "3 ticks");
    } finally {
      worker.kill("SIGTERM");
    }
  });

  it("stops cleanly on SIGTERM (PM2 reload) within its kill timeout", async () => {
    const exited = new Promise<number | null>((r) => app.once("exit", (code) => r(code)));
    const t0 = Date.now();
    app.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(output).toContain("SIGTERM: closing");
  });
});
