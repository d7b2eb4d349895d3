// The stack's private network and its cloud firewall (applied to droplets by tag).
import * as pulumi from "@pulumi/pulumi";
import * as digitalocean from "@pulumi/digitalocean";

export interface NetworkArgs {
  region: pulumi.Input<string>;
  /** Droplets carrying this tag get the firewall. */
  tag: pulumi.Input<string>;
  /** Addresses allowed to reach SSH (22). Empty and sshOpenToWorld false: SSH closed to all. */
  sshAllowFrom: string[];
  sshOpenToWorld: boolean;
  /** false: the droplets sit behind a load balancer; HTTP reaches them from it alone. Default true. */
  webOpenToWorld?: boolean;
  ipRange?: pulumi.Input<string>;
}

const ANYWHERE = ["0.0.0.0/0", "::/0"];

/**
 * Inbound rules: 80/443 from anywhere (unless `web` is false: behind a load balancer, whose own
 * firewall admits it alone, components/cloud/load-balancer.ts), 22 from the allow-list only,
 * nothing else.
 */
export function inboundRules(sshAllowFrom: string[], sshOpenToWorld: boolean, web = true) {
  const ssh = sshOpenToWorld ? ANYWHERE : sshAllowFrom;
  return [
    ...(web ? [
      { protocol: "tcp", portRange: "80", sourceAddresses: ANYWHERE },
      { protocol: "tcp", portRange: "443", sourceAddresses: ANYWHERE },
    ] : []),
    ...(ssh.length > 0 ? [{ protocol: "tcp", portRange: "22", sourceAddresses: ssh }] : []),
    { protocol: "icmp", sourceAddresses: ANYWHERE },
  ];
}

export class Network extends pulumi.ComponentResource {
  public readonly vpcId: pulumi.Output<string>;
  /** The VPC's address range (the config's, or the one DigitalOcean chose): a load balancer in it connects from there. */
  public readonly vpcIpRange: pulumi.Output<string>;
  public readonly firewallId: pulumi.Output<string>;

  constructor(name: string, args: NetworkArgs, opts?: pulumi.ComponentResourceOptions) {
    super("nodehost:cloud:Network", name, {}, opts);

    const vpc = new digitalocean.Vpc(
      `${name}-vpc`,
      { name: `${name}-vpc`, region: args.region, ipRange: args.ipRange },
      // region and ip_range force a new VPC (vpc/resource_vpc.go:38-55). VPC names are unique in an
      // account (openapi vpcs/models/vpc.yml:36), so the new one cannot be made beside the old.
      // The droplet is replaced with it (vpc_uuid forces a new droplet), which production's
      // protect refuses; see docs/replacements.md.
      { parent: this, deleteBeforeReplace: true },
    );
    const tag = new digitalocean.Tag(`${name}-tag`, { name: args.tag }, { parent: this });
    const firewall = new digitalocean.Firewall(
      `${name}-firewall`,
      {
        name: `${name}-firewall`,
        tags: [tag.name],
        inboundRules: inboundRules(args.sshAllowFrom, args.sshOpenToWorld, args.webOpenToWorld !== false),
        outboundRules: [
          { protocol: "tcp", portRange: "1-65535", destinationAddresses: ANYWHERE },
          { protocol: "udp", portRange: "1-65535", destinationAddresses: ANYWHERE },
          { protocol: "icmp", destinationAddresses: ANYWHERE },
        ],
      },
      { parent: this },
    );

    this.vpcId = vpc.id;
    this.vpcIpRange = vpc.ipRange;
    this.firewallId = firewall.id;
    this.registerOutputs({ vpcId: this.vpcId, firewallId: this.firewallId });
  }
}
