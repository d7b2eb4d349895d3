// The DigitalOcean layer per checked-in stack file, both stacks in one fake account in the README's
// order (production owns the domain, so it comes first): resource set, inputs, safety options.
import { beforeAll, describe, expect, test } from "vitest";
import { FakeAccount } from "./fake-do";
import { countByType, one, Recorded, Run, stackFileConfig, stackPublicKey, upStack } from "./harness";

/** A stack alone, in an account that already holds the domain (as a user's would for staging). */
async function runStack(stack: string, over: Record<string, string> = {}): Promise<Run> {
  const account = new FakeAccount();
  if (stack !== "production") account.addDomain("example.com");
  const run = await upStack(account, stack, over);
  if (run.error) throw run.error;
  return run;
}

const DROPLET = "digitalocean:index/droplet:Droplet";
const FIREWALL = "digitalocean:index/firewall:Firewall";
const RECORD = "digitalocean:index/dnsRecord:DnsRecord";
const STATEFUL = [
  "digitalocean:index/droplet:Droplet",
  "digitalocean:index/volume:Volume",
  "digitalocean:index/reservedIp:ReservedIp",
  "digitalocean:index/domain:Domain",
  "digitalocean:index/spacesBucket:SpacesBucket",
];

const COMMON_CLOUD = {
  "digitalocean:index/droplet:Droplet": 1,
  "digitalocean:index/firewall:Firewall": 1,
  "digitalocean:index/project:Project": 1,
  "digitalocean:index/reservedIp:ReservedIp": 1,
  "digitalocean:index/reservedIpAssignment:ReservedIpAssignment": 1,
  "digitalocean:index/spacesBucket:SpacesBucket": 1,
  "digitalocean:index/spacesKey:SpacesKey": 1,
  "digitalocean:index/sshKey:SshKey": 1,
  "digitalocean:index/tag:Tag": 1,
  "digitalocean:index/volume:Volume": 1,
  "digitalocean:index/vpc:Vpc": 1,
  "command:remote:Command": 9,
  "command:remote:CopyToRemote": 1,
  "random:index/randomId:RandomId": 1,
  // postgres, redis, basic auth, the backup passphrase, the point-in-time archive's cipher pass
  "random:index/randomPassword:RandomPassword": 5,
  "tls:index/privateKey:PrivateKey": 1,
};

function records(run: Run) {
  return run.custom
    .filter((r) => r.type === RECORD)
    .map((r) => ({ type: r.inputs.type, name: r.inputs.name, value: r.inputs.value, ttl: r.inputs.ttl }))
    .sort((a, b) => `${a.type}${a.name}`.localeCompare(`${b.type}${b.name}`));
}

let staging: Run;
let production: Run;
let account: FakeAccount;
const out = (run: Run) => run.result as Record<string, any>;
beforeAll(async () => {
  account = new FakeAccount();
  production = await upStack(account, "production");
  staging = await upStack(account, "staging");
  if (production.error) throw production.error;
  if (staging.error) throw staging.error;
});

