// The one schema for stack config: parses Pulumi's flat config map into a typed StackConfig.
// It refuses what DigitalOcean's API would refuse and anything that could escape into a shell,
// a cron line or a config file on the host, before a single resource is declared.
import { isIPv4, isIPv6 } from "net";
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";

export const NAMESPACE = "nodehost";

/**
 * Regions that take new droplets, per DigitalOcean's regional availability list, checked 2026-11;
 * `doctl compute region list` shows the live list.
 */
export const DROPLET_REGIONS = [
  "nyc1", "nyc2", "nyc3", "sfo2", "sfo3", "ams3", "sgp1",
  "lon1", "fra1", "tor1", "blr1", "syd1", "atl1", "ric1",
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
  "backupPassphrase",
  "backupPreviousPassphrases",
  "backupPitrCipherPass",
  "appSecrets",
  "appGitDeployKey",
] as const;

/** Variables the stack sets for the app itself (app step): neither app.env nor appSecrets may set them. */
export const APP_ENV_RESERVED = ["NODE_ENV", "PORT", "HOST", "DATABASE_URL", "REDIS_URL"] as const;

/** Droplet backup windows (droplet.backupPolicy). */
export const BACKUP_PLANS = ["weekly", "daily"] as const;
export const BACKUP_WEEKDAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"] as const;
export const BACKUP_HOURS = [0, 4, 8, 12, 16, 20] as const;

// --- Helpers -------------------------------------------------------------------------------------

/** Quotes, backticks, '$', '\' and any whitespace or control character: none belongs in a URL. */
const UNSAFE_CHARS = /["'`$\\\s\x00-\x1f\x7f]/;
const NO_UNSAFE_CHARS = "must not contain quotes, backticks, '$', '\\' or whitespace";

interface Cidr {
  version: 4 | 6;
  address: string;
  prefix?: number;
}

/** An address with an optional /prefix, checked with node's own address parser. */
function parseCidr(s: string): Cidr | undefined {
  const m = /^([0-9A-Fa-f:.]+)(?:\/(0|[1-9][0-9]{0,2}))?$/.exec(s);
  if (!m) return undefined;
  const prefix = m[2] === undefined ? undefined : Number(m[2]);
  if (isIPv4(m[1])) return prefix === undefined || prefix <= 32 ? { version: 4, address: m[1], prefix } : undefined;
  if (isIPv6(m[1])) return prefix === undefined || prefix <= 128 ? { version: 6, address: m[1], prefix } : undefined;
  return undefined;
}

function ipv4Number(address: string): number {
  return address.split(".").reduce((n, octet) => n * 256 + Number(octet), 0);
}

/** Whether IPv4 `address` lies in `base`/`bits`. */
function inIpv4Range(address: string, base: string, bits: number): boolean {
  const block = 2 ** (32 - bits);
  return Math.floor(ipv4Number(address) / block) === Math.floor(ipv4Number(base) / block);
}

/** RFC 1918 private IPv4 ranges. */
const RFC1918: [string, number][] = [["10.0.0.0", 8], ["172.16.0.0", 12], ["192.168.0.0", 16]];

/** Loopback (127.0.0.0/8, ::1, localhost) or private (RFC 1918, IPv6 fc00::/7). */
function isLoopbackOrPrivate(hostname: string): boolean {
  const h = hostname.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  if (h === "localhost") return true;
  if (isIPv4(h)) return inIpv4Range(h, "127.0.0.0", 8) || RFC1918.some(([base, bits]) => inIpv4Range(h, base, bits));
  if (isIPv6(h)) return h === "::1" || /^f[cd][0-9a-f]{2}:/.test(h);
  return false;
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** A DNS host name, an IPv4 address or an IPv6 address (no zone, no port). */
function isHostOrAddress(s: string): boolean {
  if (isIPv6(s)) return !s.includes("%");
  if (/^[0-9.]+$/.test(s)) return isIPv4(s);
  return HOSTNAME.test(s);
}

/** No path segment is "..". */
const noDotDot = (s: string) => !s.split("/").includes("..");

function parseUrl(s: string): URL | undefined {
  try {
    return new URL(s);
  } catch {
    return undefined;
  }
}

/** An https:// URL (or http:// where `allowHttp` says so for its host name). */
function webUrl(error: string, allowHttp: (hostname: string) => boolean = () => false) {
  return z
    .string()
    .refine((s) => !UNSAFE_CHARS.test(s), { error: NO_UNSAFE_CHARS, abort: true })
    .refine((s) => {
      const u = parseUrl(s);
      if (!u || u.hostname === "") return false;
      if (s.startsWith("https://")) return u.protocol === "https:";
      return s.startsWith("http://") && u.protocol === "http:" && allowHttp(u.hostname);
    }, { error });
}

/** A git remote git can clone without options: https://…, ssh://… or scp-style user@host:path. */
function isGitUrl(s: string): boolean {
  const scp = /^([A-Za-z0-9_][A-Za-z0-9._-]*)@([^:/]+):([A-Za-z0-9._~/+-]+)$/.exec(s);
  if (scp) return isHostOrAddress(scp[2]) && !scp[3].startsWith("-");
  if (!s.startsWith("https://") && !s.startsWith("ssh://")) return false;
  const u = parseUrl(s);
  if (!u || u.hostname === "") return false;
  // A host or user starting with '-' would reach ssh as an option (CVE-2017-1000117).
  return !u.hostname.startsWith("-") && !u.username.startsWith("-") && u.pathname.length > 1;
}

/**
 * Whether a private key is protected by a passphrase: PEM "Proc-Type: 4,ENCRYPTED", PKCS#8
 * "ENCRYPTED PRIVATE KEY", or an OpenSSH key whose header names a cipher other than "none"
 * (PROTOCOL.key: "openssh-key-v1\0", then string ciphername as uint32 length + bytes).
 */
export function isPassphraseProtected(key: string): boolean {
  if (/^Proc-Type:\s*4,ENCRYPTED/m.test(key) || key.includes("-----BEGIN ENCRYPTED PRIVATE KEY-----")) return true;
  const m = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/.exec(key);
  if (!m) return false;
  const body = Buffer.from(m[1].replace(/\s+/g, ""), "base64");
  const magic = Buffer.from("openssh-key-v1\0", "latin1");
  if (body.length < magic.length + 4 || !body.subarray(0, magic.length).equals(magic)) return false;
  const length = body.readUInt32BE(magic.length);
  const cipher = body.subarray(magic.length + 4, magic.length + 4 + length).toString("latin1");
  return cipher !== "none";
}

// --- Value types ---------------------------------------------------------------------------------

const domainName = z
  .string()
  .regex(/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/, {
    error: "must be a lower-case DNS name such as example.com",
  });
const dnsLabel = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, { error: "must be one lower-case DNS label such as staging" });
/** An address or CIDR for the cloud firewall, UFW and nginx `allow`: IPv4 /0-32, IPv6 /0-128. */
const cidr = z
  .string()
  .refine((s) => parseCidr(s) !== undefined, {
    error: "must be an IPv4 or IPv6 address or CIDR such as 203.0.113.7/32",
  });
/**
 * DigitalOcean VPC docs: a VPC range is an RFC 1918 range from /16 to /28. Host bits must be
 * zero (the API refuses 10.10.0.1/20).
 */
const vpcIpRange = z.string().refine(
  (s) => {
    const c = parseCidr(s);
    if (!c || c.version !== 4 || c.prefix === undefined || c.prefix < 16 || c.prefix > 28) return false;
    return RFC1918.some(([base, bits]) => inIpv4Range(c.address, base, bits)) && ipv4Number(c.address) % 2 ** (32 - c.prefix) === 0;
  },
  { error: "must be a private (RFC 1918) IPv4 range from /16 to /28 such as 10.10.0.0/20" },
);
const sshPublicKey = z
  .string()
  .regex(/^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com) [A-Za-z0-9+/=]+( [^\x00-\x1f\x7f]*)?$/, {
    error: "must be an OpenSSH public key line (ssh-ed25519 AAAA... comment)",
  });
