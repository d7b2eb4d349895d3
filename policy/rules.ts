// The nodehost policies: what a production stack must never lose or expose, checked on every preview.
import type { ReportViolation, ResourceValidationArgs, ResourceValidationPolicy } from "@pulumi/policy";

export const TYPES = {
  droplet: "digitalocean:index/droplet:Droplet",
  volume: "digitalocean:index/volume:Volume",
  reservedIp: "digitalocean:index/reservedIp:ReservedIp",
  bucket: "digitalocean:index/spacesBucket:SpacesBucket",
  domain: "digitalocean:index/domain:Domain",
  firewall: "digitalocean:index/firewall:Firewall",
  databaseCluster: "digitalocean:index/databaseCluster:DatabaseCluster",
  databaseDb: "digitalocean:index/databaseDb:DatabaseDb",
} as const;

/** Stacks whose resources get the production rules. */
export const PRODUCTION_STACKS = ["production"];
export const DATABASE_PORTS = [5432, 6379];
export const WORLD = ["0.0.0.0/0", "::/0"];

const STATEFUL: Record<string, string> = {
  [TYPES.droplet]: "droplet",
  [TYPES.volume]: "data volume",
  [TYPES.reservedIp]: "reserved IP",
  [TYPES.bucket]: "backup bucket",
  [TYPES.domain]: "DNS zone",
  [TYPES.databaseCluster]: "managed database cluster",
  [TYPES.databaseDb]: "managed database",
};

/** The stack a resource belongs to, from its URN (`urn:pulumi:<stack>::<project>::<type>::<name>`). */
export function stackOf(urn: string): string {
  return urn.replace(/^urn:pulumi:/, "").split("::")[0];
}

const inProduction = (args: ResourceValidationArgs) => PRODUCTION_STACKS.includes(stackOf(args.urn));

/**
 * The inclusive port range a firewall rule's `portRange` opens. DigitalOcean reads a missing,
 * empty, "0" or "all" range on tcp/udp as every port; anything unparseable is treated the same.
 */
export function portSpan(portRange: unknown): [number, number] {
  const text = typeof portRange === "string" ? portRange.trim() : "";
  const m = /^(\d+)(?:-(\d+))?$/.exec(text);
  if (!m || text === "0") return [1, 65535];
  const lo = Number(m[1]);
  return [lo, m[2] === undefined ? lo : Number(m[2])];
}

interface InboundRule {
  protocol?: string;
  portRange?: string;
  sourceAddresses?: string[];
  action?: string;
}

/** The tcp/udp rules that allow traffic in, with the port span each opens. */
function openingRules(props: Record<string, any>): { rule: InboundRule; span: [number, number] }[] {
  const rules: InboundRule[] = Array.isArray(props.inboundRules) ? props.inboundRules : [];
  return rules
    .filter((r) => (r.action ?? "allow") === "allow" && ["tcp", "udp"].includes(String(r.protocol).toLowerCase()))
    .map((rule) => ({ rule, span: portSpan(rule.portRange) }));
}

const describeRule = (r: InboundRule) =>
  `${r.protocol} ${r.portRange ?? "(all ports)"} from ${(r.sourceAddresses ?? []).join(", ") || "(no address)"}`;

export const statefulProtected: ResourceValidationPolicy = {
  name: "production-stateful-protected",
  description: "In production the droplet, data volume, reserved IP, backup bucket, DNS zone and managed database clusters and databases carry protect: true.",
  enforcementLevel: "mandatory",
  validateResource: (args: ResourceValidationArgs, report: ReportViolation) => {
    const what = STATEFUL[args.type];
    if (!what || !inProduction(args) || args.opts.protect) return;
    report(
      `the ${what} ${args.name} is not protected: production stateful resources need the resource option ` +
        `protect: true (nodehost:protect: true in Pulumi.production.yaml)`,
    );
  },
};

