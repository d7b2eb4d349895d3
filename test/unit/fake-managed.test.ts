// The fake account's rules for DigitalOcean's managed pieces (database clusters with their dbs,
// users and firewall; certificates; load balancers), each played directly through
// FakeAccount.register / finish / refresh / destroy. Every test fails if its rule is taken out of
// fake-do.ts; the sources are cited there.
import { describe, expect, test } from "vitest";
import { DO_TYPES as T, FakeAccount } from "./fake-do";

const opts = {};
const pg = (over: object = {}) => ({ name: "app-pg", engine: "pg", version: "16", size: "db-s-1vcpu-1gb", nodeCount: 1, region: "fra1", ...over });
const valkey = (over: object = {}) => ({ name: "app-cache", engine: "valkey", version: "8", size: "db-s-1vcpu-1gb", nodeCount: 1, region: "fra1", ...over });
const http = { entryProtocol: "http", entryPort: 80, targetProtocol: "http", targetPort: 80 };
const https = (over: object = {}) => ({ entryProtocol: "https", entryPort: 443, targetProtocol: "http", targetPort: 80, ...over });
const lb = (over: object = {}) => ({ name: "app-lb", region: "fra1", dropletTag: "app", forwardingRules: [http], ...over });
const PEM = (kind: string) => `-----BEGIN ${kind}-----\nMIIBfake\n-----END ${kind}-----\n`;
const ops = (a: FakeAccount) => a.changes.map((c) => [c.op, c.name, c.fields]);

/** One `up` of a stack: the registrations, then the engine's deletes. */
function up(a: FakeAccount, stack: string, regs: [string, string, Record<string, any>, object?][]) {
  const out = regs.map(([type, name, inputs, o]) => a.register(stack, type, name, inputs, o ?? opts));
  a.finish(stack);
  return out;
}