/**
 * The schedule becomes a line of /etc/cron.d/nodehost-backup run as root: five fields of cron
 * syntax only, one line (a newline would add a root cron line of its own).
 */
const cronSchedule = z
  .string()
  .regex(/^[0-9A-Za-z*/,-]+([ \t][0-9A-Za-z*/,-]+){4}$/, {
    error: "must be a five-field cron schedule such as '0 */4 * * *'",
  });
const port = z.int().min(1).max(65535);
/**
 * A Docker image reference (distribution/reference grammar, simplified): a registry host with an
 * optional port, lower-case path components, an optional tag and an optional sha256 digest.
 */
const imageRef = z
  .string()
  .max(255, { error: "must be at most 255 characters" })
  .regex(
    /^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(\/[a-z0-9]+([._-][a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@sha256:[a-f0-9]{64})?$/,
    { error: "must be a Docker image reference such as postgres:16 or registry.example.com:5000/postgres:16" },
  );
/** Printable ASCII without whitespace, quotes, '$', '`' or '\': a key written to a config file. */
const plainToken = z
  .string()
  .min(1, { abort: true })
  .regex(/^[\x21-\x7e]+$/, { error: "must be printable characters without whitespace", abort: true })
  .regex(/^[^"'`$\\]+$/, { error: "must not contain quotes, backticks, '$' or '\\'" });

// --- Sections ------------------------------------------------------------------------------------

/**
 * DigitalOcean size slugs (`doctl compute size list`): basic s-<n>vcpu-<n>gb (or -512mb, with an
 * optional disk size), CPU-optimized c-<n> and c2-, general purpose g-/gd-, memory-optimized
 * m-/m3-/m6-, storage-optimized so-/so1_5-; each with an optional -intel or -amd variant.
 */
const DROPLET_SIZE =
  /^(s-[1-9][0-9]*vcpu-[1-9][0-9]*(mb|gb)(-[1-9][0-9]*gb)?|c-[1-9][0-9]*|(c2|g|gd|m|m3|m6|so|so1_5)-[1-9][0-9]*vcpu-[1-9][0-9]*gb(-[1-9][0-9]*gb)?)(-intel|-amd)?$/;

/**
 * The droplet's backup window. terraform-provider-digitalocean v2.99.1
 * digitalocean/droplet/resource_droplet.go:164-193 (plan daily/weekly, weekday SUN..SAT);
 * digitalocean/openapi specification/resources/droplets/models/droplet_backup_policy.yml:26-34
 * @7c1300c (hour 0/4/8/12/16/20). Without a policy DigitalOcean's default plan is daily.
 */
const backupPolicySchema = z
  .object({
    plan: z.enum(BACKUP_PLANS).default("weekly"),
    weekday: z.enum(BACKUP_WEEKDAYS).default("SUN"),
    hour: z.literal(BACKUP_HOURS, { error: "must be one of 0, 4, 8, 12, 16 or 20 (UTC)" }).default(0),
  })
  .strict();

const dropletSchema = z
  .object({
    size: z
      .string()
      .regex(DROPLET_SIZE, { error: "must be a DigitalOcean size slug such as s-2vcpu-4gb (doctl compute size list)" })
      .default("s-2vcpu-4gb"),
    region: z.enum(DROPLET_REGIONS).default("fra1"),
    image: z
      .string()
      .regex(/^(debian|ubuntu)-[0-9a-z-]+$/, {
        error: "must be an apt-based image slug such as debian-13-x64 or ubuntu-24-04-x64",
      })
      .default("debian-13-x64"),
    backups: z.boolean().default(false),
    backupPolicy: backupPolicySchema.prefault({}),
    ipv6: z.boolean().default(false),
    swapMb: z.int().min(0).max(65536).default(2048),
    volumeSizeGb: z.int().min(1).max(16384).default(20),
    vpcIpRange: vpcIpRange.optional(),
    // DigitalOcean tag names: letters, digits, colons, dashes and underscores, at most 255.
    tags: z
      .array(
        z
          .string()
          .regex(/^[a-zA-Z0-9_:-]{1,255}$/, { error: "must be letters, digits, '_', ':' and '-' (a DigitalOcean tag name)" }),
      )
      .default([]),
  })
  .strict();

const existingHostSchema = z
  .object({
    address: z.string().refine(isHostOrAddress, { error: "must be a host name or an IPv4 or IPv6 address" }),
    port: port.default(22),
    user: z
      .string()
      .regex(/^[a-z_][a-z0-9_-]{0,31}$/, { error: "must be a Linux user name such as deploy" })
      .default("deploy"),
    dataDevice: z
      .string()
      .regex(/^\/dev\/[A-Za-z0-9._:+@/-]+$/, { error: "must be a /dev path, best a /dev/disk/by-id one" })
      .refine(noDotDot, { error: "must be a /dev path, best a /dev/disk/by-id one" }),
    // The host's own SSH key (a line of /etc/ssh/ssh_host_ed25519_key.pub): every step checks the
    // server against it (pulumi-command's connection.hostKey); without it no host key is checked.
    hostKey: z
      .string()
      .regex(/^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( [^\x00-\x1f\x7f]*)?$/, {
        error: "must be the host's public key line (ssh-ed25519 AAAA...), from /etc/ssh/ssh_host_ed25519_key.pub",
      })
      .optional(),
  })
  .strict();

const sshSchema = z
  .object({
    publicKeys: z.array(sshPublicKey).min(1, { error: "needs at least one key (the deploy user's)" }),
    /**
     * true: the stack registers publicKeys[0] with DigitalOcean (a key may be in an account only
     * once, so each stack needs its own key pair); false: the key is already in the account and
     * the droplet refers to it by fingerprint.
     */
    registerKey: z.boolean().default(true),
    allowFrom: z.array(cidr).default([]),
    openToWorld: z.boolean().default(false),
    /**
     * Users besides the deploy user (and existingHost.user) sshd lets in (`AllowUsers`): on an
     * existing host, the people who log in as themselves.
     */
    extraUsers: z
      .array(z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, { error: "must be a Linux user name such as alice" }))
      .default([]),
  })
  .strict();

const dnsSchema = z
  .object({
    createDomain: z.boolean().default(true),
    ttl: z.int().min(30).max(86400).default(600),
  })
  .strict();

/** A git ref name (git check-ref-format, narrowed): no '..', not ending in '.lock' or '/'. */
const gitRef = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._/-]*$/, { error: "must be a branch, tag or commit such as main or v1.2.0", abort: true })
  .refine((s) => !s.includes("..") && !s.endsWith(".lock") && !s.endsWith("/") && !s.includes("//"), {
    error: "must be a branch, tag or commit such as main or v1.2.0",
  });

/**
 * End of life of each Node.js major, from the Node.js Release working group's schedule
 * (nodejs/Release README.md and schedule.json, main, read 2026-11-23): odd majors are never LTS.
 * A major newer than this table is accepted as it is (the table cannot judge it).
 */
export const NODE_END_OF_LIFE: Readonly<Record<number, string>> = {
  18: "2025-04-30", 19: "2023-06-01", 20: "2026-04-30", 21: "2024-06-01", 22: "2027-04-30",
  23: "2025-06-01", 24: "2028-04-30", 25: "2026-06-01", 26: "2029-04-30",
};
/** The current Active LTS line (26 since 2026-10; 24 is in maintenance until 2028-04-30). */
export const CURRENT_LTS_NODE = 26;
/** app.pm2Version's default: PM2's current major. */
export const DEFAULT_PM2_VERSION = "6";

/**
 * The app's environment (app.env, appSecrets): names as a shell and dotenv take them, values any
 * text. They reach the host inside the step's secret stdin and the processes through a 0600
 * JSON file PM2 reads (never a shell line, never a process's command line). `pulumi config set
 * --path app.env.WORKERS 4` stores a number: numbers and booleans are taken as their text.
 */
const appEnvMap = z.record(
  z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, { error: "must be a variable name: letters, digits and '_', not starting with a digit" })
    .refine((k) => !(APP_ENV_RESERVED as readonly string[]).includes(k), {
      error: `is set by the stack (${APP_ENV_RESERVED.join(", ")}): choose another name`,
    }),
  z
    .union([z.string(), z.number(), z.boolean()], { error: "must be a string, number or boolean" })
    .transform(String)
    // A NUL cannot be in an environment; 32 KiB stays far inside Linux's 128 KiB per variable.
    .refine((v) => !v.includes("\0") && v.length <= 32768, { error: "must be at most 32768 characters, without NUL" }),
);

