// The whole stack: cloud resources (or an existing host), then the host steps, then the outputs.
import * as crypto from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import { LB_IDLE_TIMEOUT_MAX, StackConfig } from "./config";
import { BackupBucket } from "./cloud/bucket";
import { cloudInitUserData } from "./cloud/cloud-init";
import { Dns } from "./cloud/dns";
import { Monitoring } from "./cloud/monitoring";
import { Network } from "./cloud/network";
import { StackProject } from "./cloud/project";
import { AppLoadBalancer } from "./cloud/load-balancer";
import { ManagedData, ManagedEndpoint, ManagedPostgres } from "./cloud/managed-data";
import { Server } from "./cloud/server";
import { BackupTarget, DEPLOY_USER, Host } from "./host";
import { HostConnection, HostStep } from "./host/step";

export interface Stack {
  outputs: Record<string, pulumi.Output<unknown>>;
  steps: HostStep[];
}

interface Target {
  connection: HostConnection;
  /** Cloud resources the first host step waits for (the droplet with its volume, the reserved IP). */
  waitFor: pulumi.Resource[];
  hostId: pulumi.Input<string>;
  dataDevice: pulumi.Input<string>;
  dataSizeGb: number;
  backup: BackupTarget;
  publicIp: pulumi.Output<string>;
  extraOutputs: Record<string, pulumi.Output<unknown>>;
  /** Behind the stack's load balancer: the range it connects from (HostArgs.loadBalancer). */
  loadBalancer?: { from: pulumi.Input<string> };
}

/** Where the app's PostgreSQL and Redis are, when DigitalOcean runs them (database.mode / cache.mode managed). */
export interface ManagedEngines {
  /** The PostgreSQL cluster (its private host; the host layer makes the app's TLS-verified DATABASE_URL). */
  postgres?: ManagedPostgres;
  /** The Valkey cluster (its private host; the host layer makes the app's rediss:// REDIS_URL). */
  cache?: ManagedEndpoint;
}

interface Targets {
  /** One per app droplet, the first being the stack's original droplet. */
  targets: Target[];
  managed: ManagedEngines;
  publicIp: pulumi.Output<string>;
  extraOutputs: Record<string, pulumi.Output<unknown>>;
}

/** The name of the i-th app droplet (0-based): the first keeps the stack's name, so a stack grows without rebuilding it. */
export const dropletName = (name: string, i: number) => (i === 0 ? name : `${name}-${i + 1}`);

