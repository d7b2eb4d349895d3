// The one schema for stack config: parses Pulumi's flat config map into a typed StackConfig.
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";

export const NAMESPACE = "nodehost";

export const DROPLET_REGIONS = [
  "nyc1", "nyc2", "nyc3", "sfo1", "sfo2", "sfo3", "ams2", "ams3", "sgp1",
  "lon1", "fra1", "tor1", "blr1", "syd1", "atl1",
] as const;
export const SPACES_REGIONS = [
  "nyc3", "sfo2", "sfo3", "ams3", "sgp1", "lon1", "fra1", "tor1", "blr1", "syd1", "atl1",
] as const;

/** Top-level keys that hold secrets: each must be set with `pulumi config set --secret`. */
export const SECRET_KEYS = [
  "sshPrivateKey",
  "basicAuthPassword",
  "slackWebhookUrl",
  "backupAccessKey",
  "backupSecretKey",
] as const;

const domainName = z
  .string()
  .regex(/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/, {
    error: "must be a lower-case DNS name such as example.com",
  });
const dnsLabel = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, { error: "must be one lower-case DNS label such as staging" });
const cidr = z
  .string()
  .regex(/^(\d{1,3}\.){3}\d{1,3}(\/\d{1,2})?$|^[0-9a-fA-F:]+(\/\d{1,3})?$/, {
    error: "must be an IPv4 or IPv6 address or CIDR such as 203.0.113.7/32",
  });
const sshPublicKey = z
  .string()
  .regex(/^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com) [A-Za-z0-9+/=]+( .*)?$/, {
    error: "must be an OpenSSH public key line (ssh-ed25519 AAAA... comment)",
  });
const cronSchedule = z
  .string()
  .regex(/^(\S+\s+){4}\S+$/, { error: "must be a five-field cron schedule such as '0 */4 * * *'" });
const port = z.int().min(1).max(65535);

const dropletSchema = z
  .object({
    size: z
      .string()
      .regex(/^[a-z][a-z0-9_]*-[a-z0-9-]+$/, { error: "must be a DigitalOcean size slug such as s-2vcpu-4gb" })
      .default("s-2vcpu-4gb"),
    region: z.enum(DROPLET_REGIONS).default("fra1"),
    image: z
      .string()
      .regex(/^(debian|ubuntu)-[0-9a-z-]+$/, {
        error: "must be an apt-based image slug such as debian-13-x64 or ubuntu-24-04-x64",
      })
      .default("debian-13-x64"),
    backups: z.boolean().default(false),
    ipv6: z.boolean().default(false),
    swapMb: z.int().min(0).max(65536).default(2048),
    volumeSizeGb: z.int().min(1).max(16384).default(20),
    vpcIpRange: z.string().optional(),
    tags: z.array(z.string().regex(/^[a-zA-Z0-9_:-]+$/)).default([]),
  })
  .strict();

const existingHostSchema = z
  .object({
    address: z.string().min(1),
    port: port.default(22),
    user: z.string().regex(/^[a-z_][a-z0-9_-]*$/).default("deploy"),
    dataDevice: z.string().regex(/^\/dev\//, { error: "must be a /dev path, best a /dev/disk/by-id one" }),
  })
  .strict();

const sshSchema = z
  .object({
    publicKeys: z.array(sshPublicKey).min(1, { error: "needs at least one key (the deploy user's)" }),
    allowFrom: z.array(cidr).default([]),
    openToWorld: z.boolean().default(false),
  })
  .strict();

const dnsSchema = z
  .object({
    createDomain: z.boolean().default(true),
    ttl: z.int().min(30).max(86400).default(600),
  })
  .strict();

const appSchema = z
  .object({
    name: z
      .string()
      .regex(/^[a-z][a-z0-9-]{0,30}$/, { error: "must be a short lower-case name such as app" })
      .default("app"),
    source: z.enum(["bundled", "path", "git"]).default("bundled"),
    path: z.string().optional(),
    gitUrl: z.string().optional(),
    gitRef: z.string().default("main"),
    port: port.default(3081),
    worker: z.string().default(""),
    build: z.boolean().default(false),
    nodeMajor: z.int().min(18).max(30).default(20),
    nodeSource: z.enum(["nodesource", "npm-registry", "debian"]).default("nodesource"),
    npmRegistry: z.url().default("https://registry.npmjs.org"),
    pm2Version: z.string().default("6"),
  })
  .strict();

const nginxSchema = z
  .object({
    basicAuthUser: z.string().regex(/^[A-Za-z0-9._-]+$/).default("admin"),
    allowIps: z.array(cidr).default([]),
  })
  .strict();

const tlsSchema = z
  .object({
    email: z.email({ error: "must be an email address (Let's Encrypt account contact)" }),
    acmeServer: z.url().default("https://acme-v02.api.letsencrypt.org/directory"),
    caPem: z.string().default(""),
  })
  .strict();

const imagesSchema = z
  .object({
    postgres: z.string().min(1).default("postgres:16"),
    redis: z.string().min(1).default("redis:7"),
    preloadDir: z.string().default("/var/cache/nodehost/images"),
  })
  .strict();

const databaseSchema = z
  .object({
    name: z.string().regex(/^[a-z_][a-z0-9_]*$/).default("app"),
    user: z.string().regex(/^[a-z_][a-z0-9_]*$/).default("app"),
  })
  .strict();

const backupSchema = z
  .object({
    schedule: cronSchedule.default("0 */4 * * *"),
    retentionLocalDays: z.int().min(1).max(3650).default(7),
    retentionRemoteDays: z.int().min(1).max(3650).default(30),
    /** The backup heartbeat alarms when the newest backup is older than this (2x the schedule). */
    staleAfterHours: z.int().min(1).max(24 * 30).default(8),
    region: z.enum(SPACES_REGIONS).default("fra1"),
    bucketName: z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/, { error: "must be 3-63 lower-case letters, digits or dashes" })
      .optional(),
    /** false: the bucket already exists (rebuilding a lost stack): use it, do not create it. */
    createBucket: z.boolean().default(true),
    endpoint: z.url().optional(),
    prefix: z.string().default(""),
  })
  .strict();

