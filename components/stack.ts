// The whole stack: cloud resources (or an existing host), then the host steps, then the outputs.
import * as crypto from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import { StackConfig } from "./config";
import { BackupBucket } from "./cloud/bucket";
import { cloudInitUserData } from "./cloud/cloud-init";
import { Dns } from "./cloud/dns";
import { Monitoring } from "./cloud/monitoring";
import { Network } from "./cloud/network";
import { StackProject } from "./cloud/project";
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
}

function digitalOceanTarget(cfg: StackConfig, name: string): Target {
  const tag = name;
  const network = new Network(name, {
    region: cfg.droplet.region,
    tag,
    sshAllowFrom: cfg.ssh.allowFrom,
    sshOpenToWorld: cfg.ssh.openToWorld,
    ipRange: cfg.droplet.vpcIpRange,
  });
  // The droplet's SSH host key, made here and handed to cloud-init in the user-data, so that every
  // step checks the droplet it talks to (pulumi-command's connection.hostKey: ssh.FixedHostKey,
  // offering only that key's type; provider/pkg/provider/remote/connection.go:86-97 at v1.2.1).
  // The user-data is a secret: it holds the private key.
  const hostKey = new tls.PrivateKey(`${name}-host-key`, { algorithm: "ED25519" });
  const userData = pulumi.all([hostKey.privateKeyOpenssh, hostKey.publicKeyOpenssh]).apply(([privateOpenssh, publicOpenssh]) =>
    cloudInitUserData({ deployUser: DEPLOY_USER, sshPublicKeys: cfg.ssh.publicKeys, hostKey: { privateOpenssh, publicOpenssh } }));
  const server = new Server(name, {
    region: cfg.droplet.region,
    size: cfg.droplet.size,
    image: cfg.droplet.image,
    vpcId: network.vpcId,
    userData: pulumi.secret(userData),
    sshPublicKey: cfg.ssh.publicKeys[0],
    registerKey: cfg.ssh.registerKey,
    volumeSizeGb: cfg.droplet.volumeSizeGb,
    backups: cfg.droplet.backups,
    backupPolicy: cfg.droplet.backupPolicy,
    ipv6: cfg.droplet.ipv6,
    tags: [tag, ...cfg.droplet.tags],
    protect: cfg.protect,
  }, { dependsOn: [network] });
  const dns = new Dns(name, {
    domain: cfg.domain,
    subdomain: cfg.subdomain,
    createDomain: cfg.dns.createDomain,
    ttl: cfg.dns.ttl,
    ipv4: server.reservedIp,
    ipv6: cfg.droplet.ipv6 ? server.ipv6Address : undefined,
    protect: cfg.protect,
  });
  const bucket = new BackupBucket(`${name}-backups`, {
    region: cfg.backup.region,
    bucketName: cfg.backup.bucketName,
    create: cfg.backup.createBucket,
    retentionDays: cfg.backup.retentionRemoteDays,
    protect: cfg.protect,
  });
  new Monitoring(name, {
    dropletId: server.dropletId,
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
  const urns = [server.dropletUrn, server.volumeUrn];
  if (dns.domainUrn) urns.push(dns.domainUrn);
  if (bucket.bucketUrn) urns.push(bucket.bucketUrn);
  new StackProject(name, {
    environment: cfg.stack === "production" ? "Production" : "Staging",
    description: `${cfg.siteNames[0]}: Node.js app, PostgreSQL, Redis (managed by Pulumi)`,
    resourceUrns: urns,
  });

  return {
    waitFor: server.ready,
    // The droplet's own address: the reserved IP may still be moving during a rebuild.
    connection: { host: server.ipv4Address, port: 22, user: DEPLOY_USER, privateKey: cfg.sshPrivateKey, hostKey: pinnedHostKey(name, server, userData, hostKey) },
    hostId: server.dropletId,
    dataDevice: server.dataDevice,
    dataSizeGb: cfg.droplet.volumeSizeGb,
    backup: {
      endpoint: bucket.endpoint,
      region: cfg.backup.region,
      bucket: bucket.bucketName,
      accessKey: bucket.accessKey,
      secretKey: bucket.secretKey,
    },
    publicIp: server.reservedIp,
    extraOutputs: { bucketName: bucket.bucketName, dropletId: server.dropletId },
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

/** Declares every resource of the stack from a validated config. */
export function createStack(cfg: StackConfig): Stack {
  const name = `${cfg.project}-${cfg.stack}`;
  const target = cfg.hostMode === "digitalocean" ? digitalOceanTarget(cfg, name) : existingTarget(cfg);
  const host = new Host(name, {
    config: cfg,
    connection: target.connection,
    hostId: target.hostId,
    waitFor: target.waitFor,
    dataDevice: target.dataDevice,
    dataSizeGb: target.dataSizeGb,
    backup: target.backup,
  });
  const c = target.connection;
  const portFlag = c.port === 22 ? "" : ` -p ${c.port}`;
  return {
    steps: host.steps,
    outputs: {
      publicIp: target.publicIp,
      url: pulumi.output(`https://${cfg.siteNames[0]}`),
      urls: pulumi.output(cfg.siteNames.map((n) => `https://${n}`)),
      healthUrl: pulumi.output(`https://${cfg.siteNames[0]}${cfg.app.healthPath}`),
      // A moved branch (app.gitFollow) or a changed app shows here in the preview.
      appRelease: host.appRelease,
      sshCommand: pulumi.interpolate`ssh${portFlag} ${c.user}@${target.publicIp}`,
      basicAuthUser: pulumi.output(cfg.nginx.basicAuthUser),
      basicAuthPassword: pulumi.secret(host.basicAuthPassword),
      // Without it no backup can be read: keep a copy outside Pulumi (a password manager).
      backupPassphrase: pulumi.secret(host.backupPassphrase),
      // Without it the point-in-time archive cannot be read: keep it beside the passphrase.
      pitrCipherPass: pulumi.secret(host.pitrCipherPass),
      ...target.extraOutputs,
    },
  };
}
