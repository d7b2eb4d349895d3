// A fake DigitalOcean account for the mock tests: checks what the program declares the way the API
// and the provider would, returns outputs shaped like theirs, and plays the engine's create,
// update, replace and delete against state that lasts across stacks and runs.
//
// Sources (read, not run): terraform-provider-digitalocean v2.99.1 (what @pulumi/digitalocean 4.80
// bridges), cited as "tfdo <file>:<line>" under digitalocean/; digitalocean/openapi @7c1300c,
// cited as "spec <file>:<line>" under specification/. What this fake does not model is listed in
// the README's table of stand-ins.
import * as crypto from "crypto";
import * as net from "net";
import type * as pulumi from "@pulumi/pulumi";

const T = {
  droplet: "digitalocean:index/droplet:Droplet",
  volume: "digitalocean:index/volume:Volume",
  volumeAttachment: "digitalocean:index/volumeAttachment:VolumeAttachment",
  vpc: "digitalocean:index/vpc:Vpc",
  reservedIp: "digitalocean:index/reservedIp:ReservedIp",
  reservedIpAssignment: "digitalocean:index/reservedIpAssignment:ReservedIpAssignment",
  sshKey: "digitalocean:index/sshKey:SshKey",
  tag: "digitalocean:index/tag:Tag",
  firewall: "digitalocean:index/firewall:Firewall",
  domain: "digitalocean:index/domain:Domain",
  dnsRecord: "digitalocean:index/dnsRecord:DnsRecord",
  bucket: "digitalocean:index/spacesBucket:SpacesBucket",
  spacesKey: "digitalocean:index/spacesKey:SpacesKey",
  project: "digitalocean:index/project:Project",
  monitorAlert: "digitalocean:index/monitorAlert:MonitorAlert",
  uptimeCheck: "digitalocean:index/uptimeCheck:UptimeCheck",
  uptimeAlert: "digitalocean:index/uptimeAlert:UptimeAlert",
  databaseCluster: "digitalocean:index/databaseCluster:DatabaseCluster",
  databaseDb: "digitalocean:index/databaseDb:DatabaseDb",
  databaseUser: "digitalocean:index/databaseUser:DatabaseUser",
  databaseFirewall: "digitalocean:index/databaseFirewall:DatabaseFirewall",
  certificate: "digitalocean:index/certificate:Certificate",
  loadBalancer: "digitalocean:index/loadBalancer:LoadBalancer",
} as const;
export const DO_TYPES = T;

/**
 * Inputs that force a new resource, per type (Pulumi's camelCase names of the provider's fields).
 * The droplet's ipv6 forces one only from true to false (tfdo droplet/resource_droplet.go:313-318).
 */
export const FORCE_NEW: Record<string, string[]> = {
  // tfdo droplet/resource_droplet.go:66-83 (image, region), 214-217, 232-248 (ssh_keys,
  // user_data), 261-287 (monitoring, droplet_agent, vpc_uuid, gpu_partition_mode)
  [T.droplet]: ["image", "region", "publicNetworking", "sshKeys", "userData", "monitoring", "dropletAgent", "vpcUuid", "gpuPartitionMode"],
  // tfdo volume/resource_volume.go:29-83
  [T.volume]: ["region", "name", "description", "snapshotId", "initialFilesystemType", "initialFilesystemLabel"],
  [T.volumeAttachment]: ["dropletId", "volumeId"], // tfdo volume/resource_volume_attachment.go:25-36
  [T.vpc]: ["region", "ipRange"], // tfdo vpc/resource_vpc.go:38-55
  [T.reservedIp]: ["region"], // tfdo reservedip/resource_reserved_ip.go:28-31
  [T.reservedIpAssignment]: ["ipAddress", "dropletId"], // tfdo reservedip/resource_reserved_ip_assignment.go:30-40
  [T.sshKey]: ["publicKey"], // tfdo sshkey/resource_ssh_key.go:37
  [T.tag]: ["name"], // tfdo tag/resource_tag.go:23
  [T.domain]: ["name", "ipAddress"], // tfdo domain/resource_domain.go:24-33
  [T.dnsRecord]: ["type", "domain"], // tfdo domain/resource_record.go:28-48
  // tfdo spaces/resource_spaces_bucket.go:45-48; `name` (35-39) is NOT ForceNew: the provider
  // updates it in place and the bucket keeps its old name.
  [T.bucket]: ["region"],
  // tfdo database/resource_database_cluster.go:40-60 (name, engine), 145-159 (private_network_uuid,
  // project_id). `region` (87-95) is NOT ForceNew: the provider migrates the cluster in place
  // (474-495). `version` upgrades in place (535-541); size and node_count resize (441-472).
  [T.databaseCluster]: ["name", "engine", "privateNetworkUuid", "projectId"],
  [T.databaseDb]: ["name", "clusterId"], // tfdo database/resource_database_db.go:27-38 (no update at all)
  [T.databaseUser]: ["name", "clusterId"], // tfdo database/resource_database_user.go:31-42
  [T.databaseFirewall]: ["clusterId"], // tfdo database/resource_database_firewall.go:27-32
  // tfdo certificate/resource_certificate.go:72-139 (every argument; the resource has no update)
  [T.certificate]: ["name", "privateKey", "leafCertificate", "certificateChain", "domains", "type"],
  // tfdo loadbalancer/resource_loadbalancer.go:144-147 (region), 381-404 (vpc_uuid, subnet_uuid,
  // ip), 451-455 (type), 574-586 (network, network_stack)
  [T.loadBalancer]: ["region", "vpcUuid", "subnetUuid", "ip", "type", "network", "networkStack"],
};

/** The caching engines: spec databases/models/database_cluster.yml:29 ("redis" for Caching), and valkey. */
const CACHING = new Set(["redis", "valkey"]);
/** strconv.Atoi as the provider's version suppression uses it: 0 for what is not an integer. */
const atoi = (v: unknown) => (/^[+-]?\d+$/.test(String(v ?? "")) ? Number(v) : 0);

/**
 * Changes the provider does not report (its DiffSuppressFuncs): (stored, declared, all declared
 * inputs) => true when the change is suppressed. A suppressed change neither updates nor replaces.
 */
const DIFF_SUPPRESS: Record<string, Record<string, (old: any, now: any, i: Record<string, any>) => boolean>> = {
  [T.databaseCluster]: {
    // tfdo database/resource_database_cluster.go:52-59: redis <-> valkey is not a change.
    engine: (old, now) => CACHING.has(old) && CACHING.has(now),
    // :71-78: a caching cluster whose stored version is above the config's (a forced upgrade).
    version: (old, now, i) => CACHING.has(i.engine) && atoi(old) > atoi(now),
  },
  // tfdo certificate/resource_certificate.go:126-128: a custom certificate's domains are computed.
  [T.certificate]: { domains: (_old, _now, i) => (i.type ?? "custom") === "custom" },
  // tfdo loadbalancer/resource_loadbalancer.go:350-355 with util/suppress.go:9-12 (EqualFold).
  [T.loadBalancer]: { dropletTag: (old, now) => typeof old === "string" && typeof now === "string" && old.toLowerCase() === now.toLowerCase() },
};

/** Regions that take new droplets (DigitalOcean's regional availability list, 2026-11). */
const DROPLET_REGIONS = new Set(["nyc1", "nyc2", "nyc3", "sfo2", "sfo3", "ams3", "sgp1", "lon1", "fra1", "tor1", "blr1", "syd1", "atl1", "ric1"]);
const SPACES_REGIONS = new Set(["nyc3", "sfo2", "sfo3", "ams3", "sgp1", "lon1", "fra1", "syd1", "blr1", "atl1", "tor1"]);
/**
 * Regions that take each engine: spec databases/responses/options.yml:118-133 (mysql), 376-391 (pg),
 * 608-623 (redis), 670-684 (valkey: no nyc2). That file is an example response of
 * GET /v2/databases/options, the only region list the spec gives; other engines are not checked.
 */
const DB_REGIONS: Record<string, Set<string>> = (() => {
  const all = ["ams3", "blr1", "fra1", "lon1", "nyc1", "nyc2", "nyc3", "sfo2", "sfo3", "sgp1", "syd1", "tor1", "ric1", "atl1"];
  return { mysql: new Set(all), pg: new Set(all), redis: new Set(all), valkey: new Set(all.filter((r) => r !== "nyc2")) };
})();
/** spec databases/models/database_cluster.yml:14-26 (the provider takes any non-empty engine, :47-51). */
const DB_ENGINES = new Set(["pg", "mysql", "redis", "valkey", "mongodb", "kafka", "opensearch", "advanced_pg", "advanced_mysql"]);
/** spec databases/models/eviction_policy_model.yml:1-8 */
const EVICTION_POLICIES = new Set(["noeviction", "allkeys_lru", "allkeys_random", "volatile_lru", "volatile_random", "volatile_ttl"]);
/** spec databases/databases_create_cluster.yml:44: "Caching cluster creates are no longer supported as of 2025-04-30T00:00:00Z". */
const CACHING_CREATES_END = Date.parse("2025-04-30T00:00:00Z");
/** spec DigitalOcean-public.v2.yaml:443-459: the resource kinds a Project takes. */
const PROJECT_URN_KINDS = new Set(["app", "dbaas", "domain", "droplet", "floatingip", "kubernetes", "loadbalancer", "space", "volume"]);