const alertsSchema = z
  .object({
    emails: z.array(z.email()).default([]),
    slackChannel: z.string().default(""),
    cpuPercent: z.int().min(1).max(100).default(85),
    memoryPercent: z.int().min(1).max(100).default(90),
    diskPercent: z.int().min(1).max(100).default(85),
    uptimeCheck: z.boolean().default(true),
  })
  .strict();

/** Every key under the `nodehost:` namespace, without the prefix. */
export const stackSchema = z
  .object({
    hostMode: z.enum(["digitalocean", "existing"]).default("digitalocean"),
    domain: domainName,
    subdomain: dnsLabel.optional(),
    protect: z.boolean().default(false),
    droplet: dropletSchema.prefault({}),
    existingHost: existingHostSchema.optional(),
    ssh: sshSchema,
    dns: dnsSchema.prefault({}),
    app: appSchema.prefault({}),
    nginx: nginxSchema.prefault({}),
    tls: tlsSchema,
    images: imagesSchema.prefault({}),
    database: databaseSchema.prefault({}),
    backup: backupSchema.prefault({}),
    alerts: alertsSchema.prefault({}),
    sshPrivateKey: z.string().regex(/-----BEGIN [A-Z ]*PRIVATE KEY-----/, {
      error: "must be a PEM or OpenSSH private key",
    }),
    basicAuthPassword: z.string().min(12, { error: "must be at least 12 characters" }).optional(),
    slackWebhookUrl: z.url().optional(),
    backupAccessKey: z.string().min(1).optional(),
    backupSecretKey: z.string().min(1).optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    const need = (cond: boolean, path: string[], message: string) => {
      if (cond) ctx.addIssue({ code: "custom", path, message });
    };
    need(c.hostMode === "existing" && !c.existingHost, ["existingHost"], "is required when hostMode is existing");
    need(c.app.source === "path" && !c.app.path, ["app", "path"], "is required when app.source is path");
    need(c.app.source === "git" && !c.app.gitUrl, ["app", "gitUrl"], "is required when app.source is git");
    need(c.alerts.slackChannel !== "" && !c.slackWebhookUrl, ["slackWebhookUrl"], "is required when alerts.slackChannel is set");
    need(
      c.ssh.openToWorld && c.ssh.allowFrom.length > 0,
      ["ssh", "openToWorld"],
      "cannot be true while ssh.allowFrom lists addresses: choose one",
    );
    need(!c.backup.createBucket && !c.backup.bucketName, ["backup", "bucketName"], "is required when backup.createBucket is false");
    if (c.hostMode === "existing") {
      need(!c.backup.endpoint, ["backup", "endpoint"], "is required when hostMode is existing (no Spaces bucket is created)");
      need(!c.backup.bucketName, ["backup", "bucketName"], "is required when hostMode is existing");
      need(!c.backupAccessKey, ["backupAccessKey"], "is required when hostMode is existing");
      need(!c.backupSecretKey, ["backupSecretKey"], "is required when hostMode is existing");
    }
  });

type Parsed = z.infer<typeof stackSchema>;
type SecretKey = (typeof SECRET_KEYS)[number];

