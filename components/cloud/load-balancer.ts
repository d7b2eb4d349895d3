// A DigitalOcean load balancer in front of the stack's app droplets (issue 13;
// docs/design/grow-past-one-droplet.md): TLS ends here with a certificate DigitalOcean issues and
// renews (Let's Encrypt, the stack's names), HTTP is redirected to HTTPS, and the droplets that carry
// the stack's tag are the pool, each checked on the app's health path over the VPC.
//
// Why terminate rather than pass TLS through: with passthrough every droplet would run certbot for
// the same names behind one address, each HTTP-01 challenge landing on whichever droplet the
// balancer picks; termination gives one certificate, renewed by DigitalOcean, and a health check
// in plain HTTP inside the VPC.
//
// Sources: terraform-provider-digitalocean v2.99.1, cited as "tfdo <file>:<line>" under digitalocean/.
import * as crypto from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import * as digitalocean from "@pulumi/digitalocean";

/**
 * The balancer's health check: tfdo loadbalancer/resource_loadbalancer.go:258-310 (interval 3-300 s,
 * default 10; timeout 3-300 s, default 5; thresholds 2-10, defaults 3 unhealthy and 5 healthy).
 * The defaults are kept; a rolling release waits these out at each end (LB_TIMING).
 */
export const LB_HEALTHCHECK = { checkIntervalSeconds: 10, responseTimeoutSeconds: 5, unhealthyThreshold: 3, healthyThreshold: 5 };

/**
 * How long a droplet takes to leave the pool once its health path fails, and to come back once it
 * answers again: the rolling release drains a droplet for `drainSeconds` before it releases, and
 * waits `rejoinSeconds` after before the next droplet starts.
 */
export const LB_TIMING = {
  drainSeconds: LB_HEALTHCHECK.checkIntervalSeconds * LB_HEALTHCHECK.unhealthyThreshold,
  rejoinSeconds: LB_HEALTHCHECK.checkIntervalSeconds * LB_HEALTHCHECK.healthyThreshold,
};

export interface AppLoadBalancerArgs {
  region: string;
  vpcId: pulumi.Input<string>;
  /** The tag every app droplet carries: the pool follows it (`droplet_tag`, which conflicts with `droplet_ids`: :342-356). */
  dropletTag: string;
  /** The stack's names (the certificate's domains); their zone must be hosted by DigitalOcean. */
  siteNames: string[];
  healthPath: string;
  /** Sessions stay on one droplet (a cookie) when the app keeps state per process, websockets among it. */
  sticky: boolean;
  /** The longest a request or an idle websocket may stay quiet (http_idle_timeout_seconds, 30-600 in the API). */
  idleTimeoutSeconds: number;
  /** The certificate waits for these (the stack's DNS zone: Let's Encrypt validates through it). */
  dependsOn: pulumi.Input<pulumi.Input<pulumi.Resource>[]>;
}

/** The certificate's name: one per set of names, so a change of names makes the new one before the old goes. */
export function certificateName(stackName: string, siteNames: string[]): string {
  const digest = crypto.createHash("sha256").update([...siteNames].sort().join(",")).digest("hex").slice(0, 8);
  return `${stackName}-${digest}`;
}

export class AppLoadBalancer extends pulumi.ComponentResource {
  /** The address DNS points at. */
  public readonly ip: pulumi.Output<string>;
  /** `do:loadbalancer:<id>`, for the stack's Project. */
  public readonly lbUrn: pulumi.Output<string>;
  /** The load balancer's id: the droplets' cloud firewall admits HTTP from it alone. */
  public readonly lbId: pulumi.Output<string>;

  constructor(name: string, args: AppLoadBalancerArgs, opts?: pulumi.ComponentResourceOptions) {
    super("nodehost:cloud:AppLoadBalancer", name, {}, opts);
    const child = { parent: this };
    // name, domains and type are ForceNew (tfdo certificate/resource_certificate.go:72-75,
    // 116-123, 131-139): a name derived from the domains lets the engine create the replacement
    // before it deletes the old one (the default order), with no clash of names.
    const certName = certificateName(name, args.siteNames);
    const cert = new digitalocean.Certificate(`${name}-cert`, {
      name: certName,
      type: "lets_encrypt",
      domains: args.siteNames,
    }, { ...child, dependsOn: args.dependsOn });
    const lb = new digitalocean.LoadBalancer(`${name}-lb`, {
      name: `${name}-lb`,
      region: args.region,
      vpcUuid: args.vpcId,
      dropletTag: args.dropletTag,
      forwardingRules: [
        // By name, not id: a Let's Encrypt certificate's id changes when DigitalOcean renews it
        // (certificate_id is deprecated for that reason, tfdo loadbalancer/resource_loadbalancer.go:100-110).
        { entryProtocol: "https", entryPort: 443, targetProtocol: "http", targetPort: 80, certificateName: cert.name },
        { entryProtocol: "http", entryPort: 80, targetProtocol: "http", targetPort: 80 },
      ],
      redirectHttpToHttps: true,
      healthcheck: { protocol: "http", port: 80, path: args.healthPath, ...LB_HEALTHCHECK },
      stickySessions: args.sticky
        ? { type: "cookies", cookieName: "nodehost-lb", cookieTtlSeconds: 3600 }
        : { type: "none" },
      httpIdleTimeoutSeconds: args.idleTimeoutSeconds,
      enableBackendKeepalive: true,
    }, child);
    // The droplets take HTTP from the balancer alone: the stack's firewall opens no web port in
    // this layout (components/cloud/network.ts), and DigitalOcean's firewalls add up per droplet.
    new digitalocean.Firewall(`${name}-lb-firewall`, {
      name: `${name}-lb-firewall`,
      tags: [args.dropletTag],
      inboundRules: [{ protocol: "tcp", portRange: "80", sourceLoadBalancerUids: [lb.id] }],
    }, child);
    this.ip = lb.ip;
    this.lbUrn = lb.loadBalancerUrn;
    this.lbId = lb.id;
    this.registerOutputs({ ip: this.ip });
  }
}
