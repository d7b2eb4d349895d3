// Each rule of the nodehost policy pack rejects a resource that breaks it and passes one that keeps it.
import { describe, expect, test } from "vitest";
import {
  bucketLifecycle,
  dropletMonitoring,
  firewallNoDatabasePorts,
  firewallNoWorldSsh,
  policies,
  portSpan,
  stackOf,
  statefulProtected,
  TYPES,
} from "../../policy/rules";
import { violations } from "./harness";

const ANYWHERE = ["0.0.0.0/0", "::/0"];
const web = [
  { protocol: "tcp", portRange: "80", sourceAddresses: ANYWHERE },
  { protocol: "tcp", portRange: "443", sourceAddresses: ANYWHERE },
  { protocol: "icmp", sourceAddresses: ANYWHERE },
];
const firewall = (extra: object[]) => ({ type: TYPES.firewall, name: "fw", props: { inboundRules: [...web, ...extra] } });

describe("the pack", () => {
  test("lists five rules, every one mandatory, with unique names", () => {
    expect(policies.map((p) => p.name)).toEqual([
      "production-stateful-protected",
      "firewall-no-database-ports",
      "production-firewall-no-world-ssh",
      "production-droplet-monitoring",
      "production-bucket-lifecycle-expiry",
    ]);
    expect(policies.every((p) => p.enforcementLevel === "mandatory")).toBe(true);
  });

  test("reads the stack from the URN", () => {
    expect(stackOf("urn:pulumi:production::nodehost::digitalocean:index/volume:Volume::v")).toBe("production");
    expect(stackOf("urn:pulumi:staging::nodehost::a$b::c")).toBe("staging");
  });

  test.each([
    ["22", [22, 22]],
    ["8000-9000", [8000, 9000]],
    ["1-65535", [1, 65535]],
    ["all", [1, 65535]],
    ["0", [1, 65535]],
    [undefined, [1, 65535]],
    ["", [1, 65535]],
  ])("port range %j spans %j", (range, span) => {
    expect(portSpan(range)).toEqual(span);
  });
});

describe("production-stateful-protected", () => {
  test.each([
    [TYPES.droplet, "droplet"],
    [TYPES.volume, "data volume"],
    [TYPES.reservedIp, "reserved IP"],
    [TYPES.bucket, "backup bucket"],
    [TYPES.domain, "DNS zone"],
    [TYPES.databaseCluster, "managed database cluster"],
    [TYPES.databaseDb, "managed database"],
  ])("an unprotected %s in production is a violation naming it", async (type, what) => {
    expect(await violations(statefulProtected, { type, name: "x", props: {}, protect: false })).toEqual([
      `the ${what} x is not protected: production stateful resources need the resource option protect: true ` +
        `(nodehost:protect: true in Pulumi.production.yaml)`,
    ]);
  });

  test.each([TYPES.droplet, TYPES.volume, TYPES.reservedIp, TYPES.bucket, TYPES.domain, TYPES.databaseCluster, TYPES.databaseDb])("a protected %s passes", async (type) => {
    expect(await violations(statefulProtected, { type, props: {}, protect: true })).toEqual([]);
  });

  test("staging may leave them unprotected; other types are not its business", async () => {
    expect(await violations(statefulProtected, { type: TYPES.volume, props: {}, stack: "staging" })).toEqual([]);
    expect(await violations(statefulProtected, { type: "digitalocean:index/tag:Tag", props: {} })).toEqual([]);
  });
});

describe("firewall-no-database-ports", () => {
  test.each([
    [{ protocol: "tcp", portRange: "5432", sourceAddresses: ["10.0.0.0/8"] }, "5432"],
    [{ protocol: "tcp", portRange: "6379", sourceAddresses: ANYWHERE }, "6379"],
    [{ protocol: "tcp", portRange: "5000-6000", sourceAddresses: ["203.0.113.10/32"] }, "5432"],
    [{ protocol: "udp", portRange: "1-65535", sourceAddresses: ANYWHERE }, "5432 and 6379"],
    [{ protocol: "TCP", sourceAddresses: ANYWHERE }, "5432 and 6379"],
  ])("%j opens %s: a violation, on staging too", async (rule, ports) => {
    for (const stack of ["production", "staging"]) {
      const found = await violations(firewallNoDatabasePorts, { ...firewall([rule]), stack });
      expect(found).toHaveLength(1);
      expect(found[0]).toMatch(new RegExp(`^the firewall fw opens ${ports} inbound \\(`));
      expect(found[0]).toContain("PostgreSQL and Redis listen on 127.0.0.1 only and must stay closed");
    }
  });

  test("80/443/ICMP, 22 from an allow-list, a deny rule and ranges beside the ports pass", async () => {
    const keeps = firewall([
      { protocol: "tcp", portRange: "22", sourceAddresses: ["203.0.113.10/32"] },
      { protocol: "tcp", portRange: "5433-6378", sourceAddresses: ANYWHERE },
      { protocol: "tcp", portRange: "5432", sourceAddresses: ANYWHERE, action: "deny" },
    ]);
    expect(await violations(firewallNoDatabasePorts, keeps)).toEqual([]);
  });
});