/** An error as the provider reports a failed API call. */
export class ApiError extends Error {
  constructor(public readonly status: number, message: string) {
    super(`${status} ${message}`);
    this.name = "ApiError";
  }
}

export interface Change {
  op: "create" | "update" | "replace" | "delete";
  type: string;
  name: string;
  fields?: string[];
}

interface Stored {
  stack: string;
  type: string;
  name: string;
  id: string;
  /** What the engine keeps as the resource's inputs (after a refresh: what the provider read). */
  inputs: Record<string, any>;
  outputs: Record<string, any>;
  protect: boolean;
  /** customTimeouts.delete in seconds (the provider's default where none is set). */
  deleteTimeout?: number;
  seq: number;
  /** Registered in the run in progress. */
  seen: boolean;
}

/** tfdo monitoring/resource_monitor_alert.go:32-64 (godo's constants, values as in spec monitoring/models/alert_policy_request.yml:39-69 @7c1300c). */
const MONITOR_ALERT_TYPES = new Set([
  "v1/insights/droplet/cpu", "v1/insights/droplet/memory_utilization_percent", "v1/insights/droplet/disk_utilization_percent",
  "v1/insights/droplet/public_outbound_bandwidth", "v1/insights/droplet/public_inbound_bandwidth",
  "v1/insights/droplet/private_outbound_bandwidth", "v1/insights/droplet/private_inbound_bandwidth",
  "v1/insights/droplet/disk_read", "v1/insights/droplet/disk_write",
  "v1/insights/droplet/load_1", "v1/insights/droplet/load_5", "v1/insights/droplet/load_15",
  "v1/insights/lbaas/avg_cpu_utilization_percent", "v1/insights/lbaas/connection_utilization_percent",
  "v1/insights/lbaas/droplet_health", "v1/insights/lbaas/tls_connections_per_second_utilization_percent",
  "v1/insights/lbaas/increase_in_http_error_rate_percentage_5xx", "v1/insights/lbaas/increase_in_http_error_rate_percentage_4xx",
  "v1/insights/lbaas/increase_in_http_error_rate_count_5xx", "v1/insights/lbaas/increase_in_http_error_rate_count_4xx",
  "v1/insights/lbaas/high_http_request_response_time", "v1/insights/lbaas/high_http_request_response_time_50p",
  "v1/insights/lbaas/high_http_request_response_time_95p", "v1/insights/lbaas/high_http_request_response_time_99p",
  "v1/dbaas/alerts/load_15_alerts", "v1/dbaas/alerts/memory_utilization_alerts",
  "v1/dbaas/alerts/disk_utilization_alerts", "v1/dbaas/alerts/cpu_alerts",
]);

interface Cloud {
  droplets: Map<string, { region: string; vpc?: string; volumes: Set<string>; status: "active" | "off" }>;
  volumes: Map<string, { name: string; region: string; attachedTo?: string }>;
  vpcs: Map<string, { name: string; region: string; isDefault: boolean; ipRange: string }>;
  ips: Map<string, { region: string; dropletId?: string }>;
  keys: Map<string, { publicKey: string }>; // by fingerprint
  domains: Set<string>;
  buckets: Map<string, { region: string; objects: number }>;
  projects: Map<string, { name: string; resources: Set<string> }>;
  names: Map<string, string>; // unique-name scope -> owner id
  /** Database clusters by id; their dbs, users and firewall live inside them (/v2/databases/{id}/...). */
  databases: Map<string, { name: string; engine: string; region: string; vpc?: string; firewall?: string; dbs: Set<string>; users: Set<string> }>;
  certificates: Map<string, { name: string; type: string }>; // by uuid
  loadBalancers: Map<string, { region: string; vpc?: string; certificates: Set<string> }>; // certificate uuids in use
}

const deepEqual = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
const FINGERPRINT = (publicKey: string) =>
  crypto.createHash("md5").update(Buffer.from(publicKey.trim().split(/\s+/)[1] ?? "", "base64")).digest("hex").match(/../g)!.join(":");

export class FakeAccount {
  private state = new Map<string, Stored>();
  private cloud: Cloud = {
    droplets: new Map(), volumes: new Map(), vpcs: new Map(), ips: new Map(), keys: new Map(),
    domains: new Set(), buckets: new Map(), projects: new Map(), names: new Map(),
    databases: new Map(), certificates: new Map(), loadBalancers: new Map(),
  };
  private seq = 0;
  private nextDroplet = 300000001;
  private nextIp = 10;
  private nextLbIp = 10;
  /** Replaced resources whose old copy the engine deletes at the end of the run. */
  private pendingDeletes: Stored[] = [];
  private toReplace = new Set<string>();
  public changes: Change[] = [];
  /** Volumes detached from a droplet that was still running: a database on them sees I/O errors. */
  public hotDetaches: string[] = [];
  /** The API's clock, for rules that changed on a date (caching cluster creates). */
  public now: Date = new Date();

  /** What the engine would do for one registration; returns the id and outputs the provider gives. */
  register(stack: string, type: string, name: string, inputs: Record<string, any>, opts: pulumi.CustomResourceOptions): { id: string; outputs: Record<string, any> } {
    if (!type.startsWith("digitalocean:")) return { id: `${name}-id`, outputs: {} };
    const key = `${stack}::${type}::${name}`;
    const prev = this.state.get(key);
    const protect = opts.protect === true;
    if (!prev) {
      const made = this.create(stack, type, name, inputs, opts);
      this.changes.push({ op: "create", type, name });
      return made;
    }
    const ignored = new Set(opts.ignoreChanges ?? []);
    const effective = { ...inputs };
    for (const f of ignored) if (f in prev.inputs) effective[f] = prev.inputs[f];
    const suppress = DIFF_SUPPRESS[type] ?? {};
    const changed = [...new Set([...Object.keys(effective), ...Object.keys(prev.inputs)])]
      .filter((f) => !deepEqual(effective[f], prev.inputs[f]) && !suppress[f]?.(prev.inputs[f], effective[f], effective));
    prev.deleteTimeout = deleteTimeout(opts);
    if (changed.length === 0 && !this.toReplace.has(key)) {
      prev.seen = true;
      prev.protect = protect;
      return { id: prev.id, outputs: prev.outputs };
    }
    const forceNew = new Set([...(FORCE_NEW[type] ?? []), ...(opts.replaceOnChanges ?? [])]);
    const replacing = changed.filter((f) => forceNew.has(f) || (type === T.droplet && f === "ipv6" && prev.inputs.ipv6 && !effective.ipv6));
    if (this.toReplace.delete(key)) replacing.push("--replace");
    if (replacing.length === 0) {
      const outputs = this.update(prev, effective, changed);
      prev.inputs = effective;
      prev.outputs = outputs;
      prev.seen = true;
      prev.protect = protect;
      this.changes.push({ op: "update", type, name, fields: changed });
      return { id: prev.id, outputs };
    }
    if (prev.protect) {
      // pulumi/pulumi pkg/resource/deploy/step_generator.go: a protected resource cannot be replaced.
      throw new Error(`unable to replace resource "${name}" (replacing: ${replacing.join(", ")})\nas it is currently marked for protection. To unprotect the resource, remove the \`protect\` flag from the resource in your Pulumi program and run \`pulumi up\``);
    }
    if (opts.deleteBeforeReplace) {
      // The engine plans the whole delete-before-replace (this resource and the dependents it must
      // replace with it) and refuses it if any is protected, before it deletes anything.
      const dependents = this.dependentsToReplace(prev);
      const held = dependents.find((x) => x.protect);
      if (held) throw new Error(`unable to replace resource "${held.name}" (it depends on "${name}", which is being replaced)\nas it is currently marked for protection`);
      this.changes.push({ op: "replace", type, name, fields: replacing });
      for (const x of dependents) {
        this.changes.push({ op: "replace", type: x.type, name: x.name, fields: [`(${name} replaced)`] });
        this.state.delete(this.keyOf(x));
        this.destroyOne(x);
      }
      this.state.delete(key);
      this.destroyOne(prev);
      return this.create(stack, type, name, effective, opts);
    }
    this.changes.push({ op: "replace", type, name, fields: replacing });
    // Create first (it takes the key over): a refused replacement leaves the old one in state.
    const made = this.create(stack, type, name, effective, opts);
    this.pendingDeletes.push(prev);
    return made;
  }