/** A path of the site's, as nginx matches it: letters, digits, '.', '_', '~', '-' and '/', no '..'. */
const sitePath = (what: string) =>
  z
    .string()
    .refine((s) => /^\/[A-Za-z0-9._~/-]{0,200}$/.test(s) && noDotDot(s) && !s.includes("//"), {
      error: `must be ${what} such as /api/health: '/' then letters, digits, '.', '_', '~', '-' and '/' (no '..' or '//')`,
    });
/** nginx's client_max_body_size: a number with an optional k or m. */
const bodySize = z.string().regex(/^[1-9][0-9]{0,4}[km]?$/, { error: "must be a size such as 10m, 512k or 65536 (bytes)" });
/** An npm script name (a key of package.json's scripts), never an option or a command. */
const npmScript = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9:._-]*$/, { error: "must be an npm script name such as start or start:worker (letters, digits, ':', '.', '_', '-')" })
  .max(100);

/**
 * One PM2 process of the app (app.processes). The web process is started in the slot that is not
 * serving, with PORT set to that slot, and must answer app.healthPath there before it gets traffic
 * (scripts/tools/nodehost-release); the others start once it has the traffic.
 */
const appProcess = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9-]{0,20}$/, { error: "must be a short lower-case name such as web or worker" }),
    // One of: an npm script (run as `npm run <script>`, `npm start` for start), or a file in the
    // release run by node (or by node with tsx's loader).
    npm: npmScript.optional(),
    file: z
      .string()
      .refine((s) => /^[A-Za-z0-9._][A-Za-z0-9._/-]*$/.test(s) && noDotDot(s) && !s.startsWith("-"), {
        error: "must be a path inside the app such as server/index.ts (letters, digits, '.', '_', '-', '/'; no '..')",
      })
      .optional(),
    // tsx: node with the release's own tsx loader (--import), so TypeScript runs without a build (the app must
    // depend on tsx; Node.js >= 20.6 takes --import).
    interpreter: z.enum(["node", "tsx"]).default("node"),
    instances: z.int().min(1).max(32).default(1),
    // cluster: PM2's cluster mode (node's cluster module shares the port between instances).
    mode: z.enum(["fork", "cluster"]).default("fork"),
    web: z.boolean().default(false),
  })
  .strict();

