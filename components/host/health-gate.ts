// Step 9: fails `pulumi up` unless https://<site><app.healthPath> (http:// behind a load balancer)
// answers healthy on the host.
import * as pulumi from "@pulumi/pulumi";
import { HostStep, HostStepArgs } from "./step";

export interface HealthGateArgs extends HostStepArgs {
  siteNames: string[];
  healthPath: string;
  acmeCaPem: string;
  timeoutSeconds: number;
  /** Behind a load balancer the droplet serves HTTP (TLS ends at the balancer): checked on port 80. */
  plainHttp?: boolean;
}

export class HealthGate extends HostStep {
  constructor(name: string, args: HealthGateArgs, opts?: pulumi.ComponentResourceOptions) {
    super("nodehost:host:HealthGate", name, "health-gate", args, opts);
    this.run(name, args, {
      SERVER_NAMES: args.siteNames.join(" "),
      HEALTH_PATH: args.healthPath,
      ACME_CA_PEM: args.acmeCaPem,
      HEALTH_TIMEOUT_S: args.timeoutSeconds,
      ...(args.plainHttp ? { HEALTH_SCHEME: "http" } : {}),
    }, { secret: false, timeoutMinutes: 10 });
    this.registerOutputs({ fingerprint: this.fingerprint });
  }
}