  /** After the program: the engine deletes replaced copies, then what the program no longer declares. */
  finish(stack: string): void {
    for (const old of this.pendingDeletes.splice(0).reverse()) this.destroyOne(old);
    const gone = [...this.state.values()].filter((r) => r.stack === stack && !r.seen).sort((a, b) => b.seq - a.seq);
    for (const r of gone) {
      if (r.protect) throw new Error(`unable to delete resource "${r.name}"\nas it is currently marked for protection`);
      this.changes.push({ op: "delete", type: r.type, name: r.name });
      // A delete that fails leaves the resource in state, as the engine does.
      this.destroyOne(r);
      this.state.delete(this.keyOf(r));
    }
    for (const r of this.state.values()) r.seen = false;
  }

  /** `pulumi refresh`: what the provider reads back replaces the stored inputs where it differs. */
  refresh(stack: string): void {
    for (const r of [...this.state.values()].filter((x) => x.stack === stack)) {
      const exists = this.readBack(r);
      if (!exists) this.state.delete(this.keyOf(r));
    }
  }

  /** `pulumi destroy`: everything the stack holds, newest first; protected resources stop it. */
  destroy(stack: string): void {
    const rs = [...this.state.values()].filter((r) => r.stack === stack).sort((a, b) => b.seq - a.seq);
    const prot = rs.filter((r) => r.protect);
    if (prot.length > 0) throw new Error(`${prot.length} protected resource(s) cannot be deleted: ${prot.map((r) => r.name).join(", ")}`);
    for (const r of rs) {
      try {
        this.destroyOne(r);
      } catch (e) {
        throw new Error(`deleting ${r.name}: ${(e as Error).message}`);
      }
      this.state.delete(this.keyOf(r));
      this.changes.push({ op: "delete", type: r.type, name: r.name });
    }
  }

  /** A droplet destroyed outside Pulumi (a disaster); its volume and reserved IP are released. */
  loseDroplet(stack: string, name: string): void {
    const r = this.state.get(`${stack}::${T.droplet}::${name}`);
    if (!r) throw new Error(`no droplet ${name} in ${stack}`);
    const d = this.cloud.droplets.get(r.id)!;
    for (const v of d.volumes) this.cloud.volumes.get(v)!.attachedTo = undefined;
    for (const ip of this.cloud.ips.values()) if (ip.dropletId === r.id) ip.dropletId = undefined;
    this.cloud.droplets.delete(r.id);
    this.releaseName(r.id);
  }

  resourcesOf(stack: string): { type: string; name: string; id: string; inputs: Record<string, any> }[] {
    return [...this.state.values()].filter((r) => r.stack === stack).map(({ type, name, id, inputs }) => ({ type, name, id, inputs }));
  }

  /** `pulumi up --replace <urn>`: the next registration of this resource replaces it. */
  markReplace(stack: string, type: string, name: string): void {
    this.toReplace.add(`${stack}::${type}::${name}`);
  }

  /** An object lands in a bucket (the host's backups do this). */
  putObject(bucket: string): void {
    const b = this.cloud.buckets.get(bucket);
    if (!b) throw new ApiError(404, `NoSuchBucket: ${bucket}`);
    b.objects++;
  }

  /** A key the user already has in the account (registered by hand or by another tool). */
  addSshKey(publicKey: string): void {
    this.cloud.keys.set(FINGERPRINT(publicKey), { publicKey });
  }

  /** A domain the user already has in the account (one this program does not manage). */
  addDomain(name: string): void {
    this.cloud.domains.add(name);
  }

  /** Every VPC's address range, as the account holds it (given, or generated when none was). */
  vpcRanges(): string[] {
    return [...this.cloud.vpcs.values()].map((v) => v.ipRange);
  }

  isDefaultVpc(id: string): boolean {
    return this.cloud.vpcs.get(id)?.isDefault === true;
  }

  // ---- the API, one resource kind at a time ---------------------------------------------------

  private keyOf(r: Stored) {
    return `${r.stack}::${r.type}::${r.name}`;
  }

  private claimName(scope: string, owner: string, conflict: ApiError) {
    if (this.cloud.names.has(scope)) throw conflict;
    this.cloud.names.set(scope, owner);
  }

  private releaseName(owner: string) {
    for (const [k, v] of this.cloud.names) if (v === owner) this.cloud.names.delete(k);
  }

  private uuid(seed: string) {
    return crypto.createHash("sha1").update(`${seed}:${this.seq}`).digest("hex").replace(/^(.{8})(.{4})(.{4})(.{4})(.{12}).*/, "$1-$2-$3-$4-$5");
  }

  private create(stack: string, type: string, name: string, inputs: Record<string, any>, opts: pulumi.CustomResourceOptions): { id: string; outputs: Record<string, any> } {
    const { id, outputs } = this.apiCreate(type, inputs, opts);
    this.state.set(`${stack}::${type}::${name}`, {
      stack, type, name, id, inputs, outputs, protect: opts.protect === true, deleteTimeout: deleteTimeout(opts), seq: ++this.seq, seen: true,
    });
    return { id, outputs };
  }

