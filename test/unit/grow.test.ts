// Growing past one droplet (issue 13): managed PostgreSQL and Valkey, N app droplets behind a load
// balancer, played against the fake DigitalOcean account (test/unit/fake-do.ts, each rule with its
// source). The checked-in production stack file, with the keys a team that outgrew one droplet sets.
import * as pulumi from "@pulumi/pulumi";
import { describe, expect, test } from "vitest";
import { certificateName } from "../../components/cloud/load-balancer";
import { ConfigError, parseConfig, unbuiltProblems } from "../../components/config";
import { FakeAccount } from "./fake-do";
import { countByType, one, Recorded, Run, stackFileConfig, upStack, withUserValues } from "./harness";

const T = {
  droplet: "digitalocean:index/droplet:Droplet",
  volume: "digitalocean:index/volume:Volume",
  reservedIp: "digitalocean:index/reservedIp:ReservedIp",
  sshKey: "digitalocean:index/sshKey:SshKey",
  firewall: "digitalocean:index/firewall:Firewall",
  record: "digitalocean:index/dnsRecord:DnsRecord",
  cluster: "digitalocean:index/databaseCluster:DatabaseCluster",
  db: "digitalocean:index/databaseDb:DatabaseDb",
  user: "digitalocean:index/databaseUser:DatabaseUser",
  dbFirewall: "digitalocean:index/databaseFirewall:DatabaseFirewall",
  lb: "digitalocean:index/loadBalancer:LoadBalancer",
  cert: "digitalocean:index/certificate:Certificate",
  alert: "digitalocean:index/monitorAlert:MonitorAlert",
  project: "digitalocean:index/project:Project",
  command: "command:remote:Command",
  password: "random:index/randomPassword:RandomPassword",
};

const MANAGED = { "nodehost:database": JSON.stringify({ mode: "managed" }), "nodehost:cache": JSON.stringify({ mode: "managed" }) };
const droplets = (n: number) => ({ ...MANAGED, "nodehost:app": JSON.stringify({ droplets: n }) });

async function up(over: Record<string, string>, account = new FakeAccount()): Promise<Run> {
  const run = await upStack(account, "production", over);
  if (run.error) throw run.error;
  return run;
}

/** The remote step `step` of droplet `host` (its stdin, unwrapped by the harness). */
function stepOf(run: Run, host: string, step: string): Recorded {
  return one(run.custom, T.command, `${host}-${step}-run`);
}