function digitalOceanTargets(cfg: StackConfig, name: string): Targets {
  const tag = name;
  const balanced = cfg.app.droplets > 1;
  const network = new Network(name, {
    region: cfg.droplet.region,
    tag,
    sshAllowFrom: cfg.ssh.allowFrom,
    sshOpenToWorld: cfg.ssh.openToWorld,
    webOpenToWorld: !balanced,
    ipRange: cfg.droplet.vpcIpRange,
  });
  const servers: { server: Server; userData: pulumi.Output<string>; hostKey: tls.PrivateKey }[] = [];
  for (let i = 0; i < cfg.app.droplets; i++) {
    const dname = dropletName(name, i);
    // The droplet's SSH host key, made here and handed to cloud-init in the user-data, so that every
    // step checks the droplet it talks to (pulumi-command's connection.hostKey: ssh.FixedHostKey,
    // offering only that key's type; provider/pkg/provider/remote/connection.go:86-97 at v1.2.1).
    // The user-data is a secret: it holds the private key.
    const hostKey = new tls.PrivateKey(`${dname}-host-key`, { algorithm: "ED25519" });
    const userData = pulumi.all([hostKey.privateKeyOpenssh, hostKey.publicKeyOpenssh]).apply(([privateOpenssh, publicOpenssh]) =>
      cloudInitUserData({ deployUser: DEPLOY_USER, sshPublicKeys: cfg.ssh.publicKeys, hostKey: { privateOpenssh, publicOpenssh } }));
    const server = new Server(dname, {
      region: cfg.droplet.region,
      size: cfg.droplet.size,
      image: cfg.droplet.image,
      vpcId: network.vpcId,
      userData: pulumi.secret(userData),
      sshPublicKey: cfg.ssh.publicKeys[0],
      // A public key is in an account once: the first droplet registers it, the others name it.
      registerKey: i === 0 && cfg.ssh.registerKey,
      volumeSizeGb: cfg.droplet.volumeSizeGb,
      backups: cfg.droplet.backups,
      backupPolicy: cfg.droplet.backupPolicy,
      ipv6: cfg.droplet.ipv6,
      tags: [tag, ...cfg.droplet.tags],
      protect: cfg.protect,
      reservedIp: i === 0,
    }, { dependsOn: i === 0 ? [network] : [network, servers[0].server] });
    servers.push({ server, userData, hostKey });
  }
  const first = servers[0].server;

  const managed: ManagedEngines = {};
  let managedUrns: pulumi.Output<string>[] = [];
  let clusterIds: pulumi.Output<string>[] = [];
  if (cfg.database.mode === "managed" || cfg.cache.mode === "managed") {
    const data = new ManagedData(name, {
      region: cfg.droplet.region,
      vpcId: network.vpcId,
      dropletTag: tag,
      postgres: { ...cfg.database.managed, database: cfg.database.name, user: cfg.database.user },
      cache: cfg.cache.managed,
      tags: [tag, ...cfg.droplet.tags],
      protect: cfg.protect,
      postgresEnabled: cfg.database.mode === "managed",
      cacheEnabled: cfg.cache.mode === "managed",
    });
    managed.postgres = data.postgres;
    managed.cache = data.cache;
    managedUrns = data.urns;
    clusterIds = data.clusterIds;
  }

  // The certificate waits for the zone (DigitalOcean validates Let's Encrypt through it), and the
  // zone's records point at the balancer: the zone is handed over once Dns has made it.
  let zoneReady: (r: pulumi.Resource[]) => void = () => undefined;
  const zone = new Promise<pulumi.Resource[]>((res) => { zoneReady = res; });
  const lb = balanced
    ? new AppLoadBalancer(name, {
      region: cfg.droplet.region,
      vpcId: network.vpcId,
      dropletTag: tag,
      siteNames: cfg.siteNames,
      healthPath: cfg.app.healthPath,
      sticky: cfg.nginx.routes.some((r) => r.websocket),
      idleTimeoutSeconds: Math.min(LB_IDLE_TIMEOUT_MAX, Math.max(60, ...cfg.nginx.routes.map((r) => r.idleTimeoutSeconds))),
      dependsOn: zone,
    })
    : undefined;
  const dns = new Dns(name, {
    domain: cfg.domain,
    subdomain: cfg.subdomain,
    createDomain: cfg.dns.createDomain,
    ttl: cfg.dns.ttl,
    ipv4: lb ? lb.ip : first.reservedIp,
    ipv6: cfg.droplet.ipv6 && !lb ? first.ipv6Address : undefined,
    protect: cfg.protect,
  });
  zoneReady(dns.domain ? [dns.domain] : []);
  const bucket = new BackupBucket(`${name}-backups`, {
    region: cfg.backup.region,
    bucketName: cfg.backup.bucketName,
    create: cfg.backup.createBucket,
    retentionDays: cfg.backup.retentionRemoteDays,
    protect: cfg.protect,
  });
  new Monitoring(name, {
    dropletIds: servers.map((s) => s.server.dropletId),
    clusterIds,
    healthUrl: `https://${cfg.siteNames[0]}${cfg.app.healthPath}`,
    backupHeartbeatUrl: `https://${cfg.siteNames[0]}/healthz/backup`,
    emails: cfg.alerts.emails,
    slack: cfg.slackWebhookUrl ? { channel: cfg.alerts.slackChannel, url: cfg.slackWebhookUrl } : undefined,
    cpuPercent: cfg.alerts.cpuPercent,
    memoryPercent: cfg.alerts.memoryPercent,
    diskPercent: cfg.alerts.diskPercent,
    uptimeCheck: cfg.alerts.uptimeCheck,
  });
  // Only kinds the Projects API takes (openapi DigitalOcean-public.v2.yaml:443-458 @7c1300c): no
  // VPC, and no reserved IP: the API lists one back as do:floatingip (lines 494-498), so every
  // later update would try to move it and fail with 412 while it is on a droplet.
  const urns = servers.flatMap((s) => [s.server.dropletUrn, s.server.volumeUrn]);
  if (dns.domainUrn) urns.push(dns.domainUrn);
  if (bucket.bucketUrn) urns.push(bucket.bucketUrn);
  urns.push(...managedUrns);
  if (lb) urns.push(lb.lbUrn);
  new StackProject(name, {
    environment: cfg.stack === "production" ? "Production" : "Staging",
    description: `${cfg.siteNames[0]}: Node.js app, PostgreSQL, Redis (managed by Pulumi)`,
    resourceUrns: urns,
  });

  const backup: BackupTarget = {
    endpoint: bucket.endpoint,
    region: cfg.backup.region,
    bucket: bucket.bucketName,
    accessKey: bucket.accessKey,
    secretKey: bucket.secretKey,
  };
  return {
    targets: servers.map(({ server, userData, hostKey }, i) => ({
      waitFor: server.ready,
      // The droplet's own address: the reserved IP may still be moving during a rebuild.
      connection: { host: server.ipv4Address, port: 22, user: DEPLOY_USER, privateKey: cfg.sshPrivateKey, hostKey: pinnedHostKey(dropletName(name, i), server, userData, hostKey) },
      hostId: server.dropletId,
      dataDevice: server.dataDevice,
      dataSizeGb: cfg.droplet.volumeSizeGb,
      backup,
      publicIp: server.reservedIp,
      extraOutputs: {},
      ...(balanced ? { loadBalancer: { from: network.vpcIpRange } } : {}),
    })),
    managed,
    publicIp: lb ? lb.ip : first.reservedIp,
    extraOutputs: {
      bucketName: bucket.bucketName,
      dropletId: first.dropletId,
      ...(balanced ? { dropletIds: pulumi.all(servers.map((s) => s.server.dropletId)) } : {}),
    },
  };
}