  private apiCreate(type: string, i: Record<string, any>, opts: pulumi.CustomResourceOptions): { id: string; outputs: Record<string, any> } {
    const need = (field: string) => {
      if (i[field] === undefined || i[field] === "") throw new ApiError(422, `${field} is required`);
    };
    switch (type) {
      case T.droplet: {
        need("name"); need("region"); need("size"); need("image");
        // spec droplets/models/droplet_single_create.yml:9
        if (!/^[a-zA-Z0-9]?[a-z0-9A-Z.-]*[a-z0-9A-Z]$/.test(i.name)) throw new ApiError(422, `Name is invalid: ${i.name}`);
        if (!DROPLET_REGIONS.has(i.region)) throw new ApiError(422, `Region is not available: ${i.region}`);
        // A droplet takes keys by id or fingerprint that are already in the account.
        const unknown = (i.sshKeys ?? []).filter((k: string) => !this.cloud.keys.has(k));
        if (unknown.length > 0) throw new ApiError(422, `${unknown.join(", ")} are invalid key identifiers for Droplet creation.`);
        if (i.backupPolicy && !i.backups) throw new Error("backup_policy can only be set when backups are enabled"); // tfdo droplet/resource_droplet.go:27,412-416
        if (i.vpcUuid) {
          const vpc = this.cloud.vpcs.get(i.vpcUuid);
          if (!vpc) throw new ApiError(422, `vpc ${i.vpcUuid} not found`);
          if (vpc.region !== i.region) throw new ApiError(422, "vpc is in another region");
        }
        const id = String(this.nextDroplet++);
        const volumes = new Set<string>();
        for (const v of i.volumeIds ?? []) {
          const vol = this.cloud.volumes.get(v);
          if (!vol) throw new ApiError(404, `volume ${v} not found`);
          if (vol.region !== i.region) throw new ApiError(422, "volume is in another region");
          if (vol.attachedTo) throw new ApiError(422, `volume ${vol.name} is already attached to droplet ${vol.attachedTo}`);
          vol.attachedTo = id;
          volumes.add(v);
        }
        this.cloud.droplets.set(id, { region: i.region, vpc: i.vpcUuid, volumes, status: "active" });
        const n = this.nextIp++;
        return {
          id,
          outputs: {
            dropletUrn: `do:droplet:${id}`, // godo droplets.go URN(): do:droplet:<id>
            // State keeps the SHA-1 of the user-data, not the text (tfdo v2.99.1
            // droplet/resource_droplet.go:242-251, util/hash.go HashString).
            userData: i.userData === undefined ? undefined : crypto.createHash("sha1").update(String(i.userData)).digest("hex"),
            ipv4Address: `203.0.113.${n}`,
            ipv4AddressPrivate: `10.110.0.${n}`,
            ipv6Address: i.ipv6 ? `2001:db8::${n}` : "",
            volumeIds: [...volumes],
            status: "active",
          },
        };
      }
      case T.volume: {
        need("name"); need("region"); need("size");
        // spec volumes/models/volume_base.yml:22-27
        if (!/^[a-z][a-z0-9-]{0,63}$/.test(i.name) || i.name.length > 64) throw new ApiError(422, `name must be lower-case letters, digits and '-', starting with a letter: ${i.name}`);
        if (i.size < 1 || i.size > 16384) throw new ApiError(422, "size_gigabytes must be between 1 and 16384");
        const id = this.uuid(`volume:${i.name}`);
        // Volume names are unique within a region.
        this.claimName(`volume:${i.region}:${i.name}`, id, new ApiError(409, `a volume named ${i.name} already exists in ${i.region}`));
        this.cloud.volumes.set(id, { name: i.name, region: i.region });
        return { id, outputs: { volumeUrn: `do:volume:${id}` } };
      }
      case T.volumeAttachment: {
        const vol = this.cloud.volumes.get(i.volumeId);
        if (!vol) throw new ApiError(404, "volume not found");
        if (vol.attachedTo) throw new ApiError(422, `volume ${vol.name} is already attached to droplet ${vol.attachedTo}`);
        const d = this.cloud.droplets.get(String(i.dropletId));
        if (!d) throw new ApiError(404, "droplet not found");
        vol.attachedTo = String(i.dropletId);
        d.volumes.add(i.volumeId);
        return { id: `${i.dropletId}-${i.volumeId}`, outputs: {} };
      }
      case T.vpc: {
        need("name"); need("region");
        // spec vpcs/models/vpc.yml:33-38: unique, alphanumerics, '-' and '.'
        if (!/^[a-zA-Z0-9.-]+$/.test(i.name)) throw new ApiError(422, `name is invalid: ${i.name}`);
        if (i.ipRange !== undefined && !privateRange(i.ipRange)) throw new ApiError(422, `ip_range ${i.ipRange} must be an RFC 1918 range from /16 to /28`);
        const id = this.uuid(`vpc:${i.name}`);
        this.claimName(`vpc:${i.name}`, id, new ApiError(409, `a VPC named ${i.name} already exists`));
        // spec vpcs/vpcs_create.yml:9-11: the first VPC made in a region becomes its default.
        const isDefault = ![...this.cloud.vpcs.values()].some((v) => v.region === i.region);
        // spec vpcs/models/vpc.yml:68-76: with no ip_range, a /20 that overlaps no other VPC of
        // the account is generated (and returned, as every range is).
        const taken = new Set([...this.cloud.vpcs.values()].map((v) => v.ipRange));
        let ipRange = i.ipRange as string | undefined;
        for (let k = 0; ipRange === undefined; k++) if (!taken.has(`10.${110 + k}.0.0/20`)) ipRange = `10.${110 + k}.0.0/20`;
        this.cloud.vpcs.set(id, { name: i.name, region: i.region, isDefault, ipRange });
        return { id, outputs: { vpcUrn: `do:vpc:${id}`, default: isDefault, ipRange } };
      }
      case T.reservedIp: {
        need("region");
        const ip = `198.51.100.${this.nextIp++}`;
        this.cloud.ips.set(ip, { region: i.region });
        // godo reserved_ips.go URN(): do:reservedip:<ip> (the Projects API lists it as do:floatingip)
        return { id: ip, outputs: { ipAddress: ip, reservedIpUrn: `do:reservedip:${ip}` } };
      }
      case T.reservedIpAssignment: {
        const ip = this.cloud.ips.get(i.ipAddress);
        const d = this.cloud.droplets.get(String(i.dropletId));
        if (!ip || !d) throw new ApiError(404, "reserved IP or droplet not found");
        if (ip.region !== d.region) throw new ApiError(422, "the reserved IP and the droplet are in different regions");
        ip.dropletId = String(i.dropletId);
        return { id: `${i.ipAddress}-${i.dropletId}`, outputs: {} };
      }
      case T.sshKey: {
        need("name"); need("publicKey");
        const fp = FINGERPRINT(i.publicKey);
        if (this.cloud.keys.has(fp)) throw new ApiError(422, "SSH Key is already in use on your account");
        this.cloud.keys.set(fp, { publicKey: i.publicKey });
        return { id: String(4000000 + this.seq), outputs: { fingerprint: fp } };
      }
      case T.tag: {
        if (!/^[a-zA-Z0-9_:-]{1,255}$/.test(i.name)) throw new ApiError(422, `tag name is invalid: ${i.name}`);
        return { id: i.name, outputs: {} };
      }
      case T.firewall: {
        for (const r of i.inboundRules ?? []) {
          if (!["tcp", "udp", "icmp"].includes(r.protocol)) throw new ApiError(422, `protocol ${r.protocol} is invalid`);
          for (const a of r.sourceAddresses ?? []) if (!validCidr(a)) throw new ApiError(422, `${a} is not a valid address`);
        }
        return { id: this.uuid(`firewall:${i.name}`), outputs: {} };
      }
      case T.domain: {
        need("name");
        if (this.cloud.domains.has(i.name)) throw new ApiError(422, `Domain ${i.name} already exists`);
        this.cloud.domains.add(i.name);
        return { id: i.name, outputs: { domainUrn: `do:domain:${i.name}` } };
      }
      case T.dnsRecord: {
        if (!this.cloud.domains.has(i.domain)) throw new ApiError(404, `The resource you were accessing could not be found (domain ${i.domain})`);
        return { id: String(700000 + this.seq), outputs: { fqdn: i.name === "@" ? i.domain : `${i.name}.${i.domain}` } };
      }
      case T.bucket: {
        need("name"); need("region");
        if (!SPACES_REGIONS.has(i.region)) throw new ApiError(400, `Spaces is not available in ${i.region}`);
        if (!/^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/.test(i.name)) throw new ApiError(400, `InvalidBucketName: ${i.name}`);
        if (this.cloud.buckets.has(i.name)) throw new ApiError(409, `BucketAlreadyExists: ${i.name}`);
        // Each rule needs an action: "At least one of `expiration` or `noncurrentVersionExpiration`
        // must be specified" (@pulumi/digitalocean types/input.d.ts, SpacesBucketLifecycleRule);
        // noncurrent days at least 1 (tfdo v2.99.1 spaces/resource_spaces_bucket.go:187-191).
        for (const r of (i.lifecycleRules ?? []) as { expiration?: unknown; noncurrentVersionExpiration?: { days?: number } }[]) {
          if (!r.expiration && !r.noncurrentVersionExpiration) throw new ApiError(400, "MalformedXML: a lifecycle rule has no action");
          if (r.noncurrentVersionExpiration && !((r.noncurrentVersionExpiration.days ?? 0) >= 1)) throw new ApiError(400, "InvalidArgument: NoncurrentDays must be at least 1");
        }
        this.cloud.buckets.set(i.name, { region: i.region, objects: 0 });
        return { id: i.name, outputs: { bucketUrn: `do:space:${i.name}`, bucketDomainName: `${i.name}.${i.region}.digitaloceanspaces.com` } };
      }
      case T.spacesKey: {
        for (const g of i.grants ?? []) if (!this.cloud.buckets.has(g.bucket)) throw new ApiError(404, `bucket ${g.bucket} not found`);
        return { id: `DO00${this.seq}`, outputs: { accessKey: `DO00FAKE${this.seq}`, secretKey: `fake-spaces-secret-${this.seq}` } };
      }
      case T.project: {
        need("name");
        // tfdo project/resource_project.go:54-58
        if (i.environment && !["development", "staging", "production"].includes(String(i.environment).toLowerCase())) throw new ApiError(422, `environment ${i.environment} is invalid`);
        const id = this.uuid(`project:${i.name}`);
        this.claimName(`project:${i.name}`, id, new ApiError(409, `a project named ${i.name} already exists`));
        this.cloud.projects.set(id, { name: i.name, resources: new Set() });
        this.assign(id, i.resources ?? []);
        return { id, outputs: {} };
      }
      case T.monitorAlert: {
        // tfdo monitoring/resource_monitor_alert.go:67-75 (compare), 148-153 (window)
        if (!["GreaterThan", "LessThan"].includes(i.compare)) throw new ApiError(422, `compare ${i.compare} is invalid`);
        if (!["5m", "10m", "30m", "1h"].includes(i.window)) throw new ApiError(422, `window ${i.window} is invalid`);
        // tfdo monitoring/resource_monitor_alert.go:35-64: the types the provider takes (droplet,
        // load balancer and dbaas metrics; spec monitoring/models/alert_policy_request.yml:39-69 @7c1300c).
        if (!MONITOR_ALERT_TYPES.has(i.type)) throw new ApiError(422, `type ${i.type} is invalid`);
        // Entities are ids of what the type's namespace names (spec alert_policy_request.yml:27-32
        // gives only "string"; a droplet id for droplet metrics, a cluster or load balancer id else).
        const kind = String(i.type).startsWith("v1/dbaas/") ? "databases" : String(i.type).startsWith("v1/insights/lbaas/") ? "loadBalancers" : "droplets";
        for (const e of i.entities ?? []) {
          if (!this.cloud[kind].has(String(e))) throw new ApiError(422, `entity ${e} is not one of this account's ${kind} (alert type ${i.type})`);
        }
        if ((i.alerts?.emails ?? []).length === 0 && (i.alerts?.slacks ?? []).length === 0) throw new ApiError(422, "alerts need an email or a Slack channel");
        return { id: this.uuid("alert"), outputs: {} };
      }
      case T.uptimeCheck: {
        if (!["ping", "http", "https"].includes(i.type ?? "https")) throw new ApiError(422, `type ${i.type} is invalid`); // tfdo uptime/resource_uptime_check.go:43-51
        // spec uptime/models/check.yml:43-51 (the provider does not check them itself)
        for (const r of i.regions ?? []) if (!["us_east", "us_west", "eu_west", "se_asia"].includes(r)) throw new ApiError(422, `region ${r} is invalid`);
        return { id: this.uuid(`check:${i.name}`), outputs: {} };
      }
      case T.uptimeAlert: {
        // spec uptime/create_alert.yml:33-37 requires name, type, notifications and period;
        // tfdo uptime/resource_uptime_alert.go:68-78,136 sends period always ("" when unset).
        for (const f of ["name", "type", "notifications", "period"]) {
          if (i[f] === undefined || i[f] === "") throw new ApiError(400, `Bad Request: ${f} is required`);
        }
        if (!["2m", "3m", "5m", "10m", "15m", "30m", "1h"].includes(i.period)) throw new ApiError(400, `period ${i.period} is invalid`);
        if (!["latency", "down", "down_global", "ssl_expiry"].includes(i.type)) throw new ApiError(400, `type ${i.type} is invalid`);
        return { id: this.uuid(`uptime-alert:${i.name}`), outputs: {} };
      }
      // ---- managed databases. Where the spec gives no status for a refusal the fake answers 422.
      case T.databaseCluster: {
        this.clusterPlanChecks(i);
        need("name"); need("engine"); need("size"); need("region"); need("nodeCount");
        if (!DB_ENGINES.has(i.engine)) throw new ApiError(422, `engine ${i.engine} is invalid`);
        if (i.engine === "redis" && this.now.getTime() >= CACHING_CREATES_END) {
          throw new ApiError(422, "Caching cluster creates are no longer supported as of 2025-04-30T00:00:00Z: create a valkey cluster");
        }
        // spec databases/databases_create_cluster.yml:45
        if (i.backupRestore && CACHING.has(i.engine)) throw new ApiError(422, "Backups are not supported for Caching or Valkey clusters");
        if (DB_REGIONS[i.engine] && !DB_REGIONS[i.engine].has(i.region)) throw new ApiError(422, `Region ${i.region} is not available for ${i.engine}`);
        if (i.privateNetworkUuid) this.inVpcRegion(i.privateNetworkUuid, i.region);
        if (i.evictionPolicy !== undefined && !EVICTION_POLICIES.has(i.evictionPolicy)) throw new ApiError(422, `eviction_policy ${i.evictionPolicy} is invalid`);
        const id = this.uuid(`database:${i.name}`);
        // spec databases/models/database_cluster.yml:13 ("A unique, human-readable name"); the spec
        // gives no status for the clash (databases_create_cluster.yml:160-177): 409 as for VPCs.
        this.claimName(`database:${i.name}`, id, new ApiError(409, `a database cluster named ${i.name} already exists`));
        this.cloud.databases.set(id, { name: i.name, engine: i.engine, region: i.region, vpc: i.privateNetworkUuid, dbs: new Set(), users: new Set() });
        const caching = CACHING.has(i.engine);
        // pg as spec databases/models/database_connection.yml:4-35 and responses/database_cluster.yml:27-42
        // give it (port 25060, user doadmin, database defaultdb, postgres:// URI, private-<host>); a
        // redis cluster on 25061 (spec .../advanced_config/redis_advanced_config.yml:62-66, TLS only).
        // NOT in the spec, kept so that a program has something to read: valkey's port (taken as
        // redis's 25061), the caching engines' user `default` and rediss:// scheme, and the other
        // engines' values (given pg's, with the engine slug as the scheme); a caching cluster gets
        // no `database`.
        const host = `${i.name}-do-user-${1000 + this.seq}-0.db.ondigitalocean.com`;
        const port = caching ? 25061 : 25060;
        const user = caching ? "default" : "doadmin";
        const password = `fake-db-password-${this.seq}`;
        const scheme = caching ? "rediss" : i.engine === "pg" ? "postgres" : i.engine;
        const database = caching ? undefined : "defaultdb";
        // tfdo database/resource_database_cluster.go:793-808: the URI carries the user and password.
        const uri = (h: string) => `${scheme}://${user}:${password}@${h}:${port}${database ? `/${database}?sslmode=require` : ""}`;
        return {
          id,
          outputs: {
            host, privateHost: `private-${host}`, port, uri: uri(host), privateUri: uri(`private-${host}`), database, user, password,
            // godo databases.go:1182-1184 with strings.go:21-23 (tfdo :641 sets it as `urn`; Pulumi's name is clusterUrn)
            clusterUrn: `do:dbaas:${id}`,
            privateNetworkUuid: i.privateNetworkUuid ?? "",
          },
        };
      }
      case T.databaseDb: {
        const db = this.clusterOf(i.clusterId, "Database DB");
        // spec databases/databases_add.yml:9
        if (CACHING.has(db.engine)) throw new ApiError(422, `Error creating Database DB: database management is not supported for Caching or Valkey clusters (${db.name} is ${db.engine})`);
        need("name");
        db.dbs.add(i.name);
        return { id: `${i.clusterId}/database/${i.name}`, outputs: {} }; // tfdo database/resource_database_db.go:112-114
      }
      case T.databaseUser: {
        // tfdo database/resource_database_user.go:43-49 (godo SQLAuthPluginNative, SQLAuthPluginCachingSHA2)
        if (i.mysqlAuthPlugin !== undefined && !["mysql_native_password", "caching_sha2_password"].includes(i.mysqlAuthPlugin)) throw new Error(`expected mysql_auth_plugin to be one of [mysql_native_password caching_sha2_password], got ${i.mysqlAuthPlugin}`);
        const db = this.clusterOf(i.clusterId, "Database User");
        // spec databases/databases_add_user.yml:9
        if (CACHING.has(db.engine)) throw new ApiError(422, `Error creating Database User: user management is not supported for Caching or Valkey clusters (${db.name} is ${db.engine})`);
        need("name");
        db.users.add(i.name);
        // tfdo database/resource_database_user.go:174 (id), 210-221 (role "normal" when unset; password)
        return { id: `${i.clusterId}/user/${i.name}`, outputs: { password: `fake-user-password-${this.seq}`, role: "normal" } };
      }
      case T.databaseFirewall: {
        this.firewallRuleChecks(i.rules);
        const db = this.clusterOf(i.clusterId, "DatabaseFirewall");
        if (db.firewall) {
          // Not an API refusal: the API takes it and silently replaces the first firewall's rules,
          // since PUT /v2/databases/{id}/firewall sets the whole rule set (spec
          // databases/databases_update_firewall_rules.yml:5-19; tfdo database/resource_database_firewall.go:73-80,
          // and its delete empties the set, 124-139). The fake refuses it so a program cannot do that.
          throw new Error(`cluster ${db.name} already has a DatabaseFirewall (${db.firewall}): each one replaces the cluster's whole rule set, so a second would silently drop the first one's rules (and deleting either would empty both); declare all of the cluster's rules in one DatabaseFirewall`);
        }
        // tfdo database/resource_database_firewall.go:84 (id.PrefixedUniqueId(cluster_id + "-"))
        const id = `${i.clusterId}-${String(this.seq).padStart(26, "0")}`;
        db.firewall = id;
        return { id, outputs: {} };
      }
      case T.certificate: {
        const type = i.type ?? "custom"; // tfdo certificate/resource_certificate.go:131-139
        if (!["custom", "lets_encrypt"].includes(type)) throw new Error(`expected type to be one of [custom lets_encrypt], got ${type}`);
        // :124: domains conflicts with the PEM fields
        const pem = ["privateKey", "leafCertificate", "certificateChain"].filter((f) => i[f] !== undefined);
        if ((i.domains ?? []).length > 0 && pem.length > 0) throw new Error(`"domains": conflicts with ${pem.join(", ")}`);
        need("name");
        if (type === "custom") {
          // :203-210
          if (!i.privateKey) throw new Error("`private_key` is required for when type is `custom` or empty");
          if (!i.leafCertificate) throw new Error("`leaf_certificate` is required for when type is `custom` or empty");
          // spec certificates/models/certificate_create.yml:60-61, 96, 158-159: PEM-formatted
          for (const f of pem) if (!/-----BEGIN [A-Z ]+-----[\s\S]+-----END [A-Z ]+-----/.test(String(i[f]))) throw new ApiError(422, `${f} is not PEM-formatted`);
        } else {
          // :211-215
          if ((i.domains ?? []).length === 0) throw new Error("`domains` is required for when type is `lets_encrypt`");
          // tfdo docs/resources/certificate.md:83-85: "The domains must be managed using
          // DigitalOcean's DNS" (how the API reports it is not given).
          const outside = (i.domains as string[]).filter((d) => {
            const name = d.replace(/^\*\./, "");
            return ![...this.cloud.domains].some((z) => name === z || name.endsWith(`.${z}`));
          });
          if (outside.length > 0) throw new ApiError(422, `Let's Encrypt needs the domains' DNS managed by DigitalOcean: ${outside.join(", ")} is in no domain of this account`);
        }
        const uuid = this.uuid(`certificate:${i.name}`);
        // spec certificates/models/certificate_create.yml:7 ("A unique human-readable name") and tfdo
        // docs/resources/loadbalancer.md:45-46 ("there cannot be multiple certificates with the same name").
        this.claimName(`certificate:${i.name}`, uuid, new ApiError(409, `a certificate named ${i.name} already exists`));
        this.cloud.certificates.set(uuid, { name: i.name, type });
        const hash = (v: unknown) => (v === undefined ? undefined : crypto.createHash("sha1").update(String(v)).digest("hex"));
        return {
          // :234 (the id is the name), 238 (uuid), 243-255 (waits for `verified`); the PEM fields
          // are kept as their SHA-1 (:85, 97, 109; util/hash.go:12-33).
          id: i.name,
          outputs: { uuid, name: i.name, type, state: "verified", privateKey: hash(i.privateKey), leafCertificate: hash(i.leafCertificate), certificateChain: hash(i.certificateChain) },
        };
      }
      case T.loadBalancer: {
        const certificates = this.loadBalancerChecks(i);
        need("name"); // tfdo loadbalancer/resource_loadbalancer.go:182-186
        if (i.vpcUuid) this.inVpcRegion(i.vpcUuid, i.region);
        const id = this.uuid(`lb:${i.name}`);
        this.cloud.loadBalancers.set(id, { region: i.region, vpc: i.vpcUuid, certificates });
        return {
          id,
          outputs: {
            ip: `192.0.2.${this.nextLbIp++}`,
            // godo load_balancers.go:98-100 with strings.go:21-23 (the kind lower-cased)
            loadBalancerUrn: `do:loadbalancer:${id}`,
            status: "active", // tfdo loadbalancer/resource_loadbalancer.go:757-767 waits for it
          },
        };
      }
      default:
        throw new Error(`fake DigitalOcean: no rules for ${type}; add them (with their source) before declaring it`);
    }
  }

