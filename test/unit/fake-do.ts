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
};

/** Regions that take new droplets (DigitalOcean's regional availability list, 2026-11). */
const DROPLET_REGIONS = new Set(["nyc1", "nyc2", "nyc3", "sfo2", "sfo3", "ams3", "sgp1", "lon1", "fra1", "tor1", "blr1", "syd1", "atl1", "ric1"]);
const SPACES_REGIONS = new Set(["nyc3", "sfo2", "sfo3", "ams3", "sgp1", "lon1", "fra1", "syd1", "blr1", "atl1", "tor1"]);
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

interface Cloud {
  droplets: Map<string, { region: string; vpc?: string; volumes: Set<string>; status: "active" | "off" }>;
  volumes: Map<string, { name: string; region: string; attachedTo?: string }>;
  vpcs: Map<string, { name: string; region: string; isDefault: boolean }>;
  ips: Map<string, { region: string; dropletId?: string }>;
  keys: Map<string, { publicKey: string }>; // by fingerprint
  domains: Set<string>;
  buckets: Map<string, { region: string; objects: number }>;
  projects: Map<string, { name: string; resources: Set<string> }>;
  names: Map<string, string>; // unique-name scope -> owner id
}

const deepEqual = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
const FINGERPRINT = (publicKey: string) =>
  crypto.createHash("md5").update(Buffer.from(publicKey.trim().split(/\s+/)[1] ?? "", "base64")).digest("hex").match(/../g)!.join(":");

export class FakeAccount {
  private state = new Map<string, Stored>();
  private cloud: Cloud = {
    droplets: new Map(), volumes: new Map(), vpcs: new Map(), ips: new Map(), keys: new Map(),
    domains: new Set(), buckets: new Map(), projects: new Map(), names: new Map(),
  };
  private seq = 0;
  private nextDroplet = 300000001;
  private nextIp = 10;
  /** Replaced resources whose old copy the engine deletes at the end of the run. */
  private pendingDeletes: Stored[] = [];
  private toReplace = new Set<string>();
  public changes: Change[] = [];
  /** Volumes detached from a droplet that was still running: a database on them sees I/O errors. */
  public hotDetaches: string[] = [];

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
    const changed = [...new Set([...Object.keys(effective), ...Object.keys(prev.inputs)])]
      .filter((f) => !deepEqual(effective[f], prev.inputs[f]));
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
    this.state.delete(key);
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
      this.state.delete(this.keyOf(r));
      this.destroyOne(r);
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
        this.cloud.vpcs.set(id, { name: i.name, region: i.region, isDefault });
        return { id, outputs: { vpcUrn: `do:vpc:${id}`, default: isDefault } };
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
        for (const e of i.entities ?? []) if (!this.cloud.droplets.has(String(e))) throw new ApiError(422, `entity ${e} is not a droplet in this account`);
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
