// scripts/tools/nodehost-ecosystem.js: the PM2 processes of a release from app.processes and its
// package.json, started by a real PM2 6 (as nodehost-release starts them on the host): a tsx
// server in cluster mode behind one port, an npm-script worker, the environment from env.json.
import * as fs from "fs";
import * as http from "http";
import * as path from "path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, run, runAsync, SCRIPTS, tmpDir, waitFor } from "./helpers";

const TOOL = path.join(SCRIPTS, "tools", "nodehost-ecosystem.js");

/** A release directory with these files (package.json given as an object). */
function release(files: Record<string, string | object>): string {
  const dir = tmpDir("nodehost-release-");
  for (const [f, body] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    fs.writeFileSync(path.join(dir, f), typeof body === "string" ? body : JSON.stringify(body));
  }
  return dir;
}
const envFile = (() => {
  const f = path.join(tmpDir("nodehost-env-"), "env.json");
  fs.writeFileSync(f, JSON.stringify({ GREETING: "it's $(id) `x`\nline two", NODE_ENV: "production" }));
  return f;
})();
function tool(mode: "template" | "names", dir: string, processes: unknown[], worker = "", memory = "512M") {
  return run(process.execPath, [TOOL, mode, dir, envFile, "app", memory, worker], { input: JSON.stringify(processes) });
}
/** GET on a new connection each time (a kept-alive one would stay with one cluster worker). */
function getJson(port: number): Promise<{ pid: number; greeting: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: "127.0.0.1", port, path: "/", agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (d: string) => (body += d)).on("end", () => {
        try { resolve(JSON.parse(body)); } catch (e) { reject(e); }
      });
    }).on("error", reject);
  });
}
/** The ecosystem as PM2 would load it, for the slot on `port`. */
function loadEcosystem(template: string, port: number) {
  const f = path.join(tmpDir("nodehost-eco-"), "ecosystem.config.cjs");
  fs.writeFileSync(f, template.split("__PORT__").join(String(port)));
  return { file: f, apps: (require(f) as { apps: Record<string, unknown>[] }).apps };
}