  /** POST /v2/projects/{id}/resources (tfdo project/resource_project.go:320-337). */
  private assign(projectId: string, urns: string[]) {
    for (const urn of urns) {
      const kind = /^do:([a-z]+):/.exec(urn)?.[1];
      // The API also takes do:reservedip on assignment (provider issue #1264: created with it,
      // read back as do:floatingip).
      if (!kind || !(PROJECT_URN_KINDS.has(kind) || kind === "reservedip")) throw new ApiError(400, `Error assigning resources: ${urn} is not a resource type projects support`);
      for (const p of this.cloud.projects.values()) p.resources.delete(urn);
      this.cloud.projects.get(projectId)!.resources.add(urn);
    }
  }

  /** The provider's CustomizeDiff for a cluster, run at every plan that changes it (tfdo database/resource_database_cluster.go:305-347). */
  private clusterPlanChecks(i: Record<string, any>, stored?: Record<string, any>) {
    if (i.version === undefined || i.version === "") {
      // :312-327
      if (stored?.version) throw new Error(`The argument "version" is now required. Set the ${i.engine} version to the value saved to state: ${stored.version}`);
      throw new Error(`The argument "version" is required, but no definition was found.`);
    }
    // :330-347
    if (i.sqlMode && i.engine !== "mysql") throw new Error("sql_mode is only supported for MySQL Database Clusters");
    if (i.evictionPolicy && !CACHING.has(i.engine)) throw new Error("eviction_policy is only supported for Redis or Valkey Database Clusters");
  }

