// The sample app's optional worker: counts a tick in Redis every WORKER_INTERVAL_MS (30 s).
"use strict";
const { createClient } = require("redis");

const INTERVAL_MS = Number(process.env.WORKER_INTERVAL_MS || 30_000);
const redis = createClient({
  url: process.env.REDIS_URL,
  socket: { reconnectStrategy: (n) => Math.min(n * 200, 5000) },
});
redis.on("error", (err) => console.error(`redis: ${err.message}`));

async function tick() {
  try {
    const n = await redis.incr("nodehost:worker:ticks");
    console.log(`tick ${n}`);
  } catch (err) {
    console.error(`tick failed: ${err.message}`);
  }
}

let timer;
async function main() {
  await redis.connect();
  await tick();
  timer = setInterval(tick, INTERVAL_MS);
}

async function shutdown(signal) {
  console.log(`${signal}: stopping`);
  clearInterval(timer);
  const force = setTimeout(() => process.exit(1), 5000);
  force.unref();
  if (redis.isOpen) await (redis.close ? redis.close() : redis.quit());
  process.exit(0);
}
process.on("SIGINT", () => shutdown("SIGINT"));
process.on("SIGTERM", () => shutdown("SIGTERM"));

main().catch((err) => {
  console.error(`worker: ${err.message}`);
  process.exit(1);
});
