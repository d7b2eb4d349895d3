#!/usr/bin/env node
// nodehost-ecosystem template|names RELEASE_DIR ENV_JSON APP_NAME MEMORY_LIMIT WORKER < PROCESSES_JSON
//
// The PM2 processes of one release, from app.processes (stdin: a JSON list, [] for the default) and
// the release's own package.json. `template` prints the ecosystem file with __PORT__ for its slot's
// port; `names` prints the process names, the web process first (also with __PORT__).
// Run as the app user by nodehost-release: the release is the app's tree, and a link planted in it
// must not make root print another file's bytes in an error.
//
// app.processes empty: one web process as npm would start it (a `node <file>` start script runs the
// file directly, any other through `npm start`, none: `main`, else server.js), plus WORKER (a file
// or an npm script) when set. Every process runs from the release's own directory (not `current`,
// which moves only once the traffic does), with the app's environment read from ENV_JSON at each
// start and PORT set to the slot's.
"use strict";
const fs = require("fs");
const path = require("path");
const { pathToFileURL } = require("url");

function die(msg) {
  process.stderr.write(`nodehost-ecosystem: ${msg}\n`);
  process.exit(1);
}

const [mode, dir, envFile, appName, memoryLimit, worker = ""] = process.argv.slice(2);
if (!["template", "names"].includes(mode) || !dir || !envFile || !appName || !memoryLimit) {
  die("usage: nodehost-ecosystem template|names RELEASE_DIR ENV_JSON APP_NAME MEMORY_LIMIT [WORKER] < PROCESSES_JSON");
}
// The stack's config has checked all of these (components/config.ts); checked again, since what
// passes lands in a JavaScript file PM2 loads.
const NAME = /^[a-z][a-z0-9-]{0,30}$/;
const SCRIPT = /^[A-Za-z0-9][A-Za-z0-9:._-]{0,99}$/;
const FILE = /^[A-Za-z0-9._][A-Za-z0-9._/-]*$/;
const inRelease = (f) => FILE.test(f) && !f.split("/").includes("..");
if (!NAME.test(appName)) die(`bad app name ${JSON.stringify(appName)}`);
if (!/^[1-9][0-9]{0,5}[MG]$/.test(memoryLimit)) die(`bad memory limit ${JSON.stringify(memoryLimit)}`);
if (!path.isAbsolute(dir) || !path.isAbsolute(envFile)) die("RELEASE_DIR and ENV_JSON must be absolute paths");

let pkg;
try {
  pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"));
} catch (e) {
  die(`cannot read the release's package.json: ${e.code || "not JSON"}`);
}
const scripts = (pkg && typeof pkg.scripts === "object" && pkg.scripts) || {};
const hasScript = (s) => typeof scripts[s] === "string" && scripts[s] !== "";

let wanted;
try {
  wanted = JSON.parse(fs.readFileSync(0, "utf8") || "[]");
} catch {
  die("the process list on stdin is not JSON");
}
if (!Array.isArray(wanted)) die("the process list on stdin must be a JSON list");

/**
 * A file of the release, for PM2 to run with node: it must be there (a typo fails here, not as a
 * crash loop). The interpreter is named: PM2 6 picks one by extension otherwise, and runs a .ts
 * file with bun (measured with pm2 6.0.14: "Interpreter bun is NOT AVAILABLE in PATH").
 */
function releaseFile(f, what) {
  if (!inRelease(f)) die(`${what}: ${JSON.stringify(f)} is not a path inside the release`);
  if (!fs.existsSync(path.join(dir, f))) die(`${what}: ${f} is not a file in the release`);
  return path.join(dir, f);
}
const nodeFile = (f, what) => ({ script: releaseFile(f, what), interpreter: "node" });
function npmRun(s, what) {
  if (!SCRIPT.test(s)) die(`${what}: bad npm script name ${JSON.stringify(s)}`);
  if (!hasScript(s)) die(`${what}: the release's package.json has no script "${s}"`);
  return { script: "npm", args: s === "start" ? ["start"] : ["run", s] };
}