  /**
   * A VPC given to a cluster or a load balancer must be in its region: "We do not support individual
   * VPC networks that span between datacenter regions" (docs.digitalocean.com
   * products/networking/vpc/details/limits). How the API words the refusal is not given.
   */
  private inVpcRegion(vpcId: string, region: string) {
    const vpc = this.cloud.vpcs.get(vpcId);
    if (!vpc) throw new ApiError(422, `vpc ${vpcId} not found`);
    if (vpc.region !== region) throw new ApiError(422, `vpc ${vpc.name} is in ${vpc.region}, not ${region}: a VPC network does not span regions`);
  }

  /** The cluster a db, user or firewall names; the API answers 404 for one that does not exist. */
  private clusterOf(clusterId: string, what: string) {
    const db = this.cloud.databases.get(clusterId);
    if (!db) throw new ApiError(404, `Error creating ${what}: The resource you were accessing could not be found (database cluster ${clusterId})`);
    return db;
  }

  private firewallRuleChecks(rules: { type?: string; value?: string }[] | undefined) {
    if (!rules || rules.length === 0) throw new Error(`The argument "rule" is required, but no definition was found.`); // tfdo database/resource_database_firewall.go:34-37
    // spec databases/databases_update_firewall_rules.yml:12-13: at most 100 rules, no IPv6 addresses
    if (rules.length > 100) throw new ApiError(422, `a database firewall takes at most 100 rules (${rules.length} given)`);
    for (const r of rules) {
      // tfdo database/resource_database_firewall.go:39-55
      if (!["ip_addr", "droplet", "k8s", "tag", "app"].includes(r.type ?? "")) throw new Error(`expected rule.type to be one of [ip_addr droplet k8s tag app], got ${r.type}`);
      if (!r.value) throw new Error("rule.value must not be empty");
      if (r.type === "ip_addr" && net.isIP(r.value.split("/")[0]) === 6) throw new ApiError(422, `${r.value}: IPv6 addresses cannot be trusted sources`);
    }
  }

