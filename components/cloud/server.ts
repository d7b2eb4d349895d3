// The droplet (cattle), its data volume (not cattle) and the reserved IP DNS points at.
import * as pulumi from "@pulumi/pulumi";
import * as digitalocean from "@pulumi/digitalocean";

export interface ServerArgs {
  region: pulumi.Input<string>;
  size: pulumi.Input<string>;
  image: pulumi.Input<string>;
  vpcId: pulumi.Input<string>;
  userData: pulumi.Input<string>;
  /** The first key is registered with DigitalOcean so no root password is ever emailed. */
  sshPublicKey: pulumi.Input<string>;
  volumeSizeGb: number;
  backups: boolean;
  ipv6: boolean;
  tags: pulumi.Input<string>[];
  /** Production: stateful resources cannot be deleted by a preview that slips through. */
  protect: boolean;
}

/** Arguments whose change would replace the droplet; ignored so a config edit never rebuilds it. */
export const DROPLET_IGNORED_CHANGES = ["userData", "sshKeys", "image"];

export class Server extends pulumi.ComponentResource {
  public readonly dropletId: pulumi.Output<string>;
  public readonly dropletUrn: pulumi.Output<string>;
  public readonly ipv4Address: pulumi.Output<string>;
  public readonly ipv6Address: pulumi.Output<string>;
  public readonly reservedIp: pulumi.Output<string>;
  public readonly reservedIpUrn: pulumi.Output<string>;
  public readonly volumeUrn: pulumi.Output<string>;
  /** Where the volume shows up on the droplet, stable across droplet rebuilds. */
  public readonly dataDevice: pulumi.Output<string>;
  public readonly droplet: digitalocean.Droplet;

  constructor(name: string, args: ServerArgs, opts?: pulumi.ComponentResourceOptions) {
    super("nodehost:cloud:Server", name, {}, opts);
    const stateful = { parent: this, protect: args.protect };

    const key = new digitalocean.SshKey(
      `${name}-key`,
      { name: `${name}-deploy`, publicKey: args.sshPublicKey },
      { parent: this },
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
        sshKeys: [key.fingerprint],
        monitoring: true,
        backups: args.backups,
        ipv6: args.ipv6,
        tags: args.tags,
        gracefulShutdown: true,
      },
      { ...stateful, ignoreChanges: DROPLET_IGNORED_CHANGES },
    );
    const volumeName = `${name}-data`;
    const volume = new digitalocean.Volume(
      `${name}-data`,
      {
        name: volumeName,
        region: args.region,
        size: args.volumeSizeGb,
        description: "PostgreSQL and Redis data and local backups; survives droplet rebuilds",
      },
      stateful,
    );
    new digitalocean.VolumeAttachment(
      `${name}-data-attachment`,
      { dropletId: this.droplet.id.apply(Number), volumeId: volume.id },
      // A volume attaches to one droplet at a time: detach from the old before attaching the new.
      { parent: this, deleteBeforeReplace: true },
    );
    const ip = new digitalocean.ReservedIp(`${name}-ip`, { region: args.region }, stateful);
    new digitalocean.ReservedIpAssignment(
      `${name}-ip-assignment`,
      { ipAddress: ip.ipAddress, dropletId: this.droplet.id.apply(Number) },
      { parent: this, deleteBeforeReplace: true },
    );

    this.dropletId = this.droplet.id;
    this.dropletUrn = this.droplet.dropletUrn;
    this.ipv4Address = this.droplet.ipv4Address;
    this.ipv6Address = this.droplet.ipv6Address;
    this.reservedIp = ip.ipAddress;
    this.reservedIpUrn = ip.reservedIpUrn;
    this.volumeUrn = volume.volumeUrn;
    this.dataDevice = pulumi.interpolate`/dev/disk/by-id/scsi-0DO_Volume_${volume.name}`;
    this.registerOutputs({
      dropletId: this.dropletId,
      reservedIp: this.reservedIp,
      dataDevice: this.dataDevice,
    });
  }
}