function problems(over: Record<string, string>): string[] {
  const { raw, secretKeys } = withUserValues(stackFileConfig("production"));
  try {
    parseConfig({ ...raw, ...over }, secretKeys, { project: "nodehost", stack: "production" });
    return [];
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
}

describe("config: what one droplet cannot do is refused before any resource", () => {
  test("more than one droplet with PostgreSQL or Redis in Docker: each key named", () => {
    expect(problems({ "nodehost:app": JSON.stringify({ droplets: 2 }) })).toEqual([
      "nodehost:database.mode: must be managed when app.droplets is more than 1 (2): the app's data cannot live on one of several droplets",
      "nodehost:cache.mode: must be managed when app.droplets is more than 1 (2): the app's data cannot live on one of several droplets",
    ]);
    expect(problems({ ...droplets(2), "nodehost:cache": JSON.stringify({ mode: "docker" }) })).toEqual([
      "nodehost:cache.mode: must be managed when app.droplets is more than 1 (2): the app's data cannot live on one of several droplets",
    ]);
    expect(problems(droplets(2))).toEqual([]);
  });

  test("a websocket route idle longer than the load balancer allows, sizes and versions out of shape", () => {
    const routes = [{ path: "/socket.io/", websocket: true, idleTimeoutSeconds: 3600 }];
    expect(problems({ ...droplets(3), "nodehost:nginx": JSON.stringify({ routes }) })).toEqual([
      "nodehost:nginx.routes[0].idleTimeoutSeconds: must be at most 600 when app.droplets is more than 1: the load balancer closes a connection idle longer (http_idle_timeout_seconds)",
    ]);
    expect(problems({ "nodehost:database": JSON.stringify({ mode: "managed", managed: { size: "s-1vcpu-1gb", version: "16.2", nodeCount: 4 } }) })).toEqual([
      "nodehost:database.managed.version: must be a PostgreSQL major version such as \"16\"",
      "nodehost:database.managed.size: must be a DigitalOcean database size slug such as db-s-1vcpu-1gb (doctl databases options slugs --engine pg)",
      "nodehost:database.managed.nodeCount: Too big: expected number to be <=3",
    ]);
    expect(problems({ "nodehost:cache": JSON.stringify({ mode: "managed", managed: { evictionPolicy: "lru" } }) })[0])
      .toMatch(/^nodehost:cache\.managed\.evictionPolicy: /);
    expect(problems({ "nodehost:app": JSON.stringify({ droplets: 11 }) })[0]).toMatch(/^nodehost:app\.droplets: /);
  });

  test("a cluster of another major than the host's pg_dump and pg_restore (images.postgres) is refused", () => {
    const managed = (version: string, postgres?: string) => ({
      "nodehost:database": JSON.stringify({ mode: "managed", managed: { version } }),
      ...(postgres ? { "nodehost:images": JSON.stringify({ postgres }) } : {}),
    });
    const refused = "nodehost:database.managed.version: must be images.postgres' major (postgres:16): the host dumps and restores the cluster with that image's pg_dump and pg_restore, which refuse a newer server and send an older one settings it does not know";
    expect(problems(managed("17"))).toEqual([refused]);
    expect(problems(managed("15"))).toEqual([refused]);
    expect(problems(managed("16"))).toEqual([]);
    expect(problems(managed("17", "registry.example.com:5000/postgres:17.2-bookworm"))).toEqual([]);
    expect(problems(managed("16", "registry.example.com:5000/postgres:17.2-bookworm"))[0]).toMatch(/^nodehost:database\.managed\.version: must be images\.postgres' major/);
    // A ref without a numeric tag (a digest, "latest") is not judged here.
    expect(problems(managed("18", "postgres@sha256:" + "a".repeat(64)))).toEqual([]);
  });
});

describe("until the host side lands, a real stack refuses what it cannot back up", () => {
  const parsed = (over: Record<string, string>) => {
    const { raw, secretKeys } = withUserValues(stackFileConfig("production"));
    return parseConfig({ ...raw, ...over }, secretKeys, { project: "nodehost", stack: "production" });
  };
  test("the defaults, a managed PostgreSQL and a managed Valkey pass; more droplets are refused by key", () => {
    expect(unbuiltProblems(parsed({}))).toEqual([]);
    expect(unbuiltProblems(parsed({ "nodehost:database": JSON.stringify({ mode: "managed" }) }))).toEqual([]);
    expect(unbuiltProblems(parsed({ "nodehost:cache": JSON.stringify({ mode: "managed" }) }))).toEqual([]);
    expect(unbuiltProblems(parsed(droplets(2)))).toEqual([
      expect.stringMatching(/^nodehost:app\.droplets: more than 1 is not available yet: .*every droplet would still run the backups/),
    ]);
  });
});

describe("managed PostgreSQL and Valkey beside one droplet", () => {
  test("the clusters in the stack's region and VPC, protected in production, admitted to the stack's tag only", async () => {
    const account = new FakeAccount();
    const run = await up(MANAGED, account);
    const vpcId = account.resourcesOf("production").find((r) => r.type === "digitalocean:index/vpc:Vpc")!.id;
    const clusters = run.custom.filter((r) => r.type === T.cluster);
    expect(clusters.map((c) => [c.name, c.inputs.engine, c.inputs.version, c.inputs.region, c.opts.protect])).toEqual([
      ["nodehost-production-pg", "pg", "16", "fra1", true],
      ["nodehost-production-cache", "valkey", "8", "fra1", true],
    ]);
    for (const c of clusters) expect(c.inputs.privateNetworkUuid).toBe(vpcId);
    // As the Docker Redis it replaces: full means refused writes, never evicted jobs or sessions.
    expect(one(run.custom, T.cluster, "-cache").inputs.evictionPolicy).toBe("noeviction");
    expect(one(run.custom, T.db).inputs.name).toBe("app");
    expect(one(run.custom, T.db).opts.protect).toBe(true);
    expect(one(run.custom, T.user).inputs.name).toBe("app");
    const fws = run.custom.filter((r) => r.type === T.dbFirewall);
    expect(fws.map((f) => f.inputs.rules)).toEqual([[{ type: "tag", value: "nodehost-production" }], [{ type: "tag", value: "nodehost-production" }]]);
    // The droplet carries that tag; nothing else is admitted.
    expect(one(run.custom, T.droplet).inputs.tags).toContain("nodehost-production");
  });

  test("the app gets the private hosts, TLS verified against the cluster's CA, and no password in plain text", async () => {
    const run = await up(MANAGED);
    const app = stepOf(run, "nodehost-production", "app");
    const stdin = String(app.inputs.stdin);
    const url = /\nDATABASE_URL='([^']*)'/.exec(stdin)![1];
    expect(url).toMatch(/^postgres:\/\/app:[^@]+@private-[^:]+:25060\/app\?sslmode=verify-full&sslrootcert=%2Fetc%2Fnodehost-pg%2Fca\.pem$/);
    expect(/\nREDIS_URL='([^']*)'/.exec(stdin)![1]).toMatch(/^rediss:\/\/default:[^@]+@private-[^:]+:25061$/);
    expect(await pulumi.isSecret(pulumi.output(app.props.stdin))).toBe(true);
    // The local containers' passwords are not what the app is handed.
    expect(url).not.toContain("generated-nodehost-production-postgres-password");
  });

  test("the host moves to the cluster: a client container reaches it with the app user's password and CA, the admin grants once, the dumps run there, no WAL archive", async () => {
    const run = await up({ ...MANAGED, "nodehost:backup": JSON.stringify({ pointInTime: { enabled: true } }) });
    const param = (step: string, key: string) => new RegExp(`\\n${key}='([^']*)'`).exec(String(stepOf(run, "nodehost-production", step).inputs.stdin))?.[1];
    expect(param("docker-data", "POSTGRES_MODE")).toBe("managed");
    expect(param("docker-data", "MANAGED_PG_HOST")).toMatch(/^private-.*:?/);
    expect(param("docker-data", "MANAGED_PG_PORT")).toBe("25060");
    expect(param("docker-data", "MANAGED_PG_ADMIN_USER")).toBe("doadmin");
    expect(param("docker-data", "MANAGED_PG_PASSWORD")).toMatch(/^fake-user-password-/);
    expect(param("docker-data", "MANAGED_PG_ADMIN_PASSWORD")).toMatch(/^fake-db-password-/);
    expect(Buffer.from(param("docker-data", "MANAGED_PG_CA_B64")!, "base64").toString()).toMatch(/^-----BEGIN CERTIFICATE-----\nfake-ca-of-/);
    expect(param("backups", "POSTGRES_CONTAINER")).toBe("nodehost-pg-client");
    // The cluster keeps its own point-in-time recovery; the host archives no WAL of it.
    expect([param("docker-data", "PITR_ENABLED"), param("backups", "PITR_ENABLED")]).toEqual(["false", "false"]);
    const docker = await up({});
    const dparam = (step: string, key: string) => new RegExp(`\\n${key}='([^']*)'`).exec(String(stepOf(docker, "nodehost-production", step).inputs.stdin))?.[1];
    expect([dparam("docker-data", "POSTGRES_MODE"), dparam("docker-data", "MANAGED_PG_PASSWORD"), dparam("backups", "POSTGRES_CONTAINER")]).toEqual(["docker", "", "nodehost-postgres"]);
    expect([dparam("docker-data", "CACHE_MODE"), dparam("docker-data", "MANAGED_REDIS_PASSWORD"), dparam("backups", "CACHE_MODE")]).toEqual(["docker", "", "docker"]);
  });

  test("a managed Valkey: no Redis container, the app and the key move reach it with the cluster's user and password, the archives leave it out", async () => {
    const run = await up(MANAGED);
    const param = (step: string, key: string) => new RegExp(`\\n${key}='([^']*)'`).exec(String(stepOf(run, "nodehost-production", step).inputs.stdin))?.[1];
    expect(param("docker-data", "CACHE_MODE")).toBe("managed");
    expect(param("docker-data", "MANAGED_REDIS_HOST")).toMatch(/^private-/);
    expect(param("docker-data", "MANAGED_REDIS_PORT")).toBe("25061");
    expect(param("docker-data", "MANAGED_REDIS_USER")).toBe("default");
    const password = param("docker-data", "MANAGED_REDIS_PASSWORD")!;
    expect(password).toMatch(/^fake-db-password-/);
    expect(param("backups", "CACHE_MODE")).toBe("managed");
    // The app's REDIS_URL carries the same password, URL-encoded, and the step's stdin is a secret.
    expect(param("app", "REDIS_URL")).toBe(`rediss://default:${encodeURIComponent(password)}@${param("docker-data", "MANAGED_REDIS_HOST")}:25061`);
    expect(await pulumi.isSecret(pulumi.output(stepOf(run, "nodehost-production", "docker-data").props.stdin))).toBe(true);
  });

  test("the clusters join the stack's Project; no load balancer, the reserved IP keeps the DNS", async () => {
    const run = await up(MANAGED);
    expect(run.custom.filter((r) => r.type === T.lb || r.type === T.cert)).toEqual([]);
    const resources: string[] = one(run.custom, T.project).inputs.resources;
    expect(resources.filter((u) => u.startsWith("do:dbaas:"))).toHaveLength(2);
    const ip = one(run.custom, T.reservedIp);
    expect(run.custom.filter((r) => r.type === T.record && r.inputs.type === "A").map((r) => r.inputs.value)).toEqual([(run.result as { publicIp: string }).publicIp]);
    expect(ip).toBeDefined();
  });
});