  /** What the provider and the API check of a load balancer, on create and on update; returns the certificates (uuids) it uses. */
  private loadBalancerChecks(i: Record<string, any>): Set<string> {
    // Line numbers without a file are tfdo loadbalancer/resource_loadbalancer.go's.
    // :342-348: droplet_ids ConflictsWith droplet_tag
    if (i.dropletTag !== undefined && (i.dropletIds ?? []).length > 0) throw new Error(`"droplet_ids": conflicts with droplet_tag`);
    // :118-139
    const type = String(i.type ?? "").toUpperCase();
    if (!i.type && !i.region) throw new Error("missing 'region' value");
    if (type === "GLOBAL" && i.region) throw new Error(`'region' must be empty or not set when 'type' is '${i.type}'`);
    if ((type === "REGIONAL" || type === "REGIONAL_NETWORK") && !i.region) throw new Error(`'region' must be set and not be empty when 'type' is '${i.type}'`);
    const rules: Record<string, any>[] = i.forwardingRules ?? [];
    // :206, 513 (forwarding_rule ConflictsWith glb_settings); spec load_balancers/models/load_balancer_base.yml:106-108, 232-233 (required, at least one)
    if (i.glbSettings && rules.length > 0) throw new Error(`"forwarding_rule": conflicts with glb_settings`);
    if (!i.glbSettings && rules.length === 0) throw new ApiError(422, "forwarding_rules: at least one forwarding rule is required");
    const certificates = new Set<string>();
    for (const r of rules) {
      // :210-241
      if (!["http", "https", "http2", "http3", "tcp", "udp"].includes(r.entryProtocol)) throw new Error(`expected forwarding_rule.entry_protocol to be one of [http https http2 http3 tcp udp], got ${r.entryProtocol}`);
      if (!["http", "https", "http2", "tcp", "udp"].includes(r.targetProtocol)) throw new Error(`expected forwarding_rule.target_protocol to be one of [http https http2 tcp udp], got ${r.targetProtocol}`);
      for (const p of ["entryPort", "targetPort"]) if (!(Number.isInteger(r[p]) && r[p] >= 1 && r[p] <= 65535)) throw new Error(`expected forwarding_rule.${p} to be in the range (1 - 65535), got ${r[p]}`);
      // spec load_balancers/models/forwarding_rule.yml:18-19, 40-42: udp on one side needs udp on the other
      if ((r.entryProtocol === "udp") !== (r.targetProtocol === "udp")) throw new ApiError(422, "a udp forwarding rule needs udp as both entry_protocol and target_protocol");
      // loadbalancer/loadbalancer.go:104-113 and certificate/datasource_certificate.go:94-102: the
      // provider looks the certificate up by name before the request, and fails if there is none.
      const certName = r.certificateName ?? r.certificateId;
      if (certName) {
        const found = [...this.cloud.certificates.entries()].find(([uuid, c]) => c.name === certName || uuid === certName);
        if (!found) throw new Error(`certificate not found (forwarding rule ${r.entryProtocol}:${r.entryPort} names ${certName})`);
        certificates.add(found[0]);
      }
      // An https rule either passes TLS through or terminates it, and "to configure SSL
      // termination, you need to add an SSL termination rule and choose or create an SSL
      // certificate to use" (docs.digitalocean.com products/networking/load-balancers/how-to/ssl-termination).
      // http2 and http3 entries are not checked: no source read says what they need.
      if (r.entryProtocol === "https" && !r.tlsPassthrough && !certName) throw new ApiError(422, `forwarding rule https:${r.entryPort} terminates TLS but names no certificate (set certificate_name, or tls_passthrough)`);
    }
    const h = i.healthcheck;
    if (h) {
      // :258-310
      if (!["http", "https", "tcp"].includes(h.protocol)) throw new Error(`expected healthcheck.protocol to be one of [http https tcp], got ${h.protocol}`);
      if (!(Number.isInteger(h.port) && h.port >= 1 && h.port <= 65535)) throw new Error(`expected healthcheck.port to be in the range (1 - 65535), got ${h.port}`);
      const ranges: [string, number, number][] = [["checkIntervalSeconds", 3, 300], ["responseTimeoutSeconds", 3, 300], ["unhealthyThreshold", 2, 10], ["healthyThreshold", 2, 10]];
      for (const [f, lo, hi] of ranges) {
        if (h[f] !== undefined && !(h[f] >= lo && h[f] <= hi)) throw new Error(`expected healthcheck.${f} to be in the range (${lo} - ${hi}), got ${h[f]}`);
      }
      // :45-62
      if ((h.protocol === "http" || h.protocol === "https") && !h.path) throw new Error(`health check \`path\` is required for when protocol is \`${h.protocol}\``);
      if (h.protocol === "tcp" && h.path) throw new Error("health check `path` is not allowed for when protocol is `tcp`");
    }
    const s = i.stickySessions;
    if (s) {
      // :312-340, 64-84
      const t = s.type ?? "none";
      if (!["cookies", "none"].includes(t)) throw new Error(`expected sticky_sessions.type to be one of [cookies none], got ${t}`);
      if (t === "cookies") {
        if (!s.cookieName) throw new Error("sticky sessions `cookie_name` is required for when type is `cookie`");
        if (!s.cookieTtlSeconds) throw new Error("sticky sessions `cookie_ttl_seconds` is required for when type is `cookie`");
      } else {
        if (s.cookieName) throw new Error("sticky sessions `cookie_name` is not allowed for when type is `none`");
        if (s.cookieTtlSeconds) throw new Error("sticky sessions `cookie_ttl_seconds` is not allowed for when type is `none`");
      }
      if (s.cookieName !== undefined && !(s.cookieName.length >= 2 && s.cookieName.length <= 40)) throw new Error(`expected length of sticky_sessions.cookie_name to be in the range (2 - 40), got ${s.cookieName}`);
      if (s.cookieTtlSeconds !== undefined && !(s.cookieTtlSeconds >= 1)) throw new Error(`expected sticky_sessions.cookie_ttl_seconds to be at least (1), got ${s.cookieTtlSeconds}`);
    }
    // The provider does not check it (:416-420); spec load_balancers/models/load_balancer_base.yml:140-147
    const t = i.httpIdleTimeoutSeconds;
    if (t !== undefined && !(Number.isInteger(t) && t >= 30 && t <= 600)) throw new ApiError(422, `http_idle_timeout_seconds must be between 30 and 600, got ${t}`);
    // redirect_http_to_https (:357-361) is a plain bool: no source read refuses it in any combination.
    return certificates;
  }

  private update(prev: Stored, next: Record<string, any>, changed: string[]): Record<string, any> {
    const outputs = { ...prev.outputs };
    switch (prev.type) {
      case T.project: {
        // tfdo project/resource_project.go:245-264: removed URNs go to the default project first.
        const before = new Set<string>(prev.inputs.resources ?? []);
        const after = new Set<string>(next.resources ?? []);
        const removed = [...before].filter((u) => !after.has(u));
        const added = [...after].filter((u) => !before.has(u));
        for (const u of removed) {
          if (u.startsWith("do:floatingip:") && this.cloud.ips.get(u.slice(14))?.dropletId) {
            throw new ApiError(412, "Error assigning resources to default project: Cannot move a Reserved IP with an associated Droplet");
          }
        }
        this.assign(prev.id, added);
        break;
      }
      case T.droplet: {
        const d = this.cloud.droplets.get(prev.id)!;
        if (changed.includes("volumeIds")) {
          for (const v of next.volumeIds ?? []) {
            if (d.volumes.has(v)) continue;
            const vol = this.cloud.volumes.get(v);
            if (!vol) throw new ApiError(404, `volume ${v} not found`);
            if (vol.attachedTo) throw new ApiError(422, `volume ${vol.name} is already attached to droplet ${vol.attachedTo}`);
            vol.attachedTo = prev.id;
            d.volumes.add(v);
          }
          outputs.volumeIds = [...d.volumes];
        }
        if (changed.includes("ipv6") && next.ipv6) outputs.ipv6Address = `2001:db8::${prev.id.slice(-3)}`;
        if (changed.includes("backupPolicy") && next.backupPolicy && !next.backups) throw new Error("backup_policy can only be set when backups are enabled");
        break;
      }
      case T.bucket:
        // Name is not ForceNew and the provider's update does not rename: the bucket keeps its name.
        break;
      case T.databaseCluster: {
        this.clusterPlanChecks(next, prev.inputs);
        const db = this.cloud.databases.get(prev.id);
        if (!db) throw new ApiError(404, `Error updating database cluster ${prev.name}: not found`);
        if (next.evictionPolicy !== undefined && !EVICTION_POLICIES.has(next.evictionPolicy)) throw new ApiError(422, `eviction_policy ${next.evictionPolicy} is invalid`);
        if (changed.includes("region")) {
          // tfdo database/resource_database_cluster.go:474-495: a migration, in place.
          if (DB_REGIONS[db.engine] && !DB_REGIONS[db.engine].has(next.region)) throw new ApiError(422, `Region ${next.region} is not available for ${db.engine}`);
          if (db.vpc) this.inVpcRegion(db.vpc, next.region);
          db.region = next.region;
        }
        break;
      }
      case T.databaseFirewall:
        this.firewallRuleChecks(next.rules);
        if (!this.cloud.databases.has(prev.inputs.clusterId)) throw new ApiError(404, "Error updating DatabaseFirewall: database cluster not found");
        break;
      case T.databaseUser:
        if (next.mysqlAuthPlugin !== undefined && !["mysql_native_password", "caching_sha2_password"].includes(next.mysqlAuthPlugin)) throw new Error(`expected mysql_auth_plugin to be one of [mysql_native_password caching_sha2_password], got ${next.mysqlAuthPlugin}`);
        break;
      case T.loadBalancer: {
        // tfdo loadbalancer/resource_loadbalancer.go:866-878: the update sends the whole request again.
        const certificates = this.loadBalancerChecks(next);
        const lb = this.cloud.loadBalancers.get(prev.id);
        if (lb) lb.certificates = certificates;
        break;
      }
      case T.vpc:
      case T.volume:
        break;
    }
    return outputs;
  }

  /**
   * The dependents the engine replaces with a delete-before-replace resource: those that take its
   * id in an input that forces a new resource, and theirs in turn; deepest first.
   */
  private dependentsToReplace(r: Stored): Stored[] {
    const direct = [...this.state.values()]
      .filter((x) => x !== r && x.stack === r.stack)
      .filter((x) => (FORCE_NEW[x.type] ?? []).some((f) => new RegExp(`(^|[^0-9a-f-])${r.id}([^0-9a-f-]|$)`).test(JSON.stringify(x.inputs[f] ?? null))))
      .sort((a, b) => b.seq - a.seq);
    return direct.flatMap((x) => [...this.dependentsToReplace(x), x]);
  }