describe("production (Pulumi.production.yaml)", () => {
  test("declares exactly this set of resources", () => {
    expect(countByType(production.custom)).toEqual({
      ...COMMON_CLOUD,
      "digitalocean:index/dnsRecord:DnsRecord": 2,
      "digitalocean:index/domain:Domain": 1,
      "digitalocean:index/monitorAlert:MonitorAlert": 3,
      "digitalocean:index/uptimeAlert:UptimeAlert": 3,
      "digitalocean:index/uptimeCheck:UptimeCheck": 2,
    });
  });

  test("the droplet: seed size and region, Debian 13, monitoring and DO backups on, firewall tag, cloud-init", () => {
    const d = one(production.custom, DROPLET).inputs;
    expect(d).toMatchObject({ size: "s-2vcpu-4gb", region: "fra1", image: "debian-13-x64", monitoring: true, backups: true, ipv6: false });
    expect(d.tags).toEqual(["nodehost-production"]);
    expect(d.userData).toContain("name: deploy");
    expect(d.userData).toContain(JSON.stringify(stackPublicKey("production")));
    expect(d.backupPolicy).toEqual({ plan: "weekly", weekday: "SUN", hour: 0 });
  });

  test("apex A to the reserved IP and www CNAME, TTL 600", () => {
    expect(records(production)).toEqual([
      { type: "A", name: "@", value: out(production).publicIp, ttl: 600 },
      { type: "CNAME", name: "www", value: "@", ttl: 600 },
    ]);
  });

  test("stateful resources are protected; the droplet ignores replacing changes", () => {
    for (const type of STATEFUL) expect([type, one(production.custom, type).opts.protect]).toEqual([type, true]);
    expect(one(production.custom, DROPLET).opts.ignoreChanges).toEqual(["userData", "sshKeys", "image"]);
  });

  test("a rebuilt droplet: the old one shuts down with the volume on it, then goes; 10 minutes to do so", () => {
    const d = one(production.custom, DROPLET);
    const volume = account.resourcesOf("production").find((r) => r.type === "digitalocean:index/volume:Volume")!;
    expect(d.inputs.volumeIds).toEqual([volume.id]);
    expect(d.inputs.gracefulShutdown).toBe(true);
    expect(d.opts).toMatchObject({ deleteBeforeReplace: true, customTimeouts: { delete: "10m" } });
    expect(one(production.custom, "digitalocean:index/reservedIpAssignment:ReservedIpAssignment").opts.deleteBeforeReplace).toBe(true);
  });

  test("the bucket is private and versioned; a deleted or overwritten backup stays for the remote retention (30 days), the current ones are the backup tool's", () => {
    const b = one(production.custom, "digitalocean:index/spacesBucket:SpacesBucket").inputs;
    expect(b).toMatchObject({ region: "fra1", acl: "private", name: "nodehost-production-backups-a1b2c3" });
    expect(one(production.custom, "digitalocean:index/spacesBucket:SpacesBucket").opts.replaceOnChanges).toEqual(["name"]);
    expect(b.versioning).toEqual({ enabled: true });
    expect(b.lifecycleRules).toEqual([{ enabled: true, noncurrentVersionExpiration: { days: 30 }, abortIncompleteMultipartUploadDays: 1 }]);
  });

  test("the host's Spaces key can read and write only the backup bucket", () => {
    const k = one(production.custom, "digitalocean:index/spacesKey:SpacesKey").inputs;
    expect(k.grants).toEqual([{ bucket: "nodehost-production-backups-a1b2c3", permission: "readwrite" }]);
  });

  test("alerts: CPU/memory/disk thresholds on the droplet, down and TLS expiry on the health URL, backup heartbeat", () => {
    const alerts = production.custom
      .filter((r) => r.type === "digitalocean:index/monitorAlert:MonitorAlert")
      .map((r) => [r.inputs.type, r.inputs.compare, r.inputs.value, r.inputs.entities, r.inputs.alerts.emails]);
    const id = out(production).dropletId;
    expect(alerts).toEqual([
      ["v1/insights/droplet/cpu", "GreaterThan", 85, [id], ["ops@example.com"]],
      ["v1/insights/droplet/memory_utilization_percent", "GreaterThan", 90, [id], ["ops@example.com"]],
      ["v1/insights/droplet/disk_utilization_percent", "GreaterThan", 85, [id], ["ops@example.com"]],
    ]);
    const checks = production.custom.filter((r) => r.type === "digitalocean:index/uptimeCheck:UptimeCheck").map((r) => r.inputs.target);
    expect(checks).toEqual(["https://example.com/api/health", "https://example.com/healthz/backup"]);
    const uptime = production.custom
      .filter((r) => r.type === "digitalocean:index/uptimeAlert:UptimeAlert")
      .map((r) => [r.name, r.inputs.type, r.inputs.comparison, r.inputs.threshold, r.inputs.period]);
    expect(uptime).toEqual([
      ["nodehost-production-down", "down", "greater_than", 1, "2m"],
      ["nodehost-production-tls-expiry", "ssl_expiry", "less_than", 14, "10m"],
      ["nodehost-production-backup-stale", "down", "greater_than", 1, "10m"],
    ]);
  });

  test("the Project groups droplet, volume, domain and bucket: only kinds the Projects API takes", () => {
    const p = one(production.custom, "digitalocean:index/project:Project").inputs;
    const ids = Object.fromEntries(account.resourcesOf("production").map((r) => [r.type.split(":").pop(), r.id]));
    expect(p.environment).toBe("Production");
    expect(p.resources).toEqual([
      `do:droplet:${ids.Droplet}`,
      `do:volume:${ids.Volume}`,
      "do:domain:example.com",
      "do:space:nodehost-production-backups-a1b2c3",
    ]);
  });

  test("outputs: IP, URL, SSH command, bucket; the basic-auth password only as a secret", async () => {
    const out = production.result as Record<string, unknown>;
    expect(out.publicIp).toMatch(/^198\.51\.100\.\d+$/);
    expect(out).toMatchObject({
      url: "https://example.com",
      urls: ["https://example.com", "https://www.example.com"],
      sshCommand: `ssh deploy@${out.publicIp}`,
      bucketName: "nodehost-production-backups-a1b2c3",
    });
  });
});