/** [{ name, web, run: { script, args?, node_args? }, instances, exec_mode }] */
let procs;
if (wanted.length === 0) {
  const start = hasScript("start") ? scripts.start : "";
  const m = /^node\s+(\S+\.(?:c|m)?js)\s*$/.exec(start);
  let run;
  if (m) run = nodeFile(m[1], "scripts.start");
  else if (start) run = { script: "npm", args: ["start"] };
  else run = nodeFile(typeof pkg.main === "string" && pkg.main ? pkg.main : "server.js", "the start file (main, else server.js)");
  procs = [{ name: "web", web: true, run, instances: 1, exec_mode: "fork" }];
  if (worker) {
    let wrun;
    if (inRelease(worker) && fs.existsSync(path.join(dir, worker)) && fs.statSync(path.join(dir, worker)).isFile()) wrun = nodeFile(worker, "app.worker");
    else if (SCRIPT.test(worker) && hasScript(worker)) wrun = npmRun(worker, "app.worker");
    else die(`app.worker ${JSON.stringify(worker)} is neither a file nor an npm script of the release`);
    procs.push({ name: "worker", web: false, run: wrun, instances: 1, exec_mode: "fork" });
  }
} else {
  procs = wanted.map((p, i) => {
    const what = `app.processes[${i}]`;
    if (!p || typeof p !== "object" || !NAME.test(p.name)) die(`${what}: bad name`);
    const instances = Number.isInteger(p.instances) && p.instances >= 1 && p.instances <= 32 ? p.instances : die(`${what}: bad instances`);
    const cluster = p.mode === "cluster";
    let run;
    if (typeof p.file === "string") {
      run = nodeFile(p.file, what);
      if (p.interpreter === "tsx") {
        // The release's own tsx, by its file URL: a bare `--import tsx` resolves from the cwd the
        // process starts in, which in cluster mode is PM2's daemon's (/ under systemd), not the
        // release (PM2 changes directory only later): each worker then died before its first log
        // line (found on the VM; the release's tsx was not found from /).
        let loader;
        try {
          loader = require.resolve("tsx", { paths: [dir] });
        } catch {
          die(`${what}: interpreter tsx needs tsx among the app's dependencies (npm install tsx), and the release has none`);
        }
        if (!loader.startsWith(dir + path.sep)) die(`${what}: tsx resolves outside the release (${loader})`);
        run.node_args = ["--import", pathToFileURL(loader).href];
      }
    } else if (typeof p.npm === "string") {
      if (cluster) die(`${what}: cluster mode needs a file`);
      run = npmRun(p.npm, what);
    } else {
      die(`${what}: needs npm or file`);
    }
    return { name: p.name, web: p.web === true, run, instances, exec_mode: cluster ? "cluster" : "fork" };
  });
  if (procs.filter((p) => p.web).length !== 1) die("app.processes must have exactly one web process");
  procs.sort((a, b) => Number(b.web) - Number(a.web));
}

const names = procs.map((p) => `${appName}-${p.name}-__PORT__`);
if (mode === "names") {
  process.stdout.write(names.join("\n") + "\n");
  process.exit(0);
}

const apps = procs.map((p, i) => ({
  name: names[i],
  ...p.run,
  cwd: dir,
  exec_mode: p.exec_mode,
  instances: p.instances,
  max_memory_restart: memoryLimit,
  exp_backoff_restart_delay: 200,
  kill_timeout: 8000,
  merge_logs: true,
  time: true,
}));
process.stdout.write(`// Written by nodehost-release. Release ${path.basename(dir)} in the slot on port __PORT__; env from ${envFile}.
const fs = require("fs");
const env = { ...JSON.parse(fs.readFileSync(${JSON.stringify(envFile)}, "utf8")), PORT: "__PORT__" };
module.exports = {
  apps: ${JSON.stringify(apps, null, 2).replace(/\n/g, "\n  ")}.map((app) => ({ ...app, env })),
};
`);