describe.each([1, 2, 3])("%i app droplet(s) with managed engines", (n) => {
  test("exactly these resources", async () => {
    const run = await up(droplets(n));
    const counts = countByType(run.custom);
    expect(counts[T.droplet]).toBe(n);
    expect(counts[T.volume]).toBe(n);
    // Nine steps on one droplet; behind the balancer eight each (no tls: the balancer ends TLS).
    expect(counts[T.command]).toBe(n > 1 ? 8 * n : 9);
    // One deploy key in the account, one reserved IP (the first droplet's), one set of secrets.
    expect(counts[T.sshKey]).toBe(1);
    expect(counts[T.reservedIp]).toBe(1);
    expect(counts[T.password]).toBe(5);
    expect(counts[T.cluster]).toBe(2);
    expect(counts[T.dbFirewall]).toBe(2);
    expect(counts[T.lb] ?? 0).toBe(n > 1 ? 1 : 0);
    expect(counts[T.cert] ?? 0).toBe(n > 1 ? 1 : 0);
    expect(counts[T.firewall]).toBe(n > 1 ? 2 : 1);
    expect(run.custom.filter((r) => r.type === T.droplet).map((r) => r.inputs.name))
      .toEqual(["nodehost-production", "nodehost-production-2", "nodehost-production-3"].slice(0, n));
    // Every droplet metric alert covers every droplet; the same three watch both clusters.
    const alerts = run.custom.filter((r) => r.type === T.alert);
    const dropletAlerts = alerts.filter((a) => String(a.inputs.type).startsWith("v1/insights/droplet/"));
    const clusterAlerts = alerts.filter((a) => String(a.inputs.type).startsWith("v1/dbaas/"));
    expect(dropletAlerts).toHaveLength(3);
    for (const a of dropletAlerts) expect(a.inputs.entities).toHaveLength(n);
    expect(clusterAlerts.map((a) => [a.inputs.type, a.inputs.entities.length])).toEqual([
      ["v1/dbaas/alerts/cpu_alerts", 2], ["v1/dbaas/alerts/memory_utilization_alerts", 2], ["v1/dbaas/alerts/disk_utilization_alerts", 2],
    ]);
  });

  test("each later droplet's app step waits for the one before it: a release rolls one droplet at a time", async () => {
    const run = await up(droplets(n));
    for (let i = 1; i < n; i++) {
      const prev = i === 1 ? "nodehost-production" : `nodehost-production-${i}`;
      const app = stepOf(run, `nodehost-production-${i + 1}`, "app");
      const deps = (app.opts.dependsOn ?? []) as pulumi.Resource[];
      const prevApp = stepOf(run, prev, "app");
      expect(deps.map((d) => (d as unknown as { __name?: string }).__name)).toContain(prevApp.name);
    }
  });
});