describe("database clusters", () => {
  test("outputs as the provider gives them: pg on 25060 as doadmin in defaultdb, valkey on 25061, URNs do:dbaas:<id>", () => {
    const a = new FakeAccount();
    const p = a.register("s", T.databaseCluster, "pg", pg(), opts);
    expect(p.outputs).toMatchObject({ port: 25060, user: "doadmin", database: "defaultdb", clusterUrn: `do:dbaas:${p.id}` });
    expect(p.outputs.privateHost).toBe(`private-${p.outputs.host}`);
    expect(p.outputs.uri).toBe(`postgres://doadmin:${p.outputs.password}@${p.outputs.host}:25060/defaultdb?sslmode=require`);
    expect(p.outputs.privateUri).toContain(`@private-${p.outputs.host}:25060/`);
    const v = a.register("s", T.databaseCluster, "cache", valkey(), opts);
    expect(v.outputs).toMatchObject({ port: 25061, clusterUrn: `do:dbaas:${v.id}` });
    expect(v.id).not.toBe(p.id);
    // Both kinds go into a Project.
    a.register("s", T.project, "proj", { name: "proj", resources: [p.outputs.clusterUrn, v.outputs.clusterUrn] }, opts);
  });

  test("engine pg -> mysql replaces the cluster (delete before replace: the name is taken until the old one goes)", () => {
    const a = new FakeAccount();
    const [first] = up(a, "s", [[T.databaseCluster, "db", pg()]]);
    a.changes = [];
    const [second] = up(a, "s", [[T.databaseCluster, "db", pg({ engine: "mysql", version: "8" }), { deleteBeforeReplace: true }]]);
    expect(ops(a)).toEqual([["replace", "db", ["engine"]]]);
    expect(second.id).not.toBe(first.id);
  });

  test("engine pg -> mysql with the default create-before-delete: the replacement's name clashes (409) and the old cluster stays", () => {
    const a = new FakeAccount();
    const [first] = up(a, "s", [[T.databaseCluster, "db", pg()]]);
    expect(() => a.register("s", T.databaseCluster, "db", pg({ engine: "mysql", version: "8" }), opts)).toThrow(/409 a database cluster named app-pg already exists/);
    expect(a.resourcesOf("s")).toEqual([expect.objectContaining({ id: first.id, inputs: expect.objectContaining({ engine: "pg" }) })]);
  });

  test("redis -> valkey (and back) is no change: neither a replace nor an update", () => {
    const a = new FakeAccount();
    // A Redis cluster made before caching creates stopped (2025-04-30).
    a.now = new Date("2025-01-15T00:00:00Z");
    const [redis] = up(a, "s", [[T.databaseCluster, "cache", valkey({ engine: "redis", version: "7" })]]);
    a.now = new Date();
    a.changes = [];
    const [moved] = up(a, "s", [[T.databaseCluster, "cache", valkey({ engine: "valkey", version: "7" })]]);
    expect(a.changes).toEqual([]);
    expect(moved.id).toBe(redis.id);
    const [back] = up(a, "s", [[T.databaseCluster, "cache", valkey({ engine: "redis", version: "7" })]]);
    expect(a.changes).toEqual([]);
    expect(back.id).toBe(redis.id);
  });

  test("a new redis cluster is refused since 2025-04-30; valkey is taken", () => {
    const a = new FakeAccount();
    expect(() => a.register("s", T.databaseCluster, "c", valkey({ engine: "redis", version: "7" }), opts)).toThrow(/422 Caching cluster creates are no longer supported/);
    a.register("s", T.databaseCluster, "c", valkey(), opts);
  });

  test("eviction_policy only on a caching engine, and only the API's values", () => {
    const a = new FakeAccount();
    expect(() => a.register("s", T.databaseCluster, "pg", pg({ evictionPolicy: "allkeys_lru" }), opts)).toThrow(/eviction_policy is only supported for Redis or Valkey Database Clusters/);
    expect(() => a.register("s", T.databaseCluster, "c", valkey({ evictionPolicy: "allkeys-lru" }), opts)).toThrow(/422 eviction_policy allkeys-lru is invalid/);
    a.register("s", T.databaseCluster, "c", valkey({ evictionPolicy: "allkeys_lru" }), opts);
    // Added later to a pg cluster: the provider's plan check runs on the update too.
    up(a, "t", [[T.databaseCluster, "pg", pg()]]);
    expect(() => a.register("t", T.databaseCluster, "pg", pg({ evictionPolicy: "noeviction" }), opts)).toThrow(/eviction_policy is only supported/);
  });

  test("sql_mode only on mysql", () => {
    const a = new FakeAccount();
    expect(() => a.register("s", T.databaseCluster, "pg", pg({ sqlMode: "ANSI" }), opts)).toThrow(/sql_mode is only supported for MySQL/);
  });

  test("version is required in practice: on create, and when dropped later (the message names the stored one)", () => {
    const a = new FakeAccount();
    const { version: _v, ...noVersion } = pg();
    expect(() => a.register("s", T.databaseCluster, "pg", noVersion, opts)).toThrow(/The argument "version" is required, but no definition was found/);
    up(a, "s", [[T.databaseCluster, "pg", pg()]]);
    expect(() => a.register("s", T.databaseCluster, "pg", noVersion, opts)).toThrow(/"version" is now required. Set the pg version to the value saved to state: 16/);
  });

  test("version: a caching cluster's stored version above the config's is no change; pg's version upgrades in place", () => {
    const a = new FakeAccount();
    up(a, "s", [[T.databaseCluster, "c", valkey({ version: "8" })], [T.databaseCluster, "pg", pg({ version: "15" })]]);
    a.changes = [];
    up(a, "s", [[T.databaseCluster, "c", valkey({ version: "7" })], [T.databaseCluster, "pg", pg({ version: "16" })]]);
    expect(ops(a)).toEqual([["update", "pg", ["version"]]]);
  });

  test("region is not ForceNew: a change migrates in place; a region without the engine is refused", () => {
    const a = new FakeAccount();
    const [first] = up(a, "s", [[T.databaseCluster, "pg", pg()]]);
    a.changes = [];
    const [moved] = up(a, "s", [[T.databaseCluster, "pg", pg({ region: "ams3" })]]);
    expect(ops(a)).toEqual([["update", "pg", ["region"]]]);
    expect(moved.id).toBe(first.id);
    expect(() => a.register("t", T.databaseCluster, "c", valkey({ region: "nyc2" }), opts)).toThrow(/422 Region nyc2 is not available for valkey/);
    expect(() => a.register("t", T.databaseCluster, "p", pg({ name: "other", region: "sfo1" }), opts)).toThrow(/422 Region sfo1 is not available for pg/);
  });

  test("name, private network and project replace; an unknown engine is refused", () => {
    const a = new FakeAccount();
    const vpcs: [string, string, Record<string, any>][] = [[T.vpc, "v", { name: "v", region: "fra1" }], [T.vpc, "v2", { name: "v2", region: "fra1" }]];
    const [v, v2] = up(a, "s", [...vpcs, [T.databaseCluster, "pg", pg()]]);
    a.changes = [];
    // Same name: the old cluster must go first (see the 409 above).
    const dbr = { deleteBeforeReplace: true };
    up(a, "s", [...vpcs, [T.databaseCluster, "pg", pg({ privateNetworkUuid: v.id }), dbr]]);
    a.changes = [];
    up(a, "s", [...vpcs, [T.databaseCluster, "pg", pg({ privateNetworkUuid: v2.id }), dbr]]);
    expect(ops(a)).toEqual([["replace", "pg", ["privateNetworkUuid"]]]);
    a.changes = [];
    up(a, "s", [...vpcs, [T.databaseCluster, "pg", pg({ privateNetworkUuid: v2.id, projectId: "p1" }), dbr]]);
    expect(ops(a)).toEqual([["replace", "pg", ["projectId"]]]);
    a.changes = [];
    up(a, "s", [...vpcs, [T.databaseCluster, "pg", pg({ name: "app-pg-2", privateNetworkUuid: v2.id, projectId: "p1" })]]);
    expect(ops(a)).toEqual([["replace", "pg", ["name"]]]);
    expect(() => a.register("t", T.databaseCluster, "x", pg({ name: "x", engine: "postgres" }), opts)).toThrow(/422 engine postgres is invalid/);
  });

  test("the private network must be a VPC in the cluster's region", () => {
    const a = new FakeAccount();
    const v = a.register("s", T.vpc, "v", { name: "v", region: "ams3" }, opts);
    expect(() => a.register("s", T.databaseCluster, "pg", pg({ privateNetworkUuid: v.id }), opts)).toThrow(/422 vpc v is in ams3, not fra1/);
    a.register("s", T.databaseCluster, "pg", pg({ region: "ams3", privateNetworkUuid: v.id }), opts);
  });

  test("cluster names are unique in the account (409)", () => {
    const a = new FakeAccount();
    a.register("s", T.databaseCluster, "pg", pg(), opts);
    expect(() => a.register("t", T.databaseCluster, "pg", pg(), opts)).toThrow(/409 a database cluster named app-pg already exists/);
  });
});

