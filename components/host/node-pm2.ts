// Step 5: Node.js of the configured major, the app user, and PM2 started on boot by systemd as that user.
import * as pulumi from "@pulumi/pulumi";
import { HostStep, HostStepArgs, toolB64 } from "./step";

export interface NodePm2Args extends HostStepArgs {
  deployUser: string;
  /** The unprivileged user the app runs as (APP_USER in components/host/index.ts). */
  appUser: string;
  nodeMajor: number;
  nodeSource: "nodesource" | "npm-registry" | "debian";
  npmRegistry: string;
  pm2Version: string;
  /** "HH:MM" (host clock) for the daily Node.js and PM2 update within their line, or "never". */
  runtimeUpdateAt: string;
}

export class NodePm2 extends HostStep {
  constructor(name: string, args: NodePm2Args, opts?: pulumi.ComponentResourceOptions) {
    super("nodehost:host:NodePm2", name, "node-pm2", args, opts);
    this.run(name, args, {
      DEPLOY_USER: args.deployUser,
      APP_USER: args.appUser,
      NODE_MAJOR: args.nodeMajor,
      NODE_SOURCE: args.nodeSource,
      NPM_REGISTRY: args.npmRegistry,
      PM2_VERSION: args.pm2Version,
      RUNTIME_UPDATE_AT: args.runtimeUpdateAt,
      RUNTIME_TOOL_B64: toolB64("nodehost-runtime"),
    }, { secret: false, timeoutMinutes: 30 });
    this.registerOutputs({ fingerprint: this.fingerprint });
  }
}
