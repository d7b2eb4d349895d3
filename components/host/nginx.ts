// Step 7: Nginx serving the UI (basic auth) and proxying /api/ (no basic auth) to the app.
import * as pulumi from "@pulumi/pulumi";
import { HostStep, HostStepArgs, toolB64 } from "./step";

export interface NginxArgs extends HostStepArgs {
  appName: string;
  siteNames: string[];
  appPort: number;
  basicAuthUser: string;
  basicAuthPassword: pulumi.Input<string>;
  /** Addresses allowed to reach the UI and the API (not /api/health); empty: everyone. */
  allowIps: string[];
  /** true: the allow-list covers the UI only and /api/ is open to all. */
  apiPublic: boolean;
  /** app.healthPath: open to all (the uptime check's target). */
  healthPath: string;
  maxBodySize: string;
  routes: { path: string; websocket: boolean; idleTimeoutSeconds: number; maxBodySize?: string; port?: number }[];
  /**
   * Behind a load balancer: the range it connects from (the stack's VPC). The site is then served on
   * HTTP to it (nodehost-nginx-render, LB_FROM). Unset on a stack of one droplet, whose stdin then
   * has no such line.
   */
  lbFrom?: pulumi.Input<string>;
}

export class Nginx extends HostStep {
  constructor(name: string, args: NginxArgs, opts?: pulumi.ComponentResourceOptions) {
    super("nodehost:host:Nginx", name, "nginx", args, opts);
    this.run(name, args, {
      APP_NAME: args.appName,
      SERVER_NAMES: args.siteNames.join(" "),
      APP_PORT: args.appPort,
      BASIC_AUTH_USER: args.basicAuthUser,
      BASIC_AUTH_PASSWORD: args.basicAuthPassword,
      ALLOW_IPS: args.allowIps.join(" "),
      API_PUBLIC: args.apiPublic ? 1 : 0,
      HEALTH_PATH: args.healthPath,
      MAX_BODY_SIZE: args.maxBodySize,
      // PATH,WS,IDLE,BODY[,PORT] per route (nodehost-nginx-render checks each field again).
      ROUTES: args.routes.map((r) => `${r.path},${r.websocket ? 1 : 0},${r.idleTimeoutSeconds},${r.maxBodySize ?? "-"}${r.port ? `,${r.port}` : ""}`).join(" "),
      NGINX_RENDER_B64: toolB64("nodehost-nginx-render"),
      ...(args.lbFrom === undefined ? {} : { LB_FROM: args.lbFrom }),
    }, { secret: true, timeoutMinutes: 20 });
    this.registerOutputs({ fingerprint: this.fingerprint });
  }
}