describe("staging (Pulumi.staging.yaml) differs from production where it should", () => {
  test("declares exactly this set of resources: no domain of its own, no uptime checks", () => {
    expect(countByType(staging.custom)).toEqual({
      ...COMMON_CLOUD,
      "digitalocean:index/dnsRecord:DnsRecord": 1,
      "digitalocean:index/monitorAlert:MonitorAlert": 3,
    });
  });

  test("a smaller droplet without DO backups, still monitored", () => {
    expect(one(staging.custom, DROPLET).inputs).toMatchObject({ size: "s-1vcpu-2gb", backups: false, monitoring: true });
  });

  test("only an A record for the staging subdomain, in the existing domain", () => {
    expect(records(staging)).toEqual([{ type: "A", name: "staging", value: out(staging).publicIp, ttl: 600 }]);
    expect(one(staging.custom, RECORD).inputs.domain).toBe("example.com");
  });

  test("nothing is protected (a staging stack can be torn down), but the droplet still ignores replacing changes", () => {
    for (const r of staging.custom) expect([r.type, r.opts.protect ?? false]).toEqual([r.type, false]);
    expect(one(staging.custom, DROPLET).opts.ignoreChanges).toEqual(["userData", "sshKeys", "image"]);
  });

  test("deleted or overwritten backups stay for the staging retention (14 days)", () => {
    const b = one(staging.custom, "digitalocean:index/spacesBucket:SpacesBucket").inputs;
    expect(b.lifecycleRules).toEqual([{ enabled: true, noncurrentVersionExpiration: { days: 14 }, abortIncompleteMultipartUploadDays: 1 }]);
  });
});

describe("the firewall", () => {
  const inbound = (r: Recorded) =>
    (r.inputs.inboundRules as { protocol: string; portRange?: string; sourceAddresses: string[] }[]).map((x) => [
      x.protocol, x.portRange ?? "", x.sourceAddresses,
    ]);
  const ports = (r: Recorded) => inbound(r).filter(([p]) => p !== "icmp").map(([, range]) => range as string);

  test.each([["staging"], ["production"]])("%s: 80/443 from anywhere, 22 only from the allow-list, nothing else", (stack) => {
    const fw = one(stack === "staging" ? staging.custom : production.custom, FIREWALL);
    expect(inbound(fw)).toEqual([
      ["tcp", "80", ["0.0.0.0/0", "::/0"]],
      ["tcp", "443", ["0.0.0.0/0", "::/0"]],
      ["tcp", "22", ["203.0.113.10/32"]],
      ["icmp", "", ["0.0.0.0/0", "::/0"]],
    ]);
    expect(fw.inputs.tags).toEqual([`nodehost-${stack}`]);
  });

  test("never opens 5432, 6379 or any port but 22/80/443, whatever the SSH settings", async () => {
    const variants = [
      { allowFrom: [] },
      { allowFrom: ["198.51.100.0/24", "2001:db8::/32"] },
      { allowFrom: [], openToWorld: true },
    ];
    for (const ssh of variants) {
      const run = await runStack("production", { "nodehost:ssh": JSON.stringify({ ...ssh, publicKeys: [stackPublicKey("production")] }) });
      const open = ports(one(run.custom, FIREWALL));
      expect(open.every((p) => ["22", "80", "443"].includes(p))).toBe(true);
      expect(open).not.toContain("5432");
      expect(open).not.toContain("6379");
    }
  });

  test("SSH follows the allow-list: closed when empty, world only when openToWorld says so", async () => {
    const sshRule = async (ssh: object) => {
      const run = await runStack("staging", { "nodehost:ssh": JSON.stringify({ ...ssh, publicKeys: [stackPublicKey("staging")] }) });
      return inbound(one(run.custom, FIREWALL)).filter(([, range]) => range === "22");
    };
    expect(await sshRule({ allowFrom: [] })).toEqual([]);
    expect(await sshRule({ allowFrom: ["198.51.100.4/32"] })).toEqual([["tcp", "22", ["198.51.100.4/32"]]]);
    expect(await sshRule({ openToWorld: true })).toEqual([["tcp", "22", ["0.0.0.0/0", "::/0"]]]);
  });
});

describe("IPv6", () => {
  test("adds an AAAA record with the droplet's address when on", async () => {
    const run = await runStack("production", {
      "nodehost:droplet": JSON.stringify({ ...JSON.parse(stackFileConfig("production")["nodehost:droplet"]), ipv6: true }),
    });
    expect(one(run.custom, DROPLET).inputs.ipv6).toBe(true);
    const aaaa = records(run).filter((r) => r.type === "AAAA");
    expect(aaaa).toEqual([{ type: "AAAA", name: "@", value: expect.stringMatching(/^2001:db8::\d+$/), ttl: 600 }]);
  });
});