export const firewallNoDatabasePorts: ResourceValidationPolicy = {
  name: "firewall-no-database-ports",
  description: "No firewall opens PostgreSQL (5432) or Redis (6379) inbound, alone or inside a range, on any stack.",
  enforcementLevel: "mandatory",
  validateResource: (args: ResourceValidationArgs, report: ReportViolation) => {
    if (args.type !== TYPES.firewall) return;
    for (const { rule, span } of openingRules(args.props)) {
      const hit = DATABASE_PORTS.filter((p) => p >= span[0] && p <= span[1]);
      if (hit.length > 0) {
        report(
          `the firewall ${args.name} opens ${hit.join(" and ")} inbound (${describeRule(rule)}): ` +
            `PostgreSQL and Redis listen on 127.0.0.1 only and must stay closed`,
        );
      }
    }
  },
};

export const firewallNoWorldSsh: ResourceValidationPolicy = {
  name: "production-firewall-no-world-ssh",
  description: "In production no firewall opens SSH (22) to 0.0.0.0/0 or ::/0.",
  enforcementLevel: "mandatory",
  validateResource: (args: ResourceValidationArgs, report: ReportViolation) => {
    if (args.type !== TYPES.firewall || !inProduction(args)) return;
    for (const { rule, span } of openingRules(args.props)) {
      const world = (rule.sourceAddresses ?? []).filter((a) => WORLD.includes(a.trim()));
      if (22 >= span[0] && 22 <= span[1] && world.length > 0) {
        report(
          `the firewall ${args.name} opens SSH to the world (${describeRule(rule)}): ` +
            `production allows 22 only from nodehost:ssh.allowFrom`,
        );
      }
    }
  },
};

export const dropletMonitoring: ResourceValidationPolicy = {
  name: "production-droplet-monitoring",
  description: "In production every droplet runs the DigitalOcean monitoring agent (the CPU/memory/disk alerts need it).",
  enforcementLevel: "mandatory",
  validateResource: (args: ResourceValidationArgs, report: ReportViolation) => {
    if (args.type !== TYPES.droplet || !inProduction(args) || args.props.monitoring === true) return;
    report(
      `the droplet ${args.name} has monitoring ${String(args.props.monitoring ?? "unset")}: ` +
        `production droplets need monitoring: true or the CPU, memory and disk alerts never fire`,
    );
  },
};

export const bucketLifecycle: ResourceValidationPolicy = {
  name: "production-bucket-lifecycle-expiry",
  description:
    "In production every Spaces bucket has an enabled lifecycle rule that expires objects; a versioned one, " +
    "one that expires noncurrent versions (the backup tool prunes the current ones).",
  enforcementLevel: "mandatory",
  validateResource: (args: ResourceValidationArgs, report: ReportViolation) => {
    if (args.type !== TYPES.bucket || !inProduction(args)) return;
    const rules: any[] = Array.isArray(args.props.lifecycleRules) ? args.props.lifecycleRules : [];
    const enabled = rules.filter((r) => r?.enabled === true);
    if (args.props.versioning?.enabled === true) {
      // Deleted and overwritten objects stay as noncurrent versions until a rule expires them.
      if (!enabled.some((r) => Number(r.noncurrentVersionExpiration?.days) > 0)) {
        report(
          `the versioned bucket ${args.name} has no enabled lifecycle rule expiring noncurrent versions: ` +
            `deleted backups would pile up forever (set nodehost:backup.retentionRemoteDays)`,
        );
      }
      return;
    }
    if (!enabled.some((r) => Number(r.expiration?.days) > 0 || Boolean(r.expiration?.date))) {
      report(
        `the bucket ${args.name} has no enabled lifecycle rule with an expiration: ` +
          `off-site backups would pile up forever (set nodehost:backup.retentionRemoteDays)`,
      );
    }
  },
};

/** Every policy of the pack, in the order the pack lists them. */
export const policies: ResourceValidationPolicy[] = [
  statefulProtected,
  firewallNoDatabasePorts,
  firewallNoWorldSsh,
  dropletMonitoring,
  bucketLifecycle,
];