const appSchema = z
  .object({
    name: z
      .string()
      .regex(/^[a-z][a-z0-9-]{0,30}$/, { error: "must be a short lower-case name such as app" })
      .default("app"),
    source: z.enum(["bundled", "path", "git"]).default("bundled"),
    // A directory on this machine: packed here, never sent to the host as a path.
    path: z.string().optional(),
    gitUrl: z
      .string()
      .refine((s) => !UNSAFE_CHARS.test(s), { error: NO_UNSAFE_CHARS, abort: true })
      .refine(isGitUrl, { error: "must be an https:// or SSH (git@host:path or ssh://...) git URL" })
      .optional(),
    gitRef: gitRef.default("main"),
    // An SSH gitUrl's server keys (`ssh-keyscan -t ed25519 HOST`, checked against the fingerprints
    // the host publishes): the only keys the fetch accepts. Never learnt on first use.
    gitHostKeys: z.array(sshPublicKey).max(10).default([]),
    // true: gitRef is a branch (or tag) to follow: every preview and up asks the repository which
    // commit it names now (from the machine running Pulumi) and deploys that one; the commit shows
    // in the appRelease output. false: the host fetches gitRef when the app step runs.
    gitFollow: z.boolean().default(false),
    // Releases take turns between this port and the next (scripts/tools/nodehost-release): both
    // must be free, unprivileged, and not PostgreSQL's or Redis's.
    port: z.int().min(1024).max(65534)
      .refine((p) => ![5432, 5431, 6379, 6378].includes(p), { error: "must leave 5432 and 6379 free: releases use this port and the next" })
      .default(3081),
    // A file in the release or an npm script name: never absolute, never outside the release.
    worker: z
      .string()
      .refine((s) => s === "" || (/^[A-Za-z0-9._][A-Za-z0-9._/-]*$/.test(s) && noDotDot(s)), {
        error: "must be a path inside the app such as worker.js (letters, digits, '.', '_', '-', '/'; no '..') or an npm script name",
      })
      .default(""),
    build: z.boolean().default(false),
    // Plain variables the build sees besides app.env (NEXT_PUBLIC_API_URL, say); never secrets:
    // a build's output (a browser bundle) is readable by anyone.
    buildEnv: appEnvMap.default({}),
    // The app's processes. Empty: one web process as npm would start it (scripts.start, main, or
    // server.js), plus app.worker when set.
    processes: z.array(appProcess).max(16).default([]),
    // What the web process answers when healthy (200): checked before a release gets traffic, by
    // the health gate of every up, and by the uptime check.
    healthPath: sitePath("a path")
      .refine((s) => s !== "/" && !s.startsWith("/.well-known/") && !s.startsWith("/healthz/backup"), {
        error: "must not be /, under /.well-known/ or /healthz/backup (the site serves those itself; / would open the UI without basic auth)",
      })
      .default("/api/health"),
    /**
     * Identical app droplets behind a DigitalOcean load balancer (components/cloud/load-balancer.ts).
     * 1: one droplet, as always, with TLS by certbot on it. More needs database.mode and cache.mode
     * `managed`: the app's data cannot live on one of several droplets.
     */
    droplets: z.int().min(1).max(10).default(1),
    // PM2 restarts a process whose memory grows past this.
    memoryLimit: z.string().regex(/^[1-9][0-9]{0,5}[MG]$/, { error: "must be a size such as 512M or 2G" }).default("512M"),
    // An npm script run before a release goes live (after a local pre-deploy backup), as the app
    // user in the release with the app's environment: "migrate": "prisma migrate deploy", say.
    migrate: z
      .string()
      .regex(/^([A-Za-z0-9][A-Za-z0-9:._-]*)?$/, { error: "must be an npm script name such as migrate or db:migrate (letters, digits, ':', '.', '_', '-')" })
      .max(100)
      .default(""),
    // Plain settings for the app's processes; secrets go in the top-level appSecrets.
    env: appEnvMap.default({}),
    nodeMajor: z.int().min(18).max(40).default(CURRENT_LTS_NODE),
    // Run a Node.js major past its end of life anyway (parseConfig refuses one otherwise).
    allowEndOfLifeNode: z.boolean().default(false),
    nodeSource: z.enum(["nodesource", "npm-registry", "debian"]).default("nodesource"),
    npmRegistry: webUrl("must be an https:// URL").default("https://registry.npmjs.org"),
    pm2Version: z
      .string()
      // A version prefix, not a range: node-pm2.sh keeps an installed pm2 whose version equals it or
      // starts with it and a dot, so a range (^6.0) would reinstall pm2 on every run.
      .regex(/^\d+(\.\d+){0,2}$/, { error: "must be a version such as 6, 6.0 or 6.0.1 (kept while the installed pm2 starts with it)" })
      .default(DEFAULT_PM2_VERSION),
  })
  .strict();

const nginxSchema = z
  .object({
    basicAuthUser: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,64}$/, { error: "must be letters, digits, '.', '_' and '-'" })
      .default("admin"),
    // Who may reach the UI and /api/ (not /api/health, the uptime check's target); empty: all.
    allowIps: z.array(cidr).default([]),
    // true: allowIps covers the UI only and /api/ stays open to all.
    apiPublic: z.boolean().default(false),
    // The largest request body nginx passes on (413 beyond it).
    maxBodySize: bodySize.default("10m"),
    // More paths of the app beside /api/ (a Socket.io endpoint, a proxy), each proxied to the web
    // process like /api/: no basic auth, the allow-list unless apiPublic, rate-limited.
    routes: z
      .array(
        z
          .object({
            path: sitePath("a path prefix")
              .refine((s) => s !== "/" && s !== "/api/" && !s.startsWith("/.well-known/"), {
                error: "must not be /, /api/ or under /.well-known/ (the site serves those itself)",
              }),
            // Pass WebSocket upgrades through (HTTP/1.1, Upgrade and Connection headers, no buffering).
            websocket: z.boolean().default(false),
            // nginx closes a proxied connection idle this long (a websocket needs pings within it).
            idleTimeoutSeconds: z.int().min(1).max(86400).default(60),
            maxBodySize: bodySize.optional(),
            // A service of the app's on a port of its own (127.0.0.1), instead of the web process's
            // slot: more websocket services beside the web process, as the seeds run them.
            port: z.int().min(1024).max(65535).optional(),
          })
          .strict(),
      )
      .max(20)
      .default([]),
  })
  .strict();

/** One or more PEM certificates, nothing else (written to a file certbot and curl trust). */
const PEM_CERTIFICATES =
  /^(\r?\n)*(-----BEGIN CERTIFICATE-----\r?\n([A-Za-z0-9+/=]+\r?\n)+-----END CERTIFICATE-----(\r?\n)*)+$/;
/** PEM certificates, or "" for none (the host's own CAs then). */
const pemCertificatesOrEmpty = z
  .string()
  .refine((s) => s === "" || PEM_CERTIFICATES.test(s), {
    error: "must be PEM certificates only (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)",
  })
  .default("");

const tlsSchema = z
  .object({
    email: z.email({ error: "must be an email address (Let's Encrypt account contact)" }),
    acmeServer: webUrl("must be an https:// URL").default("https://acme-v02.api.letsencrypt.org/directory"),
    caPem: pemCertificatesOrEmpty,
  })
  .strict();

const imagesSchema = z
  .object({
    postgres: imageRef.default("postgres:16"),
    redis: imageRef.default("redis:7"),
    // "" turns preloading off.
    preloadDir: z
      .string()
      .refine((s) => s === "" || (/^\/[A-Za-z0-9._/-]*$/.test(s) && noDotDot(s)), {
        error: "must be an absolute path of letters, digits, '.', '_', '-' and '/' (no '..')",
      })
      .default("/var/cache/nodehost/images"),
  })
  .strict();

/**
 * A DigitalOcean database size slug (`doctl databases options slugs --engine pg`): db-s-…, gd-…,
 * so1_5-… and the db-intel/db-amd ones (digitalocean/openapi @7c1300c
 * specification/resources/databases/responses/options.yml:77-170).
 */
const databaseSize = z.string().regex(/^(db|gd|so1_5)-[a-z0-9_-]+$/, { error: "must be a DigitalOcean database size slug such as db-s-1vcpu-1gb (doctl databases options slugs --engine pg)" });

/**
 * Where PostgreSQL (and, in cacheSchema, Redis) runs. `docker`: a container on the droplet's volume,
 * backed up by the host (the default, right for one droplet). `managed`: a DigitalOcean database
 * cluster in the stack's region and VPC, admitted to the stack's droplets only (by tag), reached over
 * TLS verified against the cluster's CA (components/cloud/managed-data.ts).
 */
const engineMode = z.enum(["docker", "managed"]).default("docker");

/**
 * A load balancer closes an HTTP connection (a websocket among them) idle this long at most:
 * http_idle_timeout_seconds, 30-600 (digitalocean/openapi @7c1300c
 * specification/resources/load_balancers/models/load_balancer_base.yml:140-145; the provider passes it through unchecked, tfdo v2.99.1 loadbalancer/resource_loadbalancer.go:416-420).
 */
