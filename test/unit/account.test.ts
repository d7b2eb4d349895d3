// Both stacks in one fake DigitalOcean account, over their life: the README's first `up`s, a second
// `up` after a refresh, a rebuild, a lost droplet, a destroy, and config changes that would
// replace what holds data. Not proven here: the API's own behaviour beyond the rules the fake
// cites (see fake-do.ts and the README's table of stand-ins).
import * as fs from "fs";
import * as path from "path";
import { describe, expect, test } from "vitest";
import { sshKeyFingerprint } from "../../components/cloud/server";
import { DO_TYPES as T, FakeAccount } from "./fake-do";
import { one, ROOT, Run, stackFileConfig, stackPublicKey, upStack } from "./harness";

/** The `pulumi up --stack X` lines of the README's "Use it" section, in order. */
function readmeUpOrder(): string[] {
  const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## Use it"), readme.indexOf("\n## ", readme.indexOf("## Use it") + 1));
  return [...section.matchAll(/^npx pulumi up --stack (\w+)\s*$/gm)].map((m) => m[1]);
}

async function ok(run: Promise<Run>): Promise<Run> {
  const r = await run;
  if (r.error) throw r.error;
  return r;
}

const droplet = (over: object, stack = "production") =>
  JSON.stringify({ ...JSON.parse(stackFileConfig(stack)["nodehost:droplet"]), ...over });
const doChanges = (a: FakeAccount) => a.changes.filter((c) => c.type.startsWith("digitalocean:"));

describe("a fresh account, in the README's order", () => {
  test("the README brings up production, then staging, and both succeed", async () => {
    const order = readmeUpOrder();
    expect(order).toEqual(["production", "staging"]);
    const account = new FakeAccount();
    for (const stack of order) await ok(upStack(account, stack));
  });

  test("staging first fails: its record goes into a domain only production creates", async () => {
    const account = new FakeAccount();
    const run = await upStack(account, "staging");
    expect(String(run.error)).toMatch(/dnsRecord:DnsRecord nodehost-staging-a-staging: 404 .*domain example\.com/);
  });

  test("a second `up` after a refresh changes nothing in either stack", async () => {
    const account = new FakeAccount();
    for (const stack of ["production", "staging"]) await ok(upStack(account, stack));
    for (const stack of ["production", "staging"]) {
      account.changes = [];
      account.refresh(stack);
      await ok(upStack(account, stack));
      expect([stack, doChanges(account)]).toEqual([stack, []]);
    }
  });

  test("destroying staging removes all it made and leaves production as it was", async () => {
    const account = new FakeAccount();
    for (const stack of ["production", "staging"]) await ok(upStack(account, stack));
    account.destroy("staging");
    expect(account.resourcesOf("staging")).toEqual([]);
    account.changes = [];
    account.refresh("production");
    await ok(upStack(account, "production"));
    expect(doChanges(account)).toEqual([]);
    // Production came first in fra1, so its VPC is the region's default, and staging's was not.
    const vpc = account.resourcesOf("production").find((r) => r.type === T.vpc)!;
    expect(account.isDefaultVpc(vpc.id)).toBe(true);
  });

  test("destroying staging once it holds backups stops at the bucket: a destroy never deletes backups", async () => {
    const account = new FakeAccount();
    for (const stack of ["production", "staging"]) await ok(upStack(account, stack));
    const bucket = account.resourcesOf("staging").find((r) => r.type === T.bucket)!;
    account.putObject(bucket.id);
    expect(() => account.destroy("staging")).toThrow(/deleting nodehost-staging-backups-bucket: 409 BucketNotEmpty/);
    expect(account.resourcesOf("staging").map((r) => r.type)).toContain(T.bucket);
  });

  test("production is protected: a destroy stops before deleting anything", async () => {
    const account = new FakeAccount();
    await ok(upStack(account, "production"));
    expect(() => account.destroy("production")).toThrow(/protected resource\(s\) cannot be deleted: .*nodehost-production-droplet/);
    expect(account.resourcesOf("production").length).toBeGreaterThan(10);
  });
});

