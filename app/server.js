// The bundled sample app: /api/health checks PostgreSQL and Redis; /api/visits writes a row.
"use strict";
const http = require("http");
const { Pool } = require("pg");
const { createClient } = require("redis");

const HOST = process.env.HOST || "127.0.0.1";
const PORT = Number(process.env.PORT || 3081);
const CHECK_TIMEOUT_MS = 2000;

const pool = new Pool({
  connectionString: process.env.DATABASE_URL,
  max: 5,
  connectionTimeoutMillis: CHECK_TIMEOUT_MS,
  idleTimeoutMillis: 30_000,
});
// An idle client's error (database restarted) must not crash the process; the next query reconnects.
pool.on("error", (err) => console.error(`postgres pool: ${err.message}`));

const redis = createClient({
  url: process.env.REDIS_URL,
  socket: { connectTimeout: CHECK_TIMEOUT_MS, reconnectStrategy: (n) => Math.min(n * 200, 5000) },
});
redis.on("error", (err) => console.error(`redis: ${err.message}`));

function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out`)), CHECK_TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

let schemaReady = false;
async function ensureSchema() {
  if (schemaReady) return;
  await pool.query(
    "CREATE TABLE IF NOT EXISTS visits (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), note text)",
  );
  schemaReady = true;
}

async function health() {
  const result = { status: "ok", postgres: "ok", redis: "ok" };
  const [pg, rd] = await Promise.allSettled([
    withTimeout(pool.query("SELECT 1"), "postgres"),
    withTimeout(redis.isReady ? redis.ping() : Promise.reject(new Error("not connected")), "redis"),
  ]);
  if (pg.status === "rejected") result.postgres = `error: ${pg.reason.message}`;
  if (rd.status === "rejected") result.redis = `error: ${rd.reason.message}`;
  if (result.postgres !== "ok" || result.redis !== "ok") result.status = "error";
  return result;
}

// count + checksum over every row, so a restore can be compared with what was written.
async function summary() {
  await ensureSchema();
  const { rows } = await pool.query(
    "SELECT count(*)::int AS count, coalesce(md5(string_agg(id::text || ':' || coalesce(note, ''), ',' ORDER BY id)), '') AS checksum FROM visits",
  );
  return rows[0];
}

async function addVisit(note) {
  await ensureSchema();
  const { rows } = await pool.query("INSERT INTO visits (note) VALUES ($1) RETURNING id, at", [note]);
  const counter = await redis.incr("nodehost:visits");
  return { ...rows[0], redisCounter: counter, ...(await summary()) };
}

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "cache-control": "no-store",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, "http://localhost");
  try {
    if (url.pathname === "/api/health" && req.method === "GET") {
      const h = await health();
      return send(res, h.status === "ok" ? 200 : 503, h);
    }
    if (url.pathname === "/api/visits" && (req.method === "GET" || req.method === "POST")) {
      return send(res, 200, await addVisit(url.searchParams.get("note")));
    }
    if (url.pathname === "/api/visits/summary" && req.method === "GET") {
      return send(res, 200, await summary());
    }
    if (url.pathname === "/api/worker" && req.method === "GET") {
      return send(res, 200, { ticks: Number((await redis.get("nodehost:worker:ticks")) || 0) });
    }
    return send(res, 404, { error: "not found" });
  } catch (err) {
    console.error(`${req.method} ${url.pathname}: ${err.message}`);
    return send(res, 500, { error: err.message });
  }
});

async function main() {
  // Start serving even when a backend is down: /api/health then says which one.
  redis.connect().catch((err) => console.error(`redis connect: ${err.message}`));
  ensureSchema().catch((err) => console.error(`schema: ${err.message}`));
  server.listen(PORT, HOST, () => {
    console.log(`listening on http://${HOST}:${PORT}`);
    if (process.send) process.send("ready");
  });
}

let stopping = false;
async function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`${signal}: closing`);
  const force = setTimeout(() => process.exit(1), 5000);
  force.unref();
  server.close();
  server.closeIdleConnections?.();
  await Promise.allSettled([pool.end(), redis.isOpen ? (redis.close ? redis.close() : redis.quit()) : Promise.resolve()]);
  process.exit(0);
}
process.on("SIGINT", () => shutdown("SIGINT"));
process.on("SIGTERM", () => shutdown("SIGTERM"));

main();