export const LB_IDLE_TIMEOUT_MAX = 600;

const databaseSchema = z
  .object({
    name: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, { error: "must be a lower-case identifier such as app" }).default("app"),
    user: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, { error: "must be a lower-case identifier such as app" }).default("app"),
    mode: engineMode,
    managed: z
      .object({
        // The cluster's major version; later a higher one upgrades in place (tfdo v2.99.1
        // database/resource_database_cluster.go:535-541), a lower one is refused by the API.
        version: z.string().regex(/^[0-9]{2}$/, { error: "must be a PostgreSQL major version such as \"16\"" }).default("16"),
        size: databaseSize.default("db-s-1vcpu-2gb"),
        // 1 node, or a primary with one or two standbys that take over on failure.
        nodeCount: z.int().min(1).max(3).default(1),
      })
      .strict()
      .prefault({}),
  })
  .strict();

const cacheSchema = z
  .object({
    mode: engineMode,
    managed: z
      .object({
        // Valkey's major version (DigitalOcean offers Valkey in place of Redis; options.yml:134-135).
        version: z.string().regex(/^[0-9]{1,2}$/, { error: "must be a Valkey major version such as \"8\"" }).default("8"),
        size: databaseSize.default("db-s-1vcpu-1gb"),
        // spec databases/models/eviction_policy_model.yml:1-8. noeviction by default, as the Docker
        // Redis has it (no maxmemory, Redis's default policy): a full cache refuses writes instead of
        // dropping the queued jobs and sessions an app keeps there; a pure cache may choose allkeys_lru.
        evictionPolicy: z
          .enum(["noeviction", "allkeys_lru", "allkeys_random", "volatile_lru", "volatile_random", "volatile_ttl"])
          .default("noeviction"),
      })
      .strict()
      .prefault({}),
  })
  .strict();

/**
 * An ASCII-armored OpenPGP public key (`gpg --armor --export <key>`), one per entry. The shape is
 * checked here, before any resource; the backups step then has gpg read it on the host
 * (`gpg --show-keys`) and fails, naming the entry, unless it is one public key that can encrypt.
 * A private key block is refused: its private half must never reach the host.
 */
const ARMORED_PUBLIC_KEY = /^-----BEGIN PGP PUBLIC KEY BLOCK-----\r?\n(?:[A-Za-z][A-Za-z-]*: [^\r\n]*\r?\n)*\r?\n(?:[A-Za-z0-9+/=]+\r?\n)+(?:=[A-Za-z0-9+/]{4}\r?\n)?-----END PGP PUBLIC KEY BLOCK-----\s*$/;
const publicKey = z.string().refine((k) => ARMORED_PUBLIC_KEY.test(k), {
  error: "must be one ASCII-armored OpenPGP public key block (gpg --armor --export KEY), and never a private key",
});

/** A backup passphrase: one line, at least 20 characters (written to a 0600 file, one per line). */
const passphrase = z
  .string()
  .min(20, { error: "must be at least 20 characters" })
  .refine((s) => !/[\x00-\x1f\x7f]/.test(s), { error: "must not contain line breaks or control characters" });

/**
 * Point-in-time recovery (scripts/tools/nodehost-pitr, pgBackRest): PostgreSQL archives its WAL to
 * the bucket continuously and base backups are taken on a schedule, so a rebuild restores to the
 * last archived point (seconds to archiveTimeoutSeconds behind) instead of the last dump, and
 * `nodehost-pitr restore --to TIME` goes back to any moment the archive covers. The dumps stay as
 * the second, portable format (and the only one for Redis).
 */
const pointInTimeSchema = z
  .object({
    enabled: z.boolean().default(true),
    /**
     * PostgreSQL's archive_timeout: a WAL segment with any write in it goes to the bucket at the
     * latest this long after it was begun, so a lost host loses at most about this much. Each
     * forced segment is 16 MB before compression: PostgreSQL's docs call a minute or so reasonable.
     */
    archiveTimeoutSeconds: z.int().min(10).max(3600).default(30),
    /** Base backups (differential; full when the newest full one is fullEveryDays old). */
    schedule: cronSchedule.default("30 1 * * *"),
    fullEveryDays: z.int().min(1).max(90).default(7),
    /** Full backups kept (and the WAL back to the oldest of them): how far back a restore can go. */
    retentionFull: z.int().min(1).max(52).default(2),
  })
  .strict();

const backupSchema = z
  .object({
    schedule: cronSchedule.default("0 */4 * * *"),
    /** The restore drill (nodehost-restore --drill): the newest backup restored into a scratch server. */
    drillSchedule: cronSchedule.default("45 2 * * *"),
    retentionLocalDays: z.int().min(1).max(3650).default(7),
    retentionRemoteDays: z.int().min(1).max(3650).default(30),
    /** At most this many archives stay on the volume, whatever the schedule or a bucket outage. */
    localCopies: z.int().min(1).max(1000).default(14),
    /**
     * A new volume on a stack whose bucket records that it has run, yet holds no backup of it,
     * fails `up` (a wrong bucket or prefix, or lost backups). true starts it with an empty database.
     */
    allowEmptyStart: z.boolean().default(false),
    /**
     * Every archive is also encrypted to these public keys (besides the backup passphrase): their
     * private halves, kept off the host and out of Pulumi, open any backup even when the stack, its
     * state and the passphrase are lost, or after the passphrase was rotated.
     */
    publicKeys: z.array(publicKey).max(10).default([]),
    /** The backup heartbeat alarms when the newest backup is older than this (2x the schedule). */
    staleAfterHours: z.int().min(1).max(24 * 30).default(8),
    region: z.enum(SPACES_REGIONS).default("fra1"),
    bucketName: z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/, { error: "must be 3-63 lower-case letters, digits or dashes" })
      .optional(),
    /** false: the bucket already exists (rebuilding a lost stack): use it, do not create it. */
    createBucket: z.boolean().default(true),
    // http:// only to this machine or a private network (the VM suite's S3 server at 10.0.2.2).
    endpoint: webUrl("must be an https:// URL (http:// only to a loopback or private address)", isLoopbackOrPrivate).optional(),
    /**
     * The CA (PEM certificates) an https endpoint with a private CA (a self-hosted S3) is checked
     * against, by s3cmd and pgBackRest alike; "" trusts the host's CAs (Spaces).
     */
    endpointCaPem: pemCertificatesOrEmpty,
    pointInTime: pointInTimeSchema.prefault({}),
    // Written into /etc/nodehost/backup.env (sourced by root's backup tools) and object keys.
    prefix: z
      .string()
      .refine((s) => s === "" || (/^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9._-]+)*\/?$/.test(s) && noDotDot(s)), {
        error: "must be letters, digits, '.', '_', '-' and '/' (no '..', no leading '/')",
      })
      .default(""),
  })
  .strict();