describe("SSH keys: one public key per account", () => {
  const sameKey = { "nodehost:ssh": JSON.stringify({ allowFrom: ["203.0.113.10/32"], publicKeys: [stackPublicKey("shared")] }) };

  test("one key for both stacks is refused by the API on the second (422), which is why each stack has its own", async () => {
    const account = new FakeAccount();
    await ok(upStack(account, "production", sameKey));
    const run = await upStack(account, "staging", sameKey);
    expect(String(run.error)).toMatch(/sshKey:SshKey nodehost-staging-key: 422 SSH Key is already in use on your account/);
  });

  test("registerKey false: no key is registered, the droplet names the account's key by fingerprint", async () => {
    const key = stackPublicKey("already-there");
    const ssh = { "nodehost:ssh": JSON.stringify({ allowFrom: ["203.0.113.10/32"], publicKeys: [key], registerKey: false }) };
    const account = new FakeAccount();
    account.addSshKey(key);
    const run = await ok(upStack(account, "production", ssh));
    expect(run.custom.filter((r) => r.type === T.sshKey)).toEqual([]);
    expect(one(run.custom, T.droplet).inputs.sshKeys).toEqual([sshKeyFingerprint(key)]);
    // ssh-keygen -l -E md5 of the same line gives this form: 16 colon-separated bytes.
    expect(sshKeyFingerprint(key)).toMatch(/^([0-9a-f]{2}:){15}[0-9a-f]{2}$/);
  });

  test("registerKey false with a key the account does not have: the droplet create is refused", async () => {
    const ssh = { "nodehost:ssh": JSON.stringify({ allowFrom: ["203.0.113.10/32"], publicKeys: [stackPublicKey("missing")], registerKey: false }) };
    const run = await upStack(new FakeAccount(), "production", ssh);
    expect(String(run.error)).toMatch(/droplet:Droplet nodehost-production-droplet: 422 .* are invalid key identifiers for Droplet creation/);
  });
});

describe("rebuilding and losing the droplet", () => {
  test("a deliberate rebuild (--replace) in staging: the old droplet shuts down before its volume moves, nothing is hot-unplugged", async () => {
    const account = new FakeAccount();
    for (const stack of ["production", "staging"]) await ok(upStack(account, stack));
    const before = account.resourcesOf("staging");
    account.markReplace("staging", T.droplet, "nodehost-staging-droplet");
    account.changes = [];
    account.refresh("staging");
    await ok(upStack(account, "staging"));
    const after = account.resourcesOf("staging");
    const id = (rs: typeof after, t: string) => rs.find((r) => r.type === t)!.id;
    expect(id(after, T.droplet)).not.toBe(id(before, T.droplet));
    expect(id(after, T.volume)).toBe(id(before, T.volume));
    expect(after.find((r) => r.type === T.droplet)!.inputs.volumeIds).toEqual([id(before, T.volume)]);
    expect(after.find((r) => r.type === T.reservedIpAssignment)!.inputs.dropletId).toBe(Number(id(after, T.droplet)));
    expect(account.hotDetaches).toEqual([]);
    expect(doChanges(account).filter((c) => c.op !== "update").map((c) => [c.op, c.name])).toEqual([
      ["replace", "nodehost-staging-droplet"],
      ["replace", "nodehost-staging-ip-assignment"],
      ["create", "nodehost-staging-ip-assignment"],
    ]);
  });

  test("the same rebuild in production is refused until the droplet is unprotected (runbook)", async () => {
    const account = new FakeAccount();
    await ok(upStack(account, "production"));
    account.markReplace("production", T.droplet, "nodehost-production-droplet");
    const run = await upStack(account, "production");
    expect(String(run.error)).toMatch(/unable to replace resource "nodehost-production-droplet" \(replacing: --replace\)\nas it is currently marked for protection/);
  });

  test("a droplet lost outside Pulumi: refresh and up make a new one with the same volume and address", async () => {
    const account = new FakeAccount();
    const first = await ok(upStack(account, "production"));
    const volume = account.resourcesOf("production").find((r) => r.type === T.volume)!.id;
    account.loseDroplet("production", "nodehost-production-droplet");
    account.refresh("production");
    const again = await ok(upStack(account, "production"));
    const d = account.resourcesOf("production").find((r) => r.type === T.droplet)!;
    expect(d.inputs.volumeIds).toEqual([volume]);
    expect((again.result as any).publicIp).toBe((first.result as any).publicIp);
    expect((again.result as any).dropletId).not.toBe((first.result as any).dropletId);
  });
});