  /** DELETE, with what the provider does around it. */
  private destroyOne(r: Stored) {
    switch (r.type) {
      case T.droplet: {
        const d = this.cloud.droplets.get(r.id);
        if (!d) return; // already gone: the provider treats 404 as deleted (resource_droplet.go:891-894)
        // tfdo droplet/resource_droplet.go:861-878: graceful shutdown, waited on with the delete
        // timeout (60 s by default, :59-63; it bounds the unlock and power-off waits, 854 and
        // 874): a droplet running Docker does not stop in 60 s.
        if (r.inputs.gracefulShutdown) {
          const t = r.deleteTimeout ?? 60;
          if (t < 300) throw new Error(`Error waiting for droplet (${r.id}) to become off: timeout while waiting for state to become 'off' (last state: 'active', timeout: ${t}s)`);
          d.status = "off";
        }
        // :880-885 then detaches every volume in the droplet's state (volume_ids, as last read).
        for (const v of r.outputs.volumeIds ?? []) {
          const vol = this.cloud.volumes.get(v);
          if (!vol || vol.attachedTo !== r.id) throw new ApiError(422, `Error detaching the volumes from the droplet (${r.id}): Attachment not found`);
          vol.attachedTo = undefined;
          d.volumes.delete(v);
        }
        for (const v of d.volumes) this.cloud.volumes.get(v)!.attachedTo = undefined;
        for (const ip of this.cloud.ips.values()) if (ip.dropletId === r.id) ip.dropletId = undefined;
        this.cloud.droplets.delete(r.id);
        return;
      }
      case T.volumeAttachment: {
        const vol = this.cloud.volumes.get(r.inputs.volumeId);
        const d = this.cloud.droplets.get(String(r.inputs.dropletId));
        if (vol && d && vol.attachedTo === String(r.inputs.dropletId)) {
          if (d.status === "active") this.hotDetaches.push(`${vol.name} from droplet ${r.inputs.dropletId}`);
          vol.attachedTo = undefined;
          d.volumes.delete(r.inputs.volumeId);
        }
        return;
      }
      case T.volume: {
        const vol = this.cloud.volumes.get(r.id);
        if (vol?.attachedTo) throw new ApiError(409, `volume ${vol.name} is attached to droplet ${vol.attachedTo}`);
        this.cloud.volumes.delete(r.id);
        this.releaseName(r.id);
        return;
      }
      case T.vpc: {
        // spec vpcs/vpcs_delete.yml:9-12: the default VPC, or one with members, answers 403.
        const vpc = this.cloud.vpcs.get(r.id);
        if (!vpc) return;
        if (vpc.isDefault) throw new ApiError(403, `Error deleting VPC ${vpc.name}: a region's default VPC cannot be deleted`);
        if ([...this.cloud.droplets.values()].some((d) => d.vpc === r.id)) throw new ApiError(403, `Error deleting VPC ${vpc.name}: it still has members`);
        this.cloud.vpcs.delete(r.id);
        this.releaseName(r.id);
        return;
      }
      case T.reservedIpAssignment: {
        const ip = this.cloud.ips.get(r.inputs.ipAddress);
        if (ip && ip.dropletId === String(r.inputs.dropletId)) ip.dropletId = undefined;
        return;
      }
      case T.reservedIp:
        this.cloud.ips.delete(r.id);
        return;
      case T.sshKey:
        this.cloud.keys.delete(r.outputs.fingerprint);
        return;
      case T.domain:
        this.cloud.domains.delete(r.id);
        return;
      case T.bucket: {
        // tfdo spaces/resource_spaces_bucket.go:199-203,503: without force_destroy a bucket that
        // holds objects is not deleted (BucketNotEmpty).
        const b = this.cloud.buckets.get(r.id);
        if (b && b.objects > 0 && !r.inputs.forceDestroy) throw new ApiError(409, `BucketNotEmpty: ${r.id} holds ${b.objects} object(s)`);
        this.cloud.buckets.delete(r.id);
        return;
      }
      case T.project:
        this.cloud.projects.delete(r.id);
        this.releaseName(r.id);
        return;
      case T.databaseCluster:
        // Its dbs, users and firewall rules live under /v2/databases/{id}/ and go with it.
        this.cloud.databases.delete(r.id);
        this.releaseName(r.id);
        return;
      case T.databaseDb:
      case T.databaseUser:
      case T.databaseFirewall: {
        // The provider's deletes take no 404 as done (tfdo database/resource_database_db.go:90-93,
        // resource_database_user.go:283-286, resource_database_firewall.go:133-136): without its
        // cluster the delete fails until a refresh drops the resource.
        const db = this.cloud.databases.get(r.inputs.clusterId);
        if (!db) throw new ApiError(404, `The resource you were accessing could not be found (database cluster ${r.inputs.clusterId})`);
        if (r.type === T.databaseDb) db.dbs.delete(r.inputs.name);
        else if (r.type === T.databaseUser) db.users.delete(r.inputs.name);
        else if (db.firewall === r.id) db.firewall = undefined;
        return;
      }
      case T.certificate: {
        // tfdo certificate/resource_certificate.go:294-301: the API answers 403 for a certificate a
        // load balancer still uses; :315-352 retry until the delete timeout (15 min by default, :22, 40).
        const uuid = r.outputs.uuid;
        if ([...this.cloud.loadBalancers.values()].some((lb) => lb.certificates.has(uuid))) {
          const t = r.deleteTimeout ?? 900;
          throw new Error(`Error deleting Certificate: timeout waiting to delete certificate "${r.id}" after load balancers released it (403 Make sure the certificate is not in use before deleting it; waited ${t}s)`);
        }
        this.cloud.certificates.delete(uuid);
        this.releaseName(uuid);
        return;
      }
      case T.loadBalancer:
        this.cloud.loadBalancers.delete(r.id);
        return;
      default:
        return;
    }
  }

  /** GET: false when the object is gone; otherwise the stored inputs take what the API reports. */
  private readBack(r: Stored): boolean {
    switch (r.type) {
      case T.droplet: {
        const d = this.cloud.droplets.get(r.id);
        if (!d) return false;
        r.outputs = { ...r.outputs, volumeIds: [...d.volumes] };
        if (r.inputs.volumeIds !== undefined) r.inputs = { ...r.inputs, volumeIds: [...d.volumes] };
        return true;
      }
      case T.volume:
        return this.cloud.volumes.has(r.id);
      case T.vpc:
        return this.cloud.vpcs.has(r.id);
      case T.reservedIp:
        return this.cloud.ips.has(r.id);
      case T.reservedIpAssignment: {
        const ip = this.cloud.ips.get(r.inputs.ipAddress);
        return ip?.dropletId === String(r.inputs.dropletId);
      }
      case T.volumeAttachment:
        return this.cloud.volumes.get(r.inputs.volumeId)?.attachedTo === String(r.inputs.dropletId);
      case T.project: {
        const p = this.cloud.projects.get(r.id);
        if (!p) return false;
        // spec DigitalOcean-public.v2.yaml:494-498: the Projects API names reserved IPs floatingip.
        r.inputs = { ...r.inputs, resources: [...p.resources].map((u) => u.replace(/^do:reservedip:/, "do:floatingip:")) };
        return true;
      }
      case T.databaseCluster:
        return this.cloud.databases.has(r.id);
      // A 404 on the cluster's dbs, users or firewall drops the resource (tfdo
      // database/resource_database_db.go:68-76, resource_database_user.go:192-200, resource_database_firewall.go:93-98).
      case T.databaseDb:
        return this.cloud.databases.get(r.inputs.clusterId)?.dbs.has(r.inputs.name) === true;
      case T.databaseUser:
        return this.cloud.databases.get(r.inputs.clusterId)?.users.has(r.inputs.name) === true;
      case T.databaseFirewall:
        return this.cloud.databases.has(r.inputs.clusterId);
      case T.certificate:
        return this.cloud.certificates.has(r.outputs.uuid);
      case T.loadBalancer:
        return this.cloud.loadBalancers.has(r.id);
      default:
        return true;
    }
  }
}

function deleteTimeout(opts: pulumi.CustomResourceOptions): number | undefined {
  const m = /^(\d+)(s|m|h)$/.exec(opts.customTimeouts?.delete ?? "");
  return m ? Number(m[1]) * { s: 1, m: 60, h: 3600 }[m[2] as "s" | "m" | "h"] : undefined;
}

function validCidr(a: string): boolean {
  const [ip, prefix] = a.split("/");
  const v = net.isIP(ip);
  if (v === 0) return false;
  if (prefix === undefined) return true;
  const n = Number(prefix);
  return /^\d+$/.test(prefix) && n <= (v === 4 ? 32 : 128);
}

function privateRange(cidr: string): boolean {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(cidr);
  if (!m || !net.isIPv4(cidr.split("/")[0])) return false;
  const [a, b] = [Number(m[1]), Number(m[2])];
  const prefix = Number(m[5]);
  const rfc1918 = a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168);
  return rfc1918 && prefix >= 16 && prefix <= 28;
}