const alertsSchema = z
  .object({
    emails: z.array(z.email()).default([]),
    slackChannel: z
      .string()
      .regex(/^$|^#?[a-z0-9][a-z0-9._-]{0,79}$/, { error: "must be a Slack channel name such as #ops" })
      .default(""),
    cpuPercent: z.int().min(1).max(100).default(85),
    memoryPercent: z.int().min(1).max(100).default(90),
    diskPercent: z.int().min(1).max(100).default(85),
    uptimeCheck: z.boolean().default(true),
    /** true: run the stack with no alert at all (said explicitly, never by leaving emails empty). */
    none: z.boolean().default(false),
  })
  .strict();

/** "HH:MM" on the host's clock (UTC on a droplet), or "never"; `example` is also the default. */
const timeOfDayOrNever = (example: string) =>
  z
    .string()
    .regex(/^(never|([01][0-9]|2[0-3]):[0-5][0-9])$/, { error: `must be a time such as "${example}" (host clock, UTC on a droplet), or "never"` })
    .default(example);

/** Security updates: unattended-upgrades installs them daily; these keys say how they take effect. */
const updatesSchema = z
  .object({
    // When a security update needs a reboot (a kernel, libc), the host reboots at this time
    // ("HH:MM", the host's clock: UTC on a droplet), or "never" (the reboot is then yours to do;
    // /var/run/reboot-required says so). unattended-upgrades passes it to `shutdown -r`.
    rebootAt: timeOfDayOrNever("04:30"),
    // Node.js (when app.nodeSource is npm-registry) and PM2 are brought to the newest release of
    // their line (app.nodeMajor, app.pm2Version) each day at this time ("HH:MM", host clock), and
    // PM2 is restarted on them when either changed (the apps are down for the seconds that takes);
    // or "never". NodeSource's and Debian's Node.js come with the security updates instead.
    runtimeAt: timeOfDayOrNever("04:00"),
    // The PostgreSQL and Redis images' tags (images.*) are pulled again each day at this time
    // ("HH:MM", host clock), and a container whose tag now names a newer image is switched to it
    // once the new one is healthy; or "never". Until then each container stays on the image it
    // was proven on, whatever its tag does. A ref pinned by digest (name@sha256:...) never moves.
    // Before the runtime update and the reboot window, and after the nightly dump (backup.schedule
    // 01:30); the refresh waits for any backup that holds the lock.
    imagesAt: timeOfDayOrNever("03:30"),
  })
  .strict();

/**
 * Logs off the host (issue 12, lynis LOGG-2154): the journal (sshd, sudo, fail2ban, the steps and
 * tools, every unit) and nginx's access and error logs, sent by rsyslog over TLS (RFC 5425) to a
 * receiver the stack names, so a break-in cannot erase its own trail. Unset, the logs stay on the
 * droplet (the journal, /var/log/nginx). Every value ends up in rsyslog's config file as root.
 */
const logForwardSchema = z
  .object({
    // The receiver: a host name or address (syslog vendors give one, with a port per account).
    host: z.string().refine(isHostOrAddress, { error: "must be a host name or an IPv4 or IPv6 address" }),
    // 6514 is syslog over TLS's registered port (RFC 5425 section 4.1).
    port: port.default(6514),
    /**
     * The name the receiver's certificate must carry (rsyslog's x509/name check); unset, `host`.
     * A `*.` wildcard matches one label, as rsyslog's PermittedPeer does.
     */
    peerName: z
      .string()
      .regex(/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/, {
        error: "must be a DNS name such as logs.example.com (a leading '*.' allowed)",
      })
      .optional(),
    // The CA (PEM certificates) the receiver's certificate is checked against; "" = the host's CAs.
    caPem: pemCertificatesOrEmpty,
    /**
     * How messages are delimited on the connection: octet-counted as RFC 5425 has it (rsyslog,
     * syslog-ng's syslog() source), or traditional, one per line (receivers that document
     * `*.* @@host:port`).
     */
    framing: z.enum(["octet-counted", "traditional"]).default("octet-counted"),
  })
  .strict();

const logsSchema = z
  .object({
    forward: logForwardSchema.optional(),
  })
  .strict();

/** What app.processes must say, beyond each entry's own shape (errors name the entry's key). */
function appProcessRules(
  app: z.infer<typeof appSchema>,
  need: (cond: boolean, path: string[], message: string) => void,
) {
  const procs = app.processes;
  if (procs.length === 0) return;
  const at = (i: number, key: string) => ["app", "processes", String(i), key];
  need(app.worker !== "", ["app", "worker"], "cannot be set with app.processes: list the worker there instead");
  const webs = procs.flatMap((p, i) => (p.web ? [i] : []));
  need(webs.length === 0, ["app", "processes"], "has no web process: set web: true on the one that serves PORT");
  for (const i of webs.slice(1)) need(true, at(i, "web"), `is true on process ${webs[0]} already: one web process serves PORT`);
  procs.forEach((p, i) => {
    need(procs.findIndex((q) => q.name === p.name) !== i, at(i, "name"), "is the name of another process");
    need((p.npm === undefined) === (p.file === undefined), at(i, "npm"), "set exactly one of npm (a script) and file");
    need(p.interpreter !== "node" && p.file === undefined, at(i, "interpreter"), "applies to a file only (an npm script says how it runs)");
    // PM2's cluster mode runs a file in node's cluster module; an npm script cannot be clustered.
    need(p.mode === "cluster" && p.file === undefined, at(i, "mode"), "cluster needs a file (PM2 clusters a node file, not an npm script)");
    // Forked copies would each try to bind PORT.
    need(p.web && p.instances > 1 && p.mode !== "cluster", at(i, "instances"), "more than 1 web instance needs mode: cluster (forked copies would each bind PORT)");
  });
}

/** A private key nothing can prompt a passphrase for (the SSH connection, a git deploy key). */
const unencryptedPrivateKey = z
  .string()
  .regex(/-----BEGIN [A-Z ]*PRIVATE KEY-----/, { error: "must be a PEM or OpenSSH private key", abort: true })
  .refine((k) => !isPassphraseProtected(k), {
    error: "must not be passphrase-protected: pulumi-command cannot prompt for it (make a dedicated deploy key without a passphrase)",
  });

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
    cache: cacheSchema.prefault({}),
    backup: backupSchema.prefault({}),
    alerts: alertsSchema.prefault({}),
    updates: updatesSchema.prefault({}),
    logs: logsSchema.prefault({}),
    // pulumi-command connects with this key and cannot prompt for a passphrase.
    sshPrivateKey: unencryptedPrivateKey,
    // A private repository's deploy key (read-only, this stack's own): on the host only while
    // root fetches, never readable by the app user.
    appGitDeployKey: unencryptedPrivateKey.optional(),
    // Hashed from stdin on the host (openssl passwd reads one line).
    basicAuthPassword: z
      .string()
      .min(12, { error: "must be at least 12 characters" })
      .refine((s) => !/[\x00-\x1f\x7f]/.test(s), { error: "must not contain line breaks or control characters" })
      .optional(),
    slackWebhookUrl: webUrl("must be an https:// URL").optional(),
    // Written to /etc/nodehost/s3cfg, one `key = value` line each.
    backupAccessKey: plainToken.optional(),
    backupSecretKey: plainToken.optional(),
    // Encrypts every backup (gpg --symmetric); unset, the stack generates one and keeps it in state.
    // Set it to reuse another stack's backups, or to keep the key outside Pulumi from the start.
    backupPassphrase: passphrase.optional(),
    // Passphrases this stack's backups were encrypted with before the current one (a rotation):
    // restores and drills try the current one first, then these in order. Remove one once the
    // backups made with it are past backup.retentionRemoteDays.
    backupPreviousPassphrases: z.array(passphrase).max(10).optional(),
    // Encrypts the point-in-time archive (pgBackRest's repo1-cipher-pass); unset, the stack
    // generates one and keeps it in state. It cannot change for an archive that exists: set it
    // (from `pulumi stack output pitrCipherPass --show-secrets`) to rebuild a lost stack.
    backupPitrCipherPass: passphrase.optional(),
    // The app's secrets (API keys): `pulumi config set --secret --path 'appSecrets.NAME' value`.
    // The engine lists an object key as secret when any value in it is (pulumi
    // sdk/go/common/resource/config/object.go:51-72 @1b5949891b), so a value set without --secret
    // passes this check and sits in the stack file in plain text: the README says to set each one so.
    appSecrets: appEnvMap.optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    const need = (cond: boolean, path: string[], message: string) => {
      if (cond) ctx.addIssue({ code: "custom", path, message });
    };
    need(c.hostMode === "existing" && !c.existingHost, ["existingHost"], "is required when hostMode is existing");
    need(
      c.hostMode === "digitalocean" && !c.alerts.none && c.alerts.emails.length === 0 && c.alerts.slackChannel === "",
      ["alerts", "emails"],
      "is empty and no alerts.slackChannel is set: the stack would have no alert at all " +
        "(add an address, or set alerts.none: true to run without alerts)",
    );
    need(
      c.alerts.none && (c.alerts.emails.length > 0 || c.alerts.slackChannel !== ""),
      ["alerts", "none"],
      "cannot be true while alerts.emails or alerts.slackChannel name a recipient: choose one",
    );
    need(c.app.source === "path" && !c.app.path, ["app", "path"], "is required when app.source is path");
    for (const key of ["database", "cache"] as const) {
      need(c.app.droplets > 1 && c[key].mode !== "managed", [key, "mode"],
        `must be managed when app.droplets is more than 1 (${c.app.droplets}): the app's data cannot live on one of several droplets`);
      need(c.hostMode === "existing" && c[key].mode === "managed", [key, "mode"],
        "must be docker when hostMode is existing (a managed cluster lives in the stack's DigitalOcean VPC)");
    }
    need(c.hostMode === "existing" && c.app.droplets > 1, ["app", "droplets"], "must be 1 when hostMode is existing");
    // The host's pg_dump and pg_restore are images.postgres' (the client container, docker-data): pg_dump
    // "cannot dump from PostgreSQL servers newer than its own major version; it will refuse to even
    // try" (PostgreSQL 17 docs, app-pgdump.html, Notes), and pg_restore 17 sends settings an older
    // server refuses (`SET transaction_timeout = 0`: PostgreSQL 15 answered "unrecognized
    // configuration parameter" on the VM suite's move). So the cluster runs the image's major.
    const imageMajor = /:(\d+)(?:[.-][^/:@]*)?$/.exec(c.images.postgres)?.[1];
    need(c.database.mode === "managed" && imageMajor !== undefined && /^[0-9]{2}$/.test(c.database.managed.version) &&
      Number(imageMajor) !== Number(c.database.managed.version),
      ["database", "managed", "version"],
      `must be images.postgres' major (${c.images.postgres}): the host dumps and restores the cluster with that image's pg_dump and pg_restore, which refuse a newer server and send an older one settings it does not know`);
    for (const [i, r] of c.nginx.routes.entries()) {
      need(c.app.droplets > 1 && r.idleTimeoutSeconds > LB_IDLE_TIMEOUT_MAX, ["nginx", "routes", String(i), "idleTimeoutSeconds"],
        `must be at most ${LB_IDLE_TIMEOUT_MAX} when app.droplets is more than 1: the load balancer closes a connection idle longer (http_idle_timeout_seconds)`);
    }
    appProcessRules(c.app, need);
    const routePaths = c.nginx.routes.map((r) => r.path);
    routePaths.forEach((p, i) => need(routePaths.indexOf(p) !== i, ["nginx", "routes", String(i), "path"], "is listed twice"));
    c.nginx.routes.forEach((r, i) => need(r.port !== undefined && [c.app.port, c.app.port + 1, 5432, 6379].includes(r.port),
      ["nginx", "routes", String(i), "port"], `must not be one of the app's two slots (${c.app.port}, ${c.app.port + 1}), PostgreSQL's or Redis's`));
    need(c.app.source === "git" && !c.app.gitUrl, ["app", "gitUrl"], "is required when app.source is git");
    if (c.app.source === "git" && c.app.gitUrl) {
      const overSsh = !c.app.gitUrl.startsWith("https://");
      need(overSsh && !c.appGitDeployKey, ["appGitDeployKey"],
        "is required for an SSH app.gitUrl: a deploy key of this stack's with read access (pulumi config set --secret nodehost:appGitDeployKey < key)");
      need(overSsh && c.app.gitHostKeys.length === 0, ["app", "gitHostKeys"],
        "is required for an SSH app.gitUrl: the git server's keys (ssh-keyscan -t ed25519 HOST, checked against its published fingerprints)");
      need(!overSsh && c.appGitDeployKey !== undefined, ["appGitDeployKey"], "is for an SSH app.gitUrl only (an https:// one is fetched without a key)");
    }
    need(c.alerts.slackChannel !== "" && !c.slackWebhookUrl, ["slackWebhookUrl"], "is required when alerts.slackChannel is set");
    need(
      c.ssh.openToWorld && c.ssh.allowFrom.length > 0,
      ["ssh", "openToWorld"],
      "cannot be true while ssh.allowFrom lists addresses: choose one",
    );
    for (const k of Object.keys(c.appSecrets ?? {})) {
      need(k in c.app.env, ["app", "env", k], "is also in appSecrets: set it in one place");
    }
    need(!c.backup.createBucket && !c.backup.bucketName, ["backup", "bucketName"], "is required when backup.createBucket is false");
    if (c.hostMode === "existing") {
      need(!c.backup.endpoint, ["backup", "endpoint"], "is required when hostMode is existing (no Spaces bucket is created)");
      need(!c.backup.bucketName, ["backup", "bucketName"], "is required when hostMode is existing");
      need(!c.backupAccessKey, ["backupAccessKey"], "is required when hostMode is existing");
      need(!c.backupSecretKey, ["backupSecretKey"], "is required when hostMode is existing");
    }
    // pgBackRest speaks S3 over HTTPS only (no plain-HTTP option among its repo-s3 options).
    need(
      c.backup.pointInTime.enabled && !!c.backup.endpoint?.startsWith("http://") && isLoopbackOrPrivate(new URL(c.backup.endpoint).hostname),
      ["backup", "pointInTime", "enabled"],
      "needs an https:// backup.endpoint (pgBackRest talks to S3 over HTTPS only): set the endpoint's https URL, or false",
    );
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
  backupPassphrase?: pulumi.Output<string>;
  backupPreviousPassphrases?: pulumi.Output<string[]>;
  backupPitrCipherPass?: pulumi.Output<string>;
  appSecrets?: pulumi.Output<Record<string, string>>;
  appGitDeployKey?: pulumi.Output<string>;
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
  names: { project?: string; stack?: string; today?: Date } = {},
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
      } else if (issue.code === "invalid_key") {
        // A record's key that its key schema refused: that schema's own message.
        problems.push(`${keyPath(issue.path)}: ${issue.issues[0]?.message ?? issue.message}`);
      } else if (issue.code === "invalid_type") {
        const got = valueAt(ours, issue.path);
        problems.push(`${keyPath(issue.path)}: ${got === undefined ? "is required" : `must be ${article(issue.expected)} (got ${describe(got)})`}`);
      } else {
        problems.push(`${keyPath(issue.path)}: ${issue.message}`);
      }
    }
  }

  if (result.success) {
    const { nodeMajor, allowEndOfLifeNode } = result.data.app;
    const end = NODE_END_OF_LIFE[nodeMajor];
    const today = (names.today ?? new Date()).toISOString().slice(0, 10);
    if (end && end <= today && !allowEndOfLifeNode) {
      problems.push(
        `${prefix}app.nodeMajor: Node.js ${nodeMajor} reached end of life on ${end} and gets no security fixes: ` +
          `choose ${CURRENT_LTS_NODE} (the current LTS) or another supported LTS, or set app.allowEndOfLifeNode: true to run it anyway`,
      );
    }
  }

  for (const k of SECRET_KEYS) {
    const full = `${prefix}${k}`;
    if (full in raw && !secretKeys.includes(full)) {
      problems.push(`${full}: must be set as a secret (pulumi config set --secret ${full} ...)`);
    }
  }
  const mode = (ours.hostMode as string | undefined) ?? "digitalocean";
  const project = names.project ?? pulumi.getProject();
  const stack = names.stack ?? pulumi.getStack();
  if (mode === "digitalocean") {
    // The provider reads the token from DIGITALOCEAN_TOKEN or DIGITALOCEAN_ACCESS_TOKEN
    // (terraform-provider-digitalocean v2.99.1 digitalocean/provider.go:50-55).
    const providerSecrets: [string, string[]][] = [
      ["digitalocean:token", ["DIGITALOCEAN_TOKEN", "DIGITALOCEAN_ACCESS_TOKEN"]],
      ["digitalocean:spacesAccessId", ["SPACES_ACCESS_KEY_ID"]],
      ["digitalocean:spacesSecretKey", ["SPACES_SECRET_ACCESS_KEY"]],
    ];
    for (const [key, envs] of providerSecrets) {
      if (key in raw) {
        if (!secretKeys.includes(key)) problems.push(`${key}: must be set as a secret (pulumi config set --secret ${key} ...)`);
      } else if (!envs.some((env) => process.env[env])) {
        problems.push(`${key}: is required when hostMode is digitalocean (or set ${envs.join(" or ")})`);
      }
    }
    // `<project>-<stack>` names the droplet, the volume `<name>-data` (lower-case letters, digits
    // and '-', starting with a letter, at most 64: digitalocean/openapi
    // specification/resources/volumes/models/volume_base.yml:22-27 @7c1300c) and the Spaces
    // bucket `<name>-backups-<6 hex>` (at most 63, lower-case): at most 48 leaves room for both.
    const name = `${project}-${stack}`;
    if (!/^[a-z][a-z0-9-]*[a-z0-9]$/.test(name) || name.length > 48) {
      problems.push(
        `stack: "${name}" must be lower-case letters, digits and dashes, start with a letter and be at most 48 characters: ` +
          "it names the droplet, volume and bucket (rename the stack: pulumi stack rename)",
      );
    }
  }

  if (problems.length > 0 || !result.success) throw new ConfigError(problems);
  const c = result.data;
  const secret = (v: string | undefined) => (v === undefined ? undefined : pulumi.secret(v));
  const site = c.subdomain ? `${c.subdomain}.${c.domain}` : c.domain;
  return {
    ...c,
    project,
    stack,
    siteNames: c.subdomain ? [site] : [site, `www.${site}`],
    sshPrivateKey: pulumi.secret(c.sshPrivateKey),
    basicAuthPassword: secret(c.basicAuthPassword),
    slackWebhookUrl: secret(c.slackWebhookUrl),
    backupAccessKey: secret(c.backupAccessKey),
    backupSecretKey: secret(c.backupSecretKey),
    backupPassphrase: secret(c.backupPassphrase),
    backupPreviousPassphrases: c.backupPreviousPassphrases === undefined ? undefined : pulumi.secret(c.backupPreviousPassphrases),
    backupPitrCipherPass: secret(c.backupPitrCipherPass),
    appSecrets: c.appSecrets === undefined ? undefined : pulumi.secret(c.appSecrets),
    appGitDeployKey: secret(c.appGitDeployKey),
  };
}