describe("behind a load balancer (app.droplets > 1)", () => {
  test("TLS ends at the balancer with DigitalOcean's Let's Encrypt certificate for the stack's names; HTTP redirects; the health path is checked", async () => {
    const run = await up(droplets(2));
    const cert = one(run.custom, T.cert);
    expect(cert.inputs).toMatchObject({ type: "lets_encrypt", domains: ["example.com", "www.example.com"], name: certificateName("nodehost-production", ["example.com", "www.example.com"]) });
    const lb = one(run.custom, T.lb).inputs;
    expect(lb).toMatchObject({
      region: "fra1",
      dropletTag: "nodehost-production",
      redirectHttpToHttps: true,
      forwardingRules: [
        { entryProtocol: "https", entryPort: 443, targetProtocol: "http", targetPort: 80, certificateName: cert.inputs.name },
        { entryProtocol: "http", entryPort: 80, targetProtocol: "http", targetPort: 80 },
      ],
      healthcheck: { protocol: "http", port: 80, path: "/api/health", checkIntervalSeconds: 10, responseTimeoutSeconds: 5, unhealthyThreshold: 3, healthyThreshold: 5 },
      stickySessions: { type: "none" },
    });
    expect(lb.dropletIds).toBeUndefined();
  });

  test("the droplets take HTTP from the balancer alone; DNS points at the balancer", async () => {
    const run = await up(droplets(2));
    const fws = run.custom.filter((r) => r.type === T.firewall);
    const base = fws.find((f) => f.name === "nodehost-production-firewall")!.inputs.inboundRules as { portRange?: string }[];
    expect(base.map((r) => r.portRange)).not.toContain("80");
    expect(base.map((r) => r.portRange)).not.toContain("443");
    const lbFw = fws.find((f) => f.name === "nodehost-production-lb-firewall")!.inputs;
    expect(lbFw.tags).toEqual(["nodehost-production"]);
    expect(lbFw.inboundRules).toEqual([{ protocol: "tcp", portRange: "80", sourceLoadBalancerUids: [expect.any(String)] }]);
    const lbIp = (run.result as { publicIp: string }).publicIp;
    expect(run.custom.filter((r) => r.type === T.record && r.inputs.type === "A").map((r) => r.inputs.value)).toEqual([lbIp]);
    expect(run.custom.filter((r) => r.type === T.droplet).map((d) => d.inputs.ipv4Address)).not.toContain(lbIp);
  });

  test("a websocket route makes sessions sticky and the idle timeout its own", async () => {
    const routes = [{ path: "/socket.io/", websocket: true, idleTimeoutSeconds: 300 }];
    const run = await up({ ...droplets(2), "nodehost:nginx": JSON.stringify({ routes }) });
    expect(one(run.custom, T.lb).inputs).toMatchObject({ stickySessions: { type: "cookies", cookieName: "nodehost-lb", cookieTtlSeconds: 3600 }, httpIdleTimeoutSeconds: 300 });
  });

  test("each droplet serves the site on HTTP to the VPC's range, runs no certbot, and is health-checked over HTTP", async () => {
    const account = new FakeAccount();
    const run = await up(droplets(2), account);
    const param = (host: string, step: string, key: string) => new RegExp(`\\n${key}='([^']*)'`).exec(String(stepOf(run, host, step).inputs.stdin))?.[1];
    // The range DigitalOcean generated for the VPC (the stack file sets none).
    const range = account.vpcRanges();
    expect(range).toEqual([expect.stringMatching(/^10\.\d+\.0\.0\/20$/)]);
    for (const h of ["nodehost-production", "nodehost-production-2"]) {
      expect(param(h, "nginx", "LB_FROM")).toBe(range[0]);
      expect(param(h, "health-gate", "HEALTH_SCHEME")).toBe("http");
      expect(run.custom.some((r) => r.type === T.command && r.name === `${h}-tls-run`)).toBe(false);
      // The gate still follows the site (nginx) and re-runs after every step.
      const gate = stepOf(run, h, "health-gate");
      expect(((gate.opts.dependsOn ?? []) as unknown as { __name?: string }[]).map((d) => d.__name)).toContain(stepOf(run, h, "nginx").name);
    }
    // One droplet: HTTPS on the droplet, certbot, and no LB_FROM line at all.
    const single = await up(droplets(1));
    expect(String(stepOf(single, "nodehost-production", "nginx").inputs.stdin)).not.toContain("\nLB_FROM='");
    expect(String(stepOf(single, "nodehost-production", "health-gate").inputs.stdin)).not.toContain("\nHEALTH_SCHEME='");
    expect(stepOf(single, "nodehost-production", "tls")).toBeDefined();
  });

  test("every droplet gets the same site password and backup keys", async () => {
    const run = await up(droplets(3));
    const param = (host: string, step: string, key: string) => new RegExp(`\\n${key}='([^']*)'`).exec(String(stepOf(run, host, step).inputs.stdin))?.[1];
    const hosts = ["nodehost-production", "nodehost-production-2", "nodehost-production-3"];
    const auth = hosts.map((h) => param(h, "nginx", "BASIC_AUTH_PASSWORD"));
    expect(new Set(auth).size).toBe(1);
    expect(auth[0]).toBeTruthy();
  });
});

describe("growing a stack in one account", () => {
  test("1 -> 2 droplets: the first droplet, its volume and its address stay; DNS moves to the balancer", async () => {
    const account = new FakeAccount();
    const one1 = await up(MANAGED, account);
    const firstDroplet = one(one1.custom, T.droplet);
    account.changes = [];
    const two = await up(droplets(2), account);
    const touched = account.changes.filter((c) => c.op === "replace" || c.op === "delete");
    expect(touched).toEqual([]);
    const ids = two.custom.filter((r) => r.type === T.droplet).map((r) => r.name);
    expect(ids).toEqual([firstDroplet.name, "nodehost-production-2-droplet"]);
    expect(account.changes.filter((c) => c.type === T.record).map((c) => c.op)).toEqual(["update"]);
  });

  test("a config change that would replace a cluster fails on protect in production, before anything is replaced", async () => {
    const account = new FakeAccount();
    await up(MANAGED, account);
    const moved = await upStack(account, "production", { ...MANAGED, "nodehost:droplet": JSON.stringify({ region: "ams3", size: "s-2vcpu-4gb", backups: true, volumeSizeGb: 50 }) });
    expect(String(moved.error)).toMatch(/unable to replace resource .*as it is currently marked for protection/s);
  });
});