/**
 * The host key to check the droplet by: the one made for it, when the droplet was created from this
 * user-data. userData changes never rebuild a droplet (DROPLET_IGNORED_CHANGES), so a droplet made
 * before the stack had a host key, or before ssh.publicKeys changed, has a key the program never
 * saw: it is then not checked, and the up says so. The provider keeps only the SHA-1 of the
 * user-data in state (terraform-provider-digitalocean v2.99.1 digitalocean/droplet/
 * resource_droplet.go:242-251, util/hash.go HashString), or the text itself in older state.
 */
function pinnedHostKey(name: string, server: Server, userData: pulumi.Output<string>, key: tls.PrivateKey): pulumi.Output<string | undefined> {
  return pulumi.all([server.droplet.userData, userData, key.publicKeyOpenssh]).apply(([stored, text, pub]) => {
    if (stored === crypto.createHash("sha1").update(text).digest("hex") || stored === text) return pub.trim();
    pulumi.log.warn(`${name}: the droplet's SSH host key is not checked: the droplet was created from other user-data ` +
      "(before this stack made a host key, or before ssh.publicKeys changed); rebuild it to check its key " +
      "(docs/runbooks/disaster-recovery.md: the volume and the backups carry the data over)");
    return undefined;
  });
}

function existingTarget(cfg: StackConfig): Target {
  const host = cfg.existingHost!;
  return {
    waitFor: [],
    connection: { host: host.address, port: host.port, user: host.user, privateKey: cfg.sshPrivateKey, hostKey: host.hostKey },
    hostId: `${host.address}:${host.port}`,
    dataDevice: host.dataDevice,
    dataSizeGb: 0,
    backup: {
      endpoint: cfg.backup.endpoint!,
      region: cfg.backup.region,
      bucket: cfg.backup.bucketName!,
      accessKey: cfg.backupAccessKey!,
      secretKey: cfg.backupSecretKey!,
    },
    publicIp: pulumi.output(host.address),
    extraOutputs: { bucketName: pulumi.output(cfg.backup.bucketName!) },
  };
}

/**
 * Declares every resource of the stack from a validated config. `engines` stands in for the managed
 * clusters of an existing host: the VM suite hands the host layer a PostgreSQL it runs beside the
 * VM there (test/e2e/lib/managed-pg.ts), as a DigitalOcean stack hands it the cluster's outputs.
 */
export function createStack(cfg: StackConfig, engines: ManagedEngines = {}): Stack {
  const name = `${cfg.project}-${cfg.stack}`;
  const placed: Targets = cfg.hostMode === "digitalocean"
    ? digitalOceanTargets(cfg, name)
    : (() => { const t = existingTarget(cfg); return { targets: [t], managed: engines, publicIp: t.publicIp, extraOutputs: t.extraOutputs }; })();
  // One Host per app droplet. The first makes the secrets they share; each later droplet's app
  // step waits for the one before it, so a release reaches one droplet at a time.
  const hosts: Host[] = [];
  for (const [i, target] of placed.targets.entries()) {
    hosts.push(new Host(dropletName(name, i), {
      config: cfg,
      connection: target.connection,
      hostId: target.hostId,
      waitFor: target.waitFor,
      dataDevice: target.dataDevice,
      dataSizeGb: target.dataSizeGb,
      backup: target.backup,
      shared: hosts[0]?.secrets,
      managed: placed.managed,
      appAfter: i === 0 ? [] : [hosts[i - 1].appStep],
      loadBalancer: target.loadBalancer,
    }));
  }
  const host = hosts[0];
  const c = placed.targets[0].connection;
  const portFlag = c.port === 22 ? "" : ` -p ${c.port}`;
  return {
    steps: hosts.flatMap((h) => h.steps),
    outputs: {
      publicIp: placed.publicIp,
      url: pulumi.output(`https://${cfg.siteNames[0]}`),
      urls: pulumi.output(cfg.siteNames.map((n) => `https://${n}`)),
      healthUrl: pulumi.output(`https://${cfg.siteNames[0]}${cfg.app.healthPath}`),
      // A moved branch (app.gitFollow) or a changed app shows here in the preview.
      appRelease: host.appRelease,
      sshCommand: pulumi.interpolate`ssh${portFlag} ${c.user}@${placed.targets[0].publicIp}`,
      ...(hosts.length > 1
        ? { sshCommands: pulumi.all(placed.targets.map((t) => pulumi.interpolate`ssh ${t.connection.user}@${t.connection.host}`)) }
        : {}),
      basicAuthUser: pulumi.output(cfg.nginx.basicAuthUser),
      basicAuthPassword: pulumi.secret(host.basicAuthPassword),
      // Without it no backup can be read: keep a copy outside Pulumi (a password manager).
      backupPassphrase: pulumi.secret(host.backupPassphrase),
      // Without it the point-in-time archive cannot be read: keep it beside the passphrase.
      pitrCipherPass: pulumi.secret(host.pitrCipherPass),
      ...placed.extraOutputs,
    },
  };
}