describe("a cluster's dbs, users and firewall", () => {
  test("each needs its cluster (404)", () => {
    const a = new FakeAccount();
    expect(() => a.register("s", T.databaseDb, "db", { clusterId: "no-such", name: "app" }, opts)).toThrow(/404 Error creating Database DB/);
    expect(() => a.register("s", T.databaseUser, "u", { clusterId: "no-such", name: "app" }, opts)).toThrow(/404 Error creating Database User/);
    expect(() => a.register("s", T.databaseFirewall, "fw", { clusterId: "no-such", rules: [{ type: "tag", value: "app" }] }, opts)).toThrow(/404 Error creating DatabaseFirewall/);
  });

  test("a db and a user on pg; ids as the provider makes them; the user has a password; both ForceNew on name", () => {
    const a = new FakeAccount();
    const cluster = a.register("s", T.databaseCluster, "pg", pg(), opts).id;
    const db = a.register("s", T.databaseDb, "db", { clusterId: cluster, name: "app" }, opts);
    const u = a.register("s", T.databaseUser, "u", { clusterId: cluster, name: "app" }, opts);
    a.finish("s");
    expect(db.id).toBe(`${cluster}/database/app`);
    expect(u.id).toBe(`${cluster}/user/app`);
    expect(u.outputs).toMatchObject({ role: "normal", password: expect.stringMatching(/.+/) });
    a.changes = [];
    up(a, "s", [[T.databaseCluster, "pg", pg()], [T.databaseDb, "db", { clusterId: cluster, name: "app2" }], [T.databaseUser, "u", { clusterId: cluster, name: "app" }]]);
    expect(ops(a)).toEqual([["replace", "db", ["name"]]]);
  });

  test("no dbs and no users on a caching cluster", () => {
    const a = new FakeAccount();
    const c = a.register("s", T.databaseCluster, "c", valkey(), opts);
    expect(() => a.register("s", T.databaseDb, "db", { clusterId: c.id, name: "app" }, opts)).toThrow(/database management is not supported for Caching or Valkey clusters/);
    expect(() => a.register("s", T.databaseUser, "u", { clusterId: c.id, name: "app" }, opts)).toThrow(/user management is not supported for Caching or Valkey clusters/);
  });

  test("one firewall per cluster: a second on the same cluster is refused, and says why", () => {
    const a = new FakeAccount();
    const p = a.register("s", T.databaseCluster, "pg", pg(), opts);
    const c = a.register("s", T.databaseCluster, "c", valkey(), opts);
    a.register("s", T.databaseFirewall, "fw1", { clusterId: p.id, rules: [{ type: "tag", value: "app" }] }, opts);
    expect(() => a.register("s", T.databaseFirewall, "fw2", { clusterId: p.id, rules: [{ type: "ip_addr", value: "203.0.113.7" }] }, opts))
      .toThrow(/already has a DatabaseFirewall .*replaces the cluster's whole rule set, so a second would silently drop the first one's rules/);
    a.register("s", T.databaseFirewall, "fw2", { clusterId: c.id, rules: [{ type: "tag", value: "app" }] }, opts);
    a.finish("s");
    // Once the first is gone (no longer declared), another may take the cluster.
    up(a, "s", [[T.databaseCluster, "pg", pg()], [T.databaseCluster, "c", valkey()], [T.databaseFirewall, "fw2", { clusterId: c.id, rules: [{ type: "tag", value: "app" }] }]]);
    a.register("s", T.databaseFirewall, "fw3", { clusterId: p.id, rules: [{ type: "tag", value: "app" }] }, opts);
  });

  test("a firewall's rules: the schema's types only, no IPv6 address", () => {
    const a = new FakeAccount();
    const p = a.register("s", T.databaseCluster, "pg", pg(), opts);
    expect(() => a.register("s", T.databaseFirewall, "fw", { clusterId: p.id, rules: [{ type: "cidr", value: "10.0.0.0/8" }] }, opts)).toThrow(/expected rule.type to be one of \[ip_addr droplet k8s tag app\], got cidr/);
    expect(() => a.register("s", T.databaseFirewall, "fw", { clusterId: p.id, rules: [{ type: "ip_addr", value: "2001:db8::1" }] }, opts)).toThrow(/422 2001:db8::1: IPv6 addresses cannot be trusted sources/);
  });

  test("a deleted cluster takes its db, user and firewall with it: their deletes then fail (404) until a refresh drops them", () => {
    const a = new FakeAccount();
    const [c] = up(a, "a", [[T.databaseCluster, "pg", pg()]]);
    up(a, "b", [
      [T.databaseDb, "db", { clusterId: c.id, name: "app" }],
      [T.databaseUser, "u", { clusterId: c.id, name: "app" }],
      [T.databaseFirewall, "fw", { clusterId: c.id, rules: [{ type: "tag", value: "app" }] }],
    ]);
    up(a, "a", []); // stack a no longer declares its cluster
    expect(() => a.destroy("b")).toThrow(/deleting fw: 404 .*database cluster/);
    a.refresh("b");
    expect(a.resourcesOf("b")).toEqual([]);
  });
});

