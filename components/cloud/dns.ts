// DNS for the stack's names, pointing at the reserved IP (and the droplet's IPv6 when on).
import * as pulumi from "@pulumi/pulumi";
import * as digitalocean from "@pulumi/digitalocean";

export interface DnsArgs {
  domain: string;
  /** Staging: a subdomain such as `staging`; production: none (apex + www). */
  subdomain?: string;
  createDomain: boolean;
  ttl: number;
  ipv4: pulumi.Input<string>;
  ipv6?: pulumi.Input<string>;
  protect: boolean;
}

export class Dns extends pulumi.ComponentResource {
  /** Set when this stack owns the domain. */
  public readonly domainUrn?: pulumi.Output<string>;
  /** The zone, when this stack owns it (a Let's Encrypt certificate from DigitalOcean waits for it). */
  public readonly domain?: digitalocean.Domain;

  constructor(name: string, args: DnsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("nodehost:cloud:Dns", name, {}, opts);

    let domainName: pulumi.Input<string> = args.domain;
    if (args.createDomain) {
      const domain = new digitalocean.Domain(
        `${name}-domain`,
        { name: args.domain },
        { parent: this, protect: args.protect },
      );
      domainName = domain.name;
      this.domain = domain;
      this.domainUrn = domain.domainUrn;
    }
    const host = args.subdomain ?? "@";
    const record = (suffix: string, type: string, recordName: string, value: pulumi.Input<string>) =>
      new digitalocean.DnsRecord(
        `${name}-${suffix}`,
        { domain: domainName, type, name: recordName, value, ttl: args.ttl },
        { parent: this },
      );

    record(args.subdomain ? `a-${args.subdomain}` : "a-apex", "A", host, args.ipv4);
    if (args.ipv6 !== undefined) {
      record(args.subdomain ? `aaaa-${args.subdomain}` : "aaaa-apex", "AAAA", host, args.ipv6);
    }
    if (!args.subdomain) {
      record("cname-www", "CNAME", "www", "@");
    }
    this.registerOutputs({ domainUrn: this.domainUrn });
  }
}