describe("nodehost-ecosystem: what PM2 runs", () => {
  it("with no app.processes starts the web process as npm would, plus app.worker, as before", () => {
    const dir = release({ "package.json": { scripts: { start: "node server.js", jobs: "node jobs.js" } }, "server.js": "", "worker.js": "" });
    const byFile = tool("template", dir, [], "worker.js");
    expect(byFile.status, byFile.stderr).toBe(0);
    const { apps } = loadEcosystem(byFile.stdout, 4000);
    expect(apps.map((a) => [a.name, a.script, a.interpreter, a.exec_mode, a.instances, a.cwd])).toEqual([
      ["app-web-4000", path.join(dir, "server.js"), "node", "fork", 1, dir],
      ["app-worker-4000", path.join(dir, "worker.js"), "node", "fork", 1, dir],
    ]);
    expect(apps[0].env).toEqual({ GREETING: "it's $(id) `x`\nline two", NODE_ENV: "production", PORT: "4000" });
    expect(apps[0].max_memory_restart).toBe("512M");
    // A start script that is not `node <file>` runs through npm; a worker that is a script, too.
    const tsxStart = release({ "package.json": { scripts: { start: "tsx server/index.ts", jobs: "node jobs.js" } } });
    const { apps: viaNpm } = loadEcosystem(tool("template", tsxStart, [], "jobs").stdout, 4001);
    expect(viaNpm.map((a) => [a.name, a.script, a.args])).toEqual([["app-web-4001", "npm", ["start"]], ["app-worker-4001", "npm", ["run", "jobs"]]]);
    expect(tool("names", tsxStart, [], "jobs").stdout).toBe("app-web-__PORT__\napp-worker-__PORT__\n");
  });

  it("builds app.processes: the web process first, files, npm scripts, tsx, cluster mode and the memory limit", () => {
    const dir = release({
      "package.json": { scripts: { start: "tsx server/index.ts", "start:worker": "tsx worker/index.ts" } },
      "server/index.ts": "", "node_modules/tsx/package.json": JSON.stringify({ name: "tsx", exports: { ".": "./dist/loader.mjs" } }),
      "node_modules/tsx/dist/loader.mjs": "",
    });
    const procs = [
      { name: "worker", npm: "start:worker", instances: 1, mode: "fork", interpreter: "node", web: false },
      { name: "api", file: "server/index.ts", interpreter: "tsx", instances: 2, mode: "cluster", web: true },
    ];
    const r = tool("template", dir, procs, "", "1G");
    expect(r.status, r.stderr).toBe(0);
    const { apps } = loadEcosystem(r.stdout, 5000);
    // node named as the interpreter: PM2 6 would run a .ts file with bun.
    expect(apps.map((a) => [a.name, a.script, a.interpreter ?? a.args, a.node_args, a.exec_mode, a.instances, a.max_memory_restart])).toEqual([
      // The release's own tsx by its file URL, whatever directory PM2's daemon runs in.
      ["app-api-5000", path.join(dir, "server/index.ts"), "node", ["--import", `file://${dir}/node_modules/tsx/dist/loader.mjs`], "cluster", 2, "1G"],
      ["app-worker-5000", "npm", ["run", "start:worker"], undefined, "fork", 1, "1G"],
    ]);
    expect(tool("names", dir, procs).stdout).toBe("app-api-__PORT__\napp-worker-__PORT__\n");
  });

  it("refuses, naming the process, what the release cannot run", () => {
    const dir = release({ "package.json": { scripts: { start: "node server.js" } }, "server.js": "" });
    const web = { name: "web", instances: 1, mode: "fork", interpreter: "node", web: true };
    const cases: [unknown[], string, RegExp][] = [
      [[{ ...web, file: "missing.js" }], "", /app\.processes\[0\]: missing\.js is not a file in the release/],
      [[{ ...web, file: "../../etc/passwd" }], "", /app\.processes\[0\]: "\.\.\/\.\.\/etc\/passwd" is not a path inside the release/],
      [[{ ...web, npm: "migrate" }], "", /app\.processes\[0\]: the release's package\.json has no script "migrate"/],
      [[{ ...web, file: "server.js", interpreter: "tsx" }], "", /interpreter tsx needs tsx among the app's dependencies/],
      [[{ ...web, npm: "start", mode: "cluster" }], "", /cluster mode needs a file/],
      [[{ ...web, name: "Web; reboot", file: "server.js" }], "", /app\.processes\[0\]: bad name/],
      [[{ ...web, file: "server.js", web: false }], "", /exactly one web process/],
      [[], "nope.js", /app\.worker "nope\.js" is neither a file nor an npm script/],
    ];
    for (const [procs, worker, message] of cases) {
      const r = tool("template", dir, procs, worker);
      expect(r.status, JSON.stringify(procs)).not.toBe(0);
      expect(r.stderr).toMatch(message);
      expect(r.stdout).toBe("");
    }
    expect(run(process.execPath, [TOOL, "template", dir, envFile, "app", "512M; x"], { input: "[]" }).stderr).toMatch(/bad memory limit/);
  });
});

describe("nodehost-ecosystem under a real PM2 6", () => {
  const pm2Dir = tmpDir("nodehost-pm2-");
  const pm2Home = tmpDir("nodehost-pm2-home-");
  // Started from / as the host's pm2-nodeapp unit starts PM2: a worker resolving anything from
  // the daemon's cwd (this checkout has a tsx of its own) would pass here and fail there.
  const pm2 = (...args: string[]) => runAsync(path.join(pm2Dir, "node_modules", ".bin", "pm2"), args, { env: { PM2_HOME: pm2Home }, timeoutMs: 60_000, cwd: "/" });
  let dir = "";
  let port = 0;

  beforeAll(async () => {
    // What the host runs: pm2 6 from the npm registry (node-pm2 step), and a release whose npm ci
    // installed tsx (the app's own dependency).
    fs.writeFileSync(path.join(pm2Dir, "package.json"), "{}");
    dir = release({
      "package.json": { dependencies: { tsx: "^4" }, scripts: { jobs: "node jobs.js" } },
      // TypeScript, run by tsx's loader: each cluster worker answers with its own pid.
      "server/index.ts": `import * as http from "node:http";
const port: number = Number(process.env.PORT);
http.createServer((_req, res) => res.end(JSON.stringify({ pid: process.pid, greeting: process.env.GREETING }))).listen(port, "127.0.0.1");
`,
      "jobs.js": `require("fs").writeFileSync("jobs-ran", process.env.GREETING + " " + process.env.PORT); setInterval(() => {}, 1000);\n`,
    });
    const installs = await Promise.all([
      runAsync("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error", "pm2@6"], { timeoutMs: 180_000, cwd: pm2Dir }),
      runAsync("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error"], { timeoutMs: 180_000, cwd: dir }),
    ]);
    for (const i of installs) expect(i.status, i.stderr).toBe(0);
    port = await freePort();
  }, 240_000);

  afterAll(async () => {
    await pm2("kill");
  });

  it("runs a tsx server in cluster mode (two workers behind one port) and an npm-script worker, with the app's environment", async () => {
    const procs = [
      { name: "api", file: "server/index.ts", interpreter: "tsx", instances: 2, mode: "cluster", web: true },
      { name: "jobs", npm: "jobs", instances: 1, mode: "fork", interpreter: "node", web: false },
    ];
    const r = tool("template", dir, procs);
    expect(r.status, r.stderr).toBe(0);
    const { file } = loadEcosystem(r.stdout, port);
    // As nodehost-release does: the web process alone, then (once it has the traffic) the others.
    const web = await pm2("start", file, "--only", `app-api-${port}`);
    expect(web.status, web.stderr + web.stdout).toBe(0);
    const pids = new Set<number>();
    const greetings = new Set<string>();
    await waitFor(async () => {
      const body = await getJson(port);
      pids.add(body.pid);
      greetings.add(body.greeting);
      return pids.size >= 2;
    }, "two cluster workers answering on one port", 60_000);
    expect(pids.size).toBe(2);
    expect([...greetings]).toEqual(["it's $(id) `x`\nline two"]);
    const jobs = await pm2("start", file, "--only", `app-jobs-${port}`);
    expect(jobs.status, jobs.stderr + jobs.stdout).toBe(0);
    await waitFor(() => fs.existsSync(path.join(dir, "jobs-ran")), "the jobs process", 30_000);
    expect(fs.readFileSync(path.join(dir, "jobs-ran"), "utf8")).toBe(`it's $(id) \`x\`\nline two ${port}`);
    const list = JSON.parse((await pm2("jlist")).stdout) as { name: string; pm2_env: { status: string; exec_mode: string } }[];
    expect(list.map((p) => [p.name, p.pm2_env.exec_mode, p.pm2_env.status]).sort()).toEqual([
      [`app-api-${port}`, "cluster_mode", "online"],
      [`app-api-${port}`, "cluster_mode", "online"],
      [`app-jobs-${port}`, "fork_mode", "online"],
    ]);
  }, 120_000);
});