describe("certificates", () => {
  test("lets_encrypt: every domain must be in a domain the account hosts", () => {
    const a = new FakeAccount();
    expect(() => a.register("s", T.certificate, "cert", { name: "c", type: "lets_encrypt", domains: ["www.example.com"] }, opts))
      .toThrow(/422 Let's Encrypt needs the domains' DNS managed by DigitalOcean: www.example.com is in no domain of this account/);
    a.register("s", T.domain, "d", { name: "example.com" }, opts);
    const c = a.register("s", T.certificate, "cert", { name: "c", type: "lets_encrypt", domains: ["example.com", "www.example.com", "*.example.com"] }, opts);
    expect(c.id).toBe("c");
    expect(c.outputs).toMatchObject({ name: "c", uuid: expect.stringMatching(/^[0-9a-f]{8}-/) });
    expect(() => a.register("s", T.certificate, "c2", { name: "c2", type: "lets_encrypt", domains: ["example.org"] }, opts)).toThrow(/example.org is in no domain/);
  });

  test("what each type needs: lets_encrypt its domains, custom its PEM key and certificate (and no domains)", () => {
    const a = new FakeAccount();
    expect(() => a.register("s", T.certificate, "c", { name: "c", type: "lets_encrypt" }, opts)).toThrow(/`domains` is required for when type is `lets_encrypt`/);
    expect(() => a.register("s", T.certificate, "c", { name: "c", leafCertificate: PEM("CERTIFICATE") }, opts)).toThrow(/`private_key` is required for when type is `custom` or empty/);
    expect(() => a.register("s", T.certificate, "c", { name: "c", type: "custom", privateKey: PEM("PRIVATE KEY") }, opts)).toThrow(/`leaf_certificate` is required/);
    expect(() => a.register("s", T.certificate, "c", { name: "c", type: "custom", privateKey: "not a pem", leafCertificate: PEM("CERTIFICATE") }, opts)).toThrow(/422 privateKey is not PEM-formatted/);
    expect(() => a.register("s", T.certificate, "c", { name: "c", type: "custom", privateKey: PEM("PRIVATE KEY"), leafCertificate: PEM("CERTIFICATE"), domains: ["example.com"] }, opts)).toThrow(/"domains": conflicts with privateKey/);
    expect(() => a.register("s", T.certificate, "c", { name: "c", type: "acme", domains: ["example.com"] }, opts)).toThrow(/expected type to be one of \[custom lets_encrypt\]/);
    const c = a.register("s", T.certificate, "c", { name: "c", type: "custom", privateKey: PEM("PRIVATE KEY"), leafCertificate: PEM("CERTIFICATE") }, opts);
    expect(c.outputs.privateKey).toMatch(/^[0-9a-f]{40}$/);
  });

  test("names are unique in the account (409); every argument replaces", () => {
    const a = new FakeAccount();
    a.addDomain("example.com");
    up(a, "s", [[T.certificate, "cert", { name: "c", type: "lets_encrypt", domains: ["example.com"] }]]);
    expect(() => a.register("t", T.certificate, "cert", { name: "c", type: "lets_encrypt", domains: ["www.example.com"] }, opts)).toThrow(/409 a certificate named c already exists/);
    a.changes = [];
    up(a, "s", [[T.certificate, "cert", { name: "c-2", type: "lets_encrypt", domains: ["example.com", "www.example.com"] }]]);
    expect(ops(a)).toEqual([["replace", "cert", ["name", "domains"]]]);
  });

  test("a certificate a load balancer still uses cannot be deleted (the provider retries the 403 until its timeout)", () => {
    const a = new FakeAccount();
    a.addDomain("example.com");
    const cert = { name: "c1", type: "lets_encrypt", domains: ["example.com"] };
    up(a, "s", [[T.certificate, "cert", cert], [T.loadBalancer, "lb", lb({ forwardingRules: [https({ certificateName: "c1" })] })]]);
    // The next program drops the certificate but the balancer still names it.
    a.register("s", T.loadBalancer, "lb", lb({ forwardingRules: [https({ certificateName: "c1" })] }), opts);
    expect(() => a.finish("s")).toThrow(/Error deleting Certificate: timeout waiting to delete certificate "c1" after load balancers released it .*waited 900s/);
    // Renamed the way the provider's docs say: the new one first, the balancer moved to it, the old one deleted.
    a.changes = [];
    up(a, "s", [[T.certificate, "cert", { ...cert, name: "c2" }], [T.loadBalancer, "lb", lb({ forwardingRules: [https({ certificateName: "c2" })] })]]);
    expect(ops(a)).toEqual([["replace", "cert", ["name"]], ["update", "lb", ["forwardingRules"]]]);
  });
});

