// The droplet (cattle), its data volume (not cattle) and the reserved IP DNS points at.
import * as crypto from "crypto";
import * as pulumi from "@pulumi/pulumi";
import * as digitalocean from "@pulumi/digitalocean";

export interface ServerArgs {
  region: pulumi.Input<string>;
  size: pulumi.Input<string>;
  image: pulumi.Input<string>;
  vpcId: pulumi.Input<string>;
  userData: pulumi.Input<string>;
  /** The deploy key DigitalOcean puts on the droplet, so no root password is ever emailed. */
  sshPublicKey: string;
  /**
   * true: register `sshPublicKey` with the account (one stack's own key: DigitalOcean refuses a
   * public key that is already in the account). false: it is already there; refer to it by
   * fingerprint.
   */
  registerKey: boolean;
  volumeSizeGb: number;
  backups: boolean;
  /** DigitalOcean's backup window; without one its default plan is daily. */
  backupPolicy: { plan: string; weekday: string; hour: number };
  ipv6: boolean;
  tags: pulumi.Input<string>[];
  /** Production: stateful resources cannot be deleted by a preview that slips through. */
  protect: boolean;
  /** false: no reserved IP (an app droplet behind a load balancer other than the first). Default true. */
  reservedIp?: boolean;
}

/**
 * Droplet fields that force a replacement (terraform-provider-digitalocean v2.99.1
 * digitalocean/droplet/resource_droplet.go:66-83,232-248) but only matter at first boot:
 * ignored, so a new key or cloud-init text never rebuilds the host. Every other replacing field
 * is listed with what the program does about it in docs/replacements.md (checked by a test).
 */
export const DROPLET_IGNORED_CHANGES = ["userData", "sshKeys", "image"];

/** Legacy MD5 fingerprint of an OpenSSH public key: what DigitalOcean accepts in `ssh_keys`. */
export function sshKeyFingerprint(publicKey: string): string {
  const blob = Buffer.from(publicKey.trim().split(/\s+/)[1] ?? "", "base64");
  return crypto.createHash("md5").update(blob).digest("hex").match(/../g)!.join(":");
}

export class Server extends pulumi.ComponentResource {
  public readonly dropletId: pulumi.Output<string>;
  public readonly dropletUrn: pulumi.Output<string>;
  public readonly ipv4Address: pulumi.Output<string>;
  public readonly ipv6Address: pulumi.Output<string>;
  /** The reserved IP, or the droplet's own address where it has none. */
  public readonly reservedIp: pulumi.Output<string>;
  public readonly volumeUrn: pulumi.Output<string>;
  /** Where the volume shows up on the droplet, stable across droplet rebuilds. */
  public readonly dataDevice: pulumi.Output<string>;
  public readonly droplet: digitalocean.Droplet;
  /** What the host steps wait for: the droplet, its volume (a resize done), the reserved IP on it. */
  public readonly ready: pulumi.Resource[];

  constructor(name: string, args: ServerArgs, opts?: pulumi.ComponentResourceOptions) {
    super("nodehost:cloud:Server", name, {}, opts);
    const stateful = { parent: this, protect: args.protect };

    let keyRef: pulumi.Input<string>;
    if (args.registerKey) {
      const key = new digitalocean.SshKey(
        `${name}-key`,
        { name: `${name}-deploy`, publicKey: args.sshPublicKey },
        { parent: this },
      );
      keyRef = key.fingerprint;
    } else {
      keyRef = sshKeyFingerprint(args.sshPublicKey);
    }

    const volumeName = `${name}-data`;
    const volume = new digitalocean.Volume(
      `${name}-data`,
      {
        name: volumeName,
        region: args.region,
        size: args.volumeSizeGb,
        description: "PostgreSQL and Redis data and local backups; survives droplet rebuilds",
      },
      // description forces a new volume (volume/resource_volume.go:56-59): a wording change must
      // never replace the data.
      { ...stateful, ignoreChanges: ["description"] },
    );
    this.droplet = new digitalocean.Droplet(
      `${name}-droplet`,
      {
        name: `${name}`,
        region: args.region,
        size: args.size,
        image: args.image,
        vpcUuid: args.vpcId,
        userData: args.userData,
        sshKeys: [keyRef],
        monitoring: true,
        backups: args.backups,
        // backup_policy only with backups on (droplet/resource_droplet.go:27,412-416).
        backupPolicy: args.backups ? args.backupPolicy : undefined,
        ipv6: args.ipv6,
        tags: args.tags,
        // The volume is attached when the droplet is created, not by a VolumeAttachment: on a
        // rebuild the old droplet is shut down (PostgreSQL stops cleanly) before its volumes are
        // detached and it is deleted (droplet/resource_droplet.go:861-885), so the volume never
        // leaves a running database, and the delete never detaches an attachment that a separate
        // resource already removed (422). A volume attaches to one droplet at a time, hence
        // delete-before-replace.
        volumeIds: [volume.id],
        gracefulShutdown: true,
      },
      {
        ...stateful,
        ignoreChanges: DROPLET_IGNORED_CHANGES,
        deleteBeforeReplace: true,
        // The provider's delete timeout (60 s by default, droplet/resource_droplet.go:59-63) bounds
        // the waits for the droplet to unlock and, with graceful shutdown, to power off (854, 874):
        // too short for a droplet running Docker to shut down.
        customTimeouts: { delete: "10m" },
      },
    );
    // Behind a load balancer only the first droplet keeps the stack's reserved IP (so that a stack
    // that shrinks back to one droplet still has its address); the others are reached by their own.
    let assignment: pulumi.Resource | undefined;
    if (args.reservedIp !== false) {
      const ip = new digitalocean.ReservedIp(`${name}-ip`, { region: args.region }, stateful);
      assignment = new digitalocean.ReservedIpAssignment(
        `${name}-ip-assignment`,
        { ipAddress: ip.ipAddress, dropletId: this.droplet.id.apply(Number) },
        // Unassign from the old droplet before it goes; assign to the new one once it exists.
        { parent: this, deleteBeforeReplace: true },
      );
      this.reservedIp = ip.ipAddress;
    } else {
      this.reservedIp = this.droplet.ipv4Address;
    }

    this.dropletId = this.droplet.id;
    this.dropletUrn = this.droplet.dropletUrn;
    this.ipv4Address = this.droplet.ipv4Address;
    this.ipv6Address = this.droplet.ipv6Address;
    this.volumeUrn = volume.volumeUrn;
    this.ready = assignment ? [this.droplet, volume, assignment] : [this.droplet, volume];
    this.dataDevice = pulumi.interpolate`/dev/disk/by-id/scsi-0DO_Volume_${volume.name}`;
    this.registerOutputs({
      dropletId: this.dropletId,
      reservedIp: this.reservedIp,
      dataDevice: this.dataDevice,
    });
  }
}