/** The typed config components receive. Secret values are Pulumi secrets, never plain strings. */
export type StackConfig = Omit<Parsed, SecretKey> & {
  project: string;
  stack: string;
  /** Names the site answers to: production `domain` + `www.domain`, staging `sub.domain`. */
  siteNames: string[];
  sshPrivateKey: pulumi.Output<string>;
  basicAuthPassword?: pulumi.Output<string>;
  slackWebhookUrl?: pulumi.Output<string>;
  backupAccessKey?: pulumi.Output<string>;
  backupSecretKey?: pulumi.Output<string>;
};

export class ConfigError extends Error {
  constructor(public readonly problems: string[]) {
    super(`Invalid stack config (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n` +
      problems.map((p) => `  - ${p}`).join("\n"));
    this.name = "ConfigError";
  }
}

function decode(value: string): unknown {
  // Pulumi hands every value over as a string; structured and typed values arrive as JSON.
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
}

function valueAt(root: unknown, path: PropertyKey[]): unknown {
  let v = root;
  for (const p of path) v = v !== null && typeof v === "object" ? (v as Record<PropertyKey, unknown>)[p] : undefined;
  return v;
}

const article = (t: string) => (/^[aeiou]/.test(t) ? `an ${t}` : `a ${t}`);
const describe = (v: unknown) => (Array.isArray(v) ? "a list" : v === null ? "null" : article(typeof v));

function keyPath(path: PropertyKey[]): string {
  const [top, ...rest] = path.map(String);
  return `${NAMESPACE}:${top ?? ""}${rest.map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`)).join("")}`;
}

/**
 * Validates the whole config map at once. Throws ConfigError listing every problem with its
 * key; secret values are never echoed in a message.
 */
export function parseConfig(
  raw: Record<string, string>,
  secretKeys: string[],
  names: { project?: string; stack?: string } = {},
): StackConfig {
  const problems: string[] = [];
  const ours: Record<string, unknown> = {};
  const prefix = `${NAMESPACE}:`;
  for (const [key, value] of Object.entries(raw)) {
    if (key.startsWith(prefix)) ours[key.slice(prefix.length)] = decode(value);
  }

  const result = stackSchema.safeParse(ours);
  if (!result.success) {
    for (const issue of result.error.issues) {
      if (issue.code === "unrecognized_keys") {
        for (const k of issue.keys) problems.push(`${keyPath([...issue.path, k])}: unknown key (misspelt?)`);
      } else if (issue.code === "invalid_type") {
        const got = valueAt(ours, issue.path);
        problems.push(`${keyPath(issue.path)}: ${got === undefined ? "is required" : `must be ${article(issue.expected)} (got ${describe(got)})`}`);
      } else {
        problems.push(`${keyPath(issue.path)}: ${issue.message}`);
      }
    }
  }

  for (const k of SECRET_KEYS) {
    const full = `${prefix}${k}`;
    if (full in raw && !secretKeys.includes(full)) {
      problems.push(`${full}: must be set as a secret (pulumi config set --secret ${full} ...)`);
    }
  }
  const mode = (ours.hostMode as string | undefined) ?? "digitalocean";
  if (mode === "digitalocean") {
    const providerSecrets: [string, string][] = [
      ["digitalocean:token", "DIGITALOCEAN_TOKEN"],
      ["digitalocean:spacesAccessId", "SPACES_ACCESS_KEY_ID"],
      ["digitalocean:spacesSecretKey", "SPACES_SECRET_ACCESS_KEY"],
    ];
    for (const [key, env] of providerSecrets) {
      if (key in raw) {
        if (!secretKeys.includes(key)) problems.push(`${key}: must be set as a secret (pulumi config set --secret ${key} ...)`);
      } else if (!process.env[env]) {
        problems.push(`${key}: is required when hostMode is digitalocean (or set ${env})`);
      }
    }
  }

  if (problems.length > 0 || !result.success) throw new ConfigError(problems);
  const c = result.data;
  const stack = names.stack ?? pulumi.getStack();
  const secret = (v: string | undefined) => (v === undefined ? undefined : pulumi.secret(v));
  const site = c.subdomain ? `${c.subdomain}.${c.domain}` : c.domain;
  return {
    ...c,
    project: names.project ?? pulumi.getProject(),
    stack,
    siteNames: c.subdomain ? [site] : [site, `www.${site}`],
    sshPrivateKey: pulumi.secret(c.sshPrivateKey),
    basicAuthPassword: secret(c.basicAuthPassword),
    slackWebhookUrl: secret(c.slackWebhookUrl),
    backupAccessKey: secret(c.backupAccessKey),
    backupSecretKey: secret(c.backupSecretKey),
  };
}

/** Reads the running stack's config. Call once, before declaring any resource. */
export function loadConfig(): StackConfig {
  const raw = pulumi.runtime.allConfig();
  const isSecret = (pulumi.runtime as unknown as { isConfigSecret: (k: string) => boolean }).isConfigSecret;
  return parseConfig(raw, Object.keys(raw).filter((k) => isSecret(k)));
}