describe("production-firewall-no-world-ssh", () => {
  test.each([
    [{ protocol: "tcp", portRange: "22", sourceAddresses: ["0.0.0.0/0"] }],
    [{ protocol: "tcp", portRange: "22", sourceAddresses: ["203.0.113.10/32", "::/0"] }],
    [{ protocol: "tcp", portRange: "1-1024", sourceAddresses: ["0.0.0.0/0"] }],
  ])("%j is a violation in production", async (rule) => {
    const found = await violations(firewallNoWorldSsh, firewall([rule]));
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/^the firewall fw opens SSH to the world \(tcp .* from .*\): production allows 22 only from nodehost:ssh.allowFrom$/);
  });

  test("22 from an allow-list passes; 80/443 from anywhere pass; staging may open 22 explicitly", async () => {
    const allowList = firewall([{ protocol: "tcp", portRange: "22", sourceAddresses: ["203.0.113.10/32"] }]);
    expect(await violations(firewallNoWorldSsh, allowList)).toEqual([]);
    const worldSsh = firewall([{ protocol: "tcp", portRange: "22", sourceAddresses: ANYWHERE }]);
    expect(await violations(firewallNoWorldSsh, { ...worldSsh, stack: "staging" })).toEqual([]);
  });
});

describe("production-droplet-monitoring", () => {
  test.each([[false], [undefined]])("monitoring %s is a violation", async (monitoring) => {
    expect(await violations(dropletMonitoring, { type: TYPES.droplet, name: "d", props: { monitoring } })).toEqual([
      `the droplet d has monitoring ${monitoring ?? "unset"}: production droplets need monitoring: true ` +
        `or the CPU, memory and disk alerts never fire`,
    ]);
  });

  test("monitoring true passes", async () => {
    expect(await violations(dropletMonitoring, { type: TYPES.droplet, props: { monitoring: true } })).toEqual([]);
  });
});

describe("production-bucket-lifecycle-expiry", () => {
  const bucket = (lifecycleRules: unknown) => ({ type: TYPES.bucket, name: "b", props: { lifecycleRules } });
  const message =
    "the bucket b has no enabled lifecycle rule with an expiration: off-site backups would pile up forever " +
    "(set nodehost:backup.retentionRemoteDays)";

  test.each([
    ["no rules", undefined],
    ["a disabled rule", [{ enabled: false, expiration: { days: 30 } }]],
    ["an enabled rule without expiration", [{ enabled: true, abortIncompleteMultipartUploadDays: 1 }]],
    ["an expiration of 0 days", [{ enabled: true, expiration: { days: 0 } }]],
  ])("%s is a violation", async (_, rules) => {
    expect(await violations(bucketLifecycle, bucket(rules))).toEqual([message]);
  });

  test("an enabled rule expiring after days, or at a date, passes", async () => {
    expect(await violations(bucketLifecycle, bucket([{ enabled: true, expiration: { days: 30 } }]))).toEqual([]);
    expect(await violations(bucketLifecycle, bucket([{ enabled: true, expiration: { date: "2030-01-01" } }]))).toEqual([]);
  });

  test("a versioned bucket needs a rule that expires noncurrent versions, and passes with one (as the program makes it)", async () => {
    const versioned = (lifecycleRules: unknown) => ({ type: TYPES.bucket, name: "b", props: { versioning: { enabled: true }, lifecycleRules } });
    const noncurrent =
      "the versioned bucket b has no enabled lifecycle rule expiring noncurrent versions: deleted backups would pile up forever " +
      "(set nodehost:backup.retentionRemoteDays)";
    expect(await violations(bucketLifecycle, versioned([{ enabled: true, expiration: { days: 30 } }]))).toEqual([noncurrent]);
    expect(await violations(bucketLifecycle, versioned([{ enabled: false, noncurrentVersionExpiration: { days: 30 } }]))).toEqual([noncurrent]);
    expect(await violations(bucketLifecycle, versioned([{ enabled: true, noncurrentVersionExpiration: { days: 30 }, abortIncompleteMultipartUploadDays: 1 }]))).toEqual([]);
  });
});