describe("load balancers", () => {
  test("outputs: an address of its own (192.0.2.0/24, not a droplet's), do:loadbalancer:<id>, active", () => {
    const a = new FakeAccount();
    const d = a.register("s", T.droplet, "d", { name: "d", region: "fra1", size: "s-1vcpu-1gb", image: "debian-13-x64" }, opts);
    const l = a.register("s", T.loadBalancer, "lb", lb(), opts);
    expect(l.outputs).toMatchObject({ loadBalancerUrn: `do:loadbalancer:${l.id}`, status: "active", ip: expect.stringMatching(/^192\.0\.2\.\d+$/) });
    expect(l.outputs.ip).not.toBe(d.outputs.ipv4Address);
    a.register("s", T.project, "p", { name: "p", resources: [l.outputs.loadBalancerUrn] }, opts);
  });

  test("droplet_tag conflicts with droplet_ids", () => {
    const a = new FakeAccount();
    expect(() => a.register("s", T.loadBalancer, "lb", lb({ dropletIds: [300000001] }), opts)).toThrow(/"droplet_ids": conflicts with droplet_tag/);
    a.register("s", T.loadBalancer, "lb", lb({ dropletTag: undefined, dropletIds: [300000001] }), opts);
  });

  test("an https rule that terminates TLS needs a certificate, one that exists; passthrough needs none", () => {
    const a = new FakeAccount();
    expect(() => a.register("s", T.loadBalancer, "lb", lb({ forwardingRules: [https()] }), opts)).toThrow(/422 forwarding rule https:443 terminates TLS but names no certificate/);
    expect(() => a.register("s", T.loadBalancer, "lb", lb({ forwardingRules: [https({ certificateName: "nope" })] }), opts)).toThrow(/certificate not found/);
    a.register("s", T.loadBalancer, "pass", lb({ name: "pass", forwardingRules: [https({ targetProtocol: "https", targetPort: 443, tlsPassthrough: true })] }), opts);
    a.register("s", T.certificate, "c", { name: "c", privateKey: PEM("PRIVATE KEY"), leafCertificate: PEM("CERTIFICATE") }, opts);
    a.register("s", T.loadBalancer, "lb", lb({ forwardingRules: [https({ certificateName: "c" }), http], redirectHttpToHttps: true }), opts);
  });

  test("region and vpc_uuid replace; the VPC must be in the balancer's region", () => {
    const a = new FakeAccount();
    const [v, v2] = up(a, "s", [[T.vpc, "v", { name: "v", region: "fra1" }], [T.vpc, "v2", { name: "v2", region: "fra1" }], [T.loadBalancer, "lb", lb()]]);
    a.changes = [];
    up(a, "s", [[T.vpc, "v", { name: "v", region: "fra1" }], [T.vpc, "v2", { name: "v2", region: "fra1" }], [T.loadBalancer, "lb", lb({ region: "ams3" })]]);
    expect(ops(a)).toEqual([["replace", "lb", ["region"]]]);
    a.changes = [];
    up(a, "s", [[T.vpc, "v", { name: "v", region: "fra1" }], [T.vpc, "v2", { name: "v2", region: "fra1" }], [T.loadBalancer, "lb", lb({ region: "fra1", vpcUuid: v.id })]]);
    expect(ops(a)).toEqual([["replace", "lb", ["region", "vpcUuid"]]]);
    a.changes = [];
    up(a, "s", [[T.vpc, "v", { name: "v", region: "fra1" }], [T.vpc, "v2", { name: "v2", region: "fra1" }], [T.loadBalancer, "lb", lb({ region: "fra1", vpcUuid: v2.id })]]);
    expect(ops(a)).toEqual([["replace", "lb", ["vpcUuid"]]]);
    expect(() => a.register("t", T.loadBalancer, "lb", lb({ region: "ams3", vpcUuid: v.id }), opts)).toThrow(/422 vpc v is in fra1, not ams3/);
  });

  test("forwarding rules: the schema's protocols, udp on both sides, at least one rule", () => {
    const a = new FakeAccount();
    expect(() => a.register("s", T.loadBalancer, "lb", lb({ forwardingRules: [{ ...http, entryProtocol: "ftp" }] }), opts)).toThrow(/entry_protocol to be one of/);
    expect(() => a.register("s", T.loadBalancer, "lb", lb({ forwardingRules: [{ ...http, targetProtocol: "http3" }] }), opts)).toThrow(/target_protocol to be one of/);
    expect(() => a.register("s", T.loadBalancer, "lb", lb({ forwardingRules: [{ ...http, entryProtocol: "udp", targetProtocol: "tcp" }] }), opts)).toThrow(/422 a udp forwarding rule needs udp as both/);
    expect(() => a.register("s", T.loadBalancer, "lb", lb({ forwardingRules: [{ ...http, targetPort: 70000 }] }), opts)).toThrow(/targetPort to be in the range \(1 - 65535\)/);
    expect(() => a.register("s", T.loadBalancer, "lb", lb({ forwardingRules: [] }), opts)).toThrow(/422 forwarding_rules: at least one/);
  });

  test.each([
    [{ protocol: "http", port: 80, path: "/h", checkIntervalSeconds: 2 }, /checkIntervalSeconds to be in the range \(3 - 300\)/],
    [{ protocol: "http", port: 80, path: "/h", checkIntervalSeconds: 301 }, /checkIntervalSeconds to be in the range \(3 - 300\)/],
    [{ protocol: "http", port: 80, path: "/h", responseTimeoutSeconds: 301 }, /responseTimeoutSeconds to be in the range \(3 - 300\)/],
    [{ protocol: "http", port: 80, path: "/h", unhealthyThreshold: 11 }, /unhealthyThreshold to be in the range \(2 - 10\)/],
    [{ protocol: "http", port: 80, path: "/h", healthyThreshold: 1 }, /healthyThreshold to be in the range \(2 - 10\)/],
    [{ protocol: "http", port: 80 }, /health check `path` is required for when protocol is `http`/],
    [{ protocol: "tcp", port: 22, path: "/" }, /health check `path` is not allowed for when protocol is `tcp`/],
    [{ protocol: "udp", port: 53 }, /healthcheck.protocol to be one of \[http https tcp\]/],
  ])("healthcheck %j is refused", (healthcheck, error) => {
    const a = new FakeAccount();
    expect(() => a.register("s", T.loadBalancer, "lb", lb({ healthcheck }), opts)).toThrow(error);
  });

  test("healthcheck at the ranges' ends is taken", () => {
    const a = new FakeAccount();
    a.register("s", T.loadBalancer, "lb", lb({ healthcheck: { protocol: "http", port: 80, path: "/h", checkIntervalSeconds: 3, responseTimeoutSeconds: 300, unhealthyThreshold: 2, healthyThreshold: 10 } }), opts);
  });

  test("http_idle_timeout_seconds 30-600; sticky sessions cookies or none, cookies with a name and a TTL", () => {
    const a = new FakeAccount();
    for (const t of [29, 601]) expect(() => a.register("s", T.loadBalancer, "lb", lb({ httpIdleTimeoutSeconds: t }), opts)).toThrow(/422 http_idle_timeout_seconds must be between 30 and 600/);
    expect(() => a.register("s", T.loadBalancer, "lb", lb({ stickySessions: { type: "source_ip" } }), opts)).toThrow(/sticky_sessions.type to be one of \[cookies none\]/);
    expect(() => a.register("s", T.loadBalancer, "lb", lb({ stickySessions: { type: "cookies", cookieTtlSeconds: 300 } }), opts)).toThrow(/`cookie_name` is required for when type is `cookie`/);
    expect(() => a.register("s", T.loadBalancer, "lb", lb({ stickySessions: { type: "cookies", cookieName: "x", cookieTtlSeconds: 300 } }), opts)).toThrow(/cookie_name to be in the range \(2 - 40\)/);
    expect(() => a.register("s", T.loadBalancer, "lb", lb({ stickySessions: { type: "none", cookieName: "lb" } }), opts)).toThrow(/`cookie_name` is not allowed for when type is `none`/);
    a.register("s", T.loadBalancer, "lb", lb({ httpIdleTimeoutSeconds: 600, stickySessions: { type: "cookies", cookieName: "lb", cookieTtlSeconds: 300 } }), opts);
  });

  test("a change of the droplet tag's case is no change", () => {
    const a = new FakeAccount();
    up(a, "s", [[T.loadBalancer, "lb", lb({ dropletTag: "App" })]]);
    a.changes = [];
    up(a, "s", [[T.loadBalancer, "lb", lb({ dropletTag: "app" })]]);
    expect(a.changes).toEqual([]);
  });
});

