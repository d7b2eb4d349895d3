// Step 8: certbot certificates (webroot) for the site's names, HTTPS, HSTS and renewal.
import * as pulumi from "@pulumi/pulumi";
import { HostStep, HostStepArgs } from "./step";

export interface TlsArgs extends HostStepArgs {
  appName: string;
  siteNames: string[];
  acmeServer: string;
  acmeEmail: string;
  /** Extra CA (PEM) to trust for a private or test ACME server; empty for Let's Encrypt. */
  acmeCaPem: string;
}

export class Tls extends HostStep {
  constructor(name: string, args: TlsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("nodehost:host:Tls", name, "tls", args, opts);
    this.run(name, args, {
      APP_NAME: args.appName,
      SERVER_NAMES: args.siteNames.join(" "),
      ACME_SERVER: args.acmeServer,
      ACME_EMAIL: args.acmeEmail,
      ACME_CA_PEM: args.acmeCaPem,
    }, { secret: false, timeoutMinutes: 20 });
    this.registerOutputs({ fingerprint: this.fingerprint });
  }
}