/** Reads the running stack's config. Call once, before declaring any resource. */
export function loadConfig(): StackConfig {
  const raw = pulumi.runtime.allConfig();
  const isSecret = (pulumi.runtime as unknown as { isConfigSecret: (k: string) => boolean }).isConfigSecret;
  const config = parseConfig(raw, Object.keys(raw).filter((k) => isSecret(k)));
  const unbuilt = unbuiltProblems(config);
  if (unbuilt.length > 0) throw new ConfigError(unbuilt);
  return config;
}

const NOT_YET = "the cloud side (load balancer, N droplets) and the site behind the balancer are built and tested " +
  "against the fake account, but every droplet would still run the backups and their restore on an empty cluster, " +
  "and no test yet shows a release rolling across droplets behind a balancer without failing a request " +
  "(docs/design/grow-past-one-droplet.md)";

/**
 * What `pulumi up` refuses until the rest of issue 13's host side lands: more than one droplet (a
 * managed PostgreSQL and a managed Valkey beside one droplet are built: docker-data moves the data).
 * The stack wiring behind these keys is exercised by test/unit/grow.test.ts through parseConfig; a real stack
 * gets this error, naming each key, before any resource.
 */
export function unbuiltProblems(c: Pick<StackConfig, "app">): string[] {
  const problems: string[] = [];
  if (c.app.droplets > 1) problems.push(`${NAMESPACE}:app.droplets: more than 1 is not available yet: ${NOT_YET}`);
  return problems;
}