describe("metric alerts on the managed pieces", () => {
  const alert = (type: string, entities: string[]) =>
    ({ type, compare: "GreaterThan", value: 80, window: "5m", entities, description: "x", alerts: { emails: ["ops@example.com"] }, enabled: true });

  test("a dbaas alert watches clusters, a droplet alert droplets; crossed entities and unknown types are refused", () => {
    const a = new FakeAccount();
    const d = a.register("s", T.droplet, "d", { name: "d", region: "fra1", size: "s-1vcpu-1gb", image: "debian-13-x64" }, opts);
    const c = a.register("s", T.databaseCluster, "pg", pg(), opts);
    a.register("s", T.monitorAlert, "db-cpu", alert("v1/dbaas/alerts/cpu_alerts", [c.id]), opts);
    a.register("s", T.monitorAlert, "cpu", alert("v1/insights/droplet/cpu", [d.id]), opts);
    expect(() => a.register("s", T.monitorAlert, "bad1", alert("v1/dbaas/alerts/cpu_alerts", [d.id]), opts)).toThrow(/422 entity .* is not one of this account's databases/);
    expect(() => a.register("s", T.monitorAlert, "bad2", alert("v1/insights/droplet/cpu", [c.id]), opts)).toThrow(/422 entity .* is not one of this account's droplets/);
    // In the API's enum but not the provider's list (autoscale pools), and a made-up one.
    expect(() => a.register("s", T.monitorAlert, "bad3", alert("v1/droplet/autoscale_alerts/current_instances", []), opts)).toThrow(/422 type .* is invalid/);
    expect(() => a.register("s", T.monitorAlert, "bad4", alert("v1/dbaas/alerts/cpu", [c.id]), opts)).toThrow(/422 type .* is invalid/);
  });
});
