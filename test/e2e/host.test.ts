// The replay's helpers without a VM (ordering, the provider's error text, masking, run dirs), and
// the base image taken from the cache once built. Its VM tests are in replay-on-host.ts.
import { existsSync, mkdirSync, mkdtempSync, utimesSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { checkCapability, skipBanner } from "./lib/capability";
import { ensureBaseImage } from "./lib/image";
import { documentedLynisFindings, parseLynisReport } from "./lib/lynis";
import { pruneOldRuns } from "./lib/paths";
import { assertNoSecret, maskSecrets, orderSteps, providerErrorText, secretLeaves, type StepSpec } from "./lib/replay";

const cap = checkCapability();
if (!cap.ok) process.stderr.write(`${skipBanner(cap)}\n`);

const spec = (name: string, dependsOn: string[] = []): StepSpec =>
  ({ name, create: "true", stdin: "", triggers: [name], logging: "stdoutAndStderr", dependsOn, inputs: name });

describe("replay helpers (no VM)", () => {
  it("orders steps after their dependencies, keeping program order otherwise", () => {
    const order = orderSteps([spec("app", ["node", "data"]), spec("boot"), spec("node", ["boot"]), spec("data", ["boot"])]);
    expect(order.map((s) => s.name)).toEqual(["boot", "node", "data", "app"]);
  });

  it("reads lynis' report file: the index, and each finding once by test id", () => {
    const a = parseLynisReport([
      "lynis_version=3.1.4", "suggestion[]=SSH-7408|Consider hardening SSH configuration|Port|-|",
      "suggestion[]=SSH-7408|Consider hardening SSH configuration|MaxSessions|-|", "warning[]=PKGS-7392|Found one or more vulnerable packages.|-|-|",
      "hardening_index=81", "",
    ].join("\n"));
    expect([a.version, a.index, [...a.suggestions.keys()], [...a.warnings.keys()]]).toEqual(["3.1.4", 81, ["SSH-7408"], ["PKGS-7392"]]);
    expect(() => parseLynisReport("lynis_version=3.1.4\n")).toThrow(/no hardening_index/);
    // The docs' table is what the audit's findings are held to: each row a test id and a reason.
    const documented = documentedLynisFindings();
    expect(documented.get("FINT-4350")).toMatch(/^A file-integrity tool \(AIDE\)/);
    expect(documented.get("LYNIS")).toBeDefined();
    for (const [id, why] of documented) expect([id, why.length > 20]).toEqual([id, true]);
  });

  it("rejects a dependency on a step that does not exist", () => {
    expect(() => orderSteps([spec("app", ["nope"])])).toThrow("step app depends on unknown step nope");
  });

  it("builds a failure as pulumi-command prints it, and refuses one that holds a secret", () => {
    const text = providerErrorText("cmd 'x'", 2, "out\n", "pw is hunter2hunter2\n");
    expect(text).toBe('Process exited with status 2: running "cmd \'x\'":\nout\npw is hunter2hunter2\n');
    expect(() => assertNoSecret("s", text, ["hunter2hunter2"])).toThrow(/holds a secret on 1 line\(s\)[^]*pw is \*\*\*/);
    expect(() => assertNoSecret("s", text, ["not-there"])).not.toThrow();
  });

  it("takes a secret config object (appSecrets) value by value", () => {
    expect(secretLeaves(JSON.stringify({ A: "sk_live_1234", B: { C: "nested-secret" } }))).toEqual(
      [JSON.stringify({ A: "sk_live_1234", B: { C: "nested-secret" } }), "sk_live_1234", "nested-secret"]);
    expect(secretLeaves("plain-secret-text")).toEqual(["plain-secret-text"]);
    expect(secretLeaves(JSON.stringify({ K: "first line of it\nsecond line too\nx" }))).toEqual(
      [JSON.stringify({ K: "first line of it\nsecond line too\nx" }), "first line of it\nsecond line too\nx", "first line of it", "second line too"]);
  });
  it("masks every secret, the longer first, and leaves short values alone", () => {
    expect(maskSecrets("pw=hunter2hunter2 key=hunter2 id=abc", ["hunter2", "hunter2hunter2", "abc"])).toBe("pw=*** key=*** id=abc");
  });

  it("prunes run dirs older than three days and keeps the recent ones", () => {
    const runs = mkdtempSync(join(tmpdir(), "nodehost-runs-"));
    const old = join(runs, "provision-1");
    const recent = join(runs, "provision-2");
    mkdirSync(old);
    mkdirSync(recent);
    const fourDaysAgo = new Date(Date.now() - 4 * 24 * 3600_000);
    utimesSync(old, fourDaysAgo, fourDaysAgo);
    expect(pruneOldRuns(runs)).toEqual([old]);
    expect(existsSync(old)).toBe(false);
    expect(existsSync(recent)).toBe(true);
  });
});

// The VM tests of the replay run on provision.test.ts's host (replay-on-host.ts): none needs a
// fresh VM, and a VM of their own cost the suite about 4 min.
describe.skipIf(!cap.ok)("VM test host (Debian 13 under QEMU)", () => {
  it("takes the base image from the cache once built", async () => {
    const first = await ensureBaseImage();
    const again = await ensureBaseImage();
    expect(again.cached).toBe(true);
    expect(again.hash).toBe(first.hash);
    process.stderr.write(`base image ${first.hash}: ${first.cached ? "from cache" : `built in ${(first.buildMs / 1000).toFixed(0)} s`}\n`);
  });
});