describe("production: no config change replaces what holds data without saying so", () => {
  // Each row: a config change a user could make, and what must happen on the next `up`.
  const rows: [string, Record<string, string>, Record<string, string>, RegExp][] = [
    ["droplet.region", {}, { "nodehost:droplet": droplet({ region: "ams3" }) }, /unable to replace resource "nodehost-production-droplet" \(it depends on "nodehost-production-vpc"/],
    ["droplet.vpcIpRange", {}, { "nodehost:droplet": droplet({ vpcIpRange: "10.20.0.0/20" }) }, /unable to replace resource "nodehost-production-droplet" \(it depends on "nodehost-production-vpc"/],
    ["droplet.ipv6 true -> false", { "nodehost:droplet": droplet({ ipv6: true }) }, { "nodehost:droplet": droplet({ ipv6: false }) }, /unable to replace resource "nodehost-production-droplet" \(replacing: ipv6\)/],
    ["backup.bucketName", {}, { "nodehost:backup": JSON.stringify({ ...JSON.parse(stackFileConfig("production")["nodehost:backup"]), bucketName: "nodehost-renamed-bucket" }) }, /unable to replace resource "nodehost-production-backups-bucket" \(replacing: name\)/],
    ["backup.region", {}, { "nodehost:backup": JSON.stringify({ ...JSON.parse(stackFileConfig("production")["nodehost:backup"]), region: "ams3" }) }, /unable to replace resource "nodehost-production-backups-bucket" \(replacing: region\)/],
    ["domain", {}, { "nodehost:domain": "example.org" }, /unable to replace resource "nodehost-production-domain" \(replacing: name\)/],
  ];

  test.each(rows)("%s: the up fails on protect, before anything is replaced", async (_key, first, change, error) => {
    const account = new FakeAccount();
    await ok(upStack(account, "production", first));
    account.changes = [];
    const run = await upStack(account, "production", { ...first, ...change });
    expect(String(run.error)).toMatch(error);
    expect(doChanges(account).filter((c) => c.op === "replace" || c.op === "delete")).toEqual([]);
  });

  test.each([
    ["droplet.image", { "nodehost:droplet": droplet({ image: "ubuntu-24-04-x64" }) }],
    ["ssh.publicKeys (a new deploy key)", { "nodehost:ssh": JSON.stringify({ allowFrom: ["203.0.113.10/32"], publicKeys: [stackPublicKey("rotated")] }) }],
  ])("%s: first-boot only, ignored by the droplet (no rebuild)", async (_key, change) => {
    const account = new FakeAccount();
    await ok(upStack(account, "production"));
    account.changes = [];
    await ok(upStack(account, "production", change));
    expect(doChanges(account).filter((c) => c.type === T.droplet || c.type === T.volume)).toEqual([]);
  });

  test("droplet.volumeSizeGb grows the volume in place; ipv6 false -> true updates the droplet in place", async () => {
    const account = new FakeAccount();
    await ok(upStack(account, "production"));
    account.changes = [];
    await ok(upStack(account, "production", { "nodehost:droplet": droplet({ volumeSizeGb: 80, ipv6: true }) }));
    expect(doChanges(account).filter((c) => c.type === T.droplet || c.type === T.volume).map((c) => [c.op, c.name, c.fields])).toEqual([
      ["update", "nodehost-production-data", ["size"]],
      ["update", "nodehost-production-droplet", ["ipv6"]],
    ]);
  });

  test("staging (not protected): a new VPC range rebuilds the droplet into it and keeps the volume", async () => {
    const account = new FakeAccount();
    for (const stack of ["production", "staging"]) await ok(upStack(account, stack));
    const volume = account.resourcesOf("staging").find((r) => r.type === T.volume)!.id;
    await ok(upStack(account, "staging", { "nodehost:droplet": droplet({ vpcIpRange: "10.30.0.0/20" }, "staging") }));
    const after = account.resourcesOf("staging");
    expect(after.find((r) => r.type === T.vpc)!.inputs.ipRange).toBe("10.30.0.0/20");
    expect(after.find((r) => r.type === T.droplet)!.inputs.volumeIds).toEqual([volume]);
    expect(account.hotDetaches).toEqual([]);
  });
});

describe("the fake refuses what the API refuses (each rule can fail)", () => {
  const opts = {};
  test("an uptime alert without a period", () => {
    const a = new FakeAccount();
    expect(() => a.register("s", T.uptimeAlert, "x", { checkId: "c", name: "x", type: "ssl_expiry", threshold: 14, comparison: "less_than", notifications: [{ emails: ["a@b.c"] }] }, opts))
      .toThrow(/400 Bad Request: period is required/);
  });

  test("a Project listing a VPC", () => {
    const a = new FakeAccount();
    expect(() => a.register("s", T.project, "p", { name: "p", resources: ["do:vpc:1234"] }, opts)).toThrow(/do:vpc:1234 is not a resource type projects support/);
  });

  test("a Project that names its reserved IP: created, then every update after a refresh fails with 412", async () => {
    const a = new FakeAccount();
    a.register("s", T.vpc, "v", { name: "v", region: "fra1" }, opts);
    const d = a.register("s", T.droplet, "d", { name: "d", region: "fra1", size: "s-1vcpu-1gb", image: "debian-13-x64" }, opts);
    const ip = a.register("s", T.reservedIp, "ip", { region: "fra1" }, opts);
    a.register("s", T.reservedIpAssignment, "as", { ipAddress: ip.id, dropletId: Number(d.id) }, opts);
    const inputs = { name: "p", resources: [`do:droplet:${d.id}`, ip.outputs.reservedIpUrn] };
    expect(ip.outputs.reservedIpUrn).toMatch(/^do:reservedip:/);
    a.register("s", T.project, "p", inputs, opts);
    a.finish("s");
    a.refresh("s");
    expect(() => a.register("s", T.project, "p", inputs, opts)).toThrow(/412 .*Cannot move a Reserved IP with an associated Droplet/);
  });

  test("a droplet delete with graceful shutdown under the provider's 60 s default", () => {
    const a = new FakeAccount();
    a.register("s", T.droplet, "d", { name: "d", region: "fra1", size: "s-1vcpu-1gb", image: "debian-13-x64", gracefulShutdown: true }, {});
    a.finish("s");
    expect(() => a.destroy("s")).toThrow(/to become off: timeout .*timeout: 60s/);
  });

  test("a VolumeAttachment removed before its droplet: the droplet's delete detaches again (422), after a hot unplug", () => {
    const a = new FakeAccount();
    const v = a.register("s", T.volume, "v", { name: "v", region: "fra1", size: 10 }, opts);
    const d = a.register("s", T.droplet, "d", { name: "d", region: "fra1", size: "s-1vcpu-1gb", image: "debian-13-x64", gracefulShutdown: true }, { customTimeouts: { delete: "10m" } });
    a.register("s", T.volumeAttachment, "att", { dropletId: Number(d.id), volumeId: v.id }, opts);
    a.finish("s");
    a.refresh("s");
    // The next program declares neither: the engine deletes the attachment (newest) first.
    expect(() => a.finish("s")).toThrow(/422 Error detaching the volumes from the droplet .*Attachment not found/);
    expect(a.hotDetaches).toEqual([`v from droplet ${d.id}`]);
  });

  test("a region that no longer takes droplets, and a second VPC of the same name", () => {
    const a = new FakeAccount();
    expect(() => a.register("s", T.droplet, "d", { name: "d", region: "sfo1", size: "s-1vcpu-1gb", image: "debian-13-x64" }, opts)).toThrow(/422 Region is not available: sfo1/);
    a.register("s", T.vpc, "v1", { name: "same", region: "fra1" }, opts);
    expect(() => a.register("t", T.vpc, "v2", { name: "same", region: "fra1" }, opts)).toThrow(/409 a VPC named same already exists/);
  });
});
