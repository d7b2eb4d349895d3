// Step 6: the app released under /srv/<app>/releases/<id>, run by PM2 as the app user, given the
// traffic only once its health check passes beside the serving release (nodehost-release).
import * as pulumi from "@pulumi/pulumi";
import { packDirectory } from "./archive";
import { HostStep, HostStepArgs, toolB64 } from "./step";

export type AppSource =
  | { kind: "archive"; dir: string }
  | { kind: "git"; url: string; ref: string };

export interface AppArgs extends HostStepArgs {
  appName: string;
  deployUser: string;
  /** The unprivileged user the app runs as (APP_USER in components/host/index.ts). */
  appUser: string;
  appPort: number;
  source: AppSource;
  /** Script run as a second PM2 process (e.g. worker.js); empty for none. */
  worker: string;
  build: boolean;
  /** app.processes (empty: the web process from package.json, plus `worker`). */
  processes: unknown[];
  /** Plain variables the build sees (app.env, then app.buildEnv). */
  buildEnv: Record<string, string>;
  healthPath: string;
  memoryLimit: string;
  /** npm script run before the release goes live (after a pre-deploy backup); empty for none. */
  migrate: string;
  npmRegistry: string;
  databaseUrl: pulumi.Input<string>;
  redisUrl: pulumi.Input<string>;
  /** app.env and appSecrets as one JSON object of name -> value (secret when it holds secrets). */
  appEnvJson: pulumi.Input<string>;
}

export class App extends HostStep {
  constructor(name: string, args: AppArgs, opts?: pulumi.ComponentResourceOptions) {
    super("nodehost:host:App", name, "app", args, opts);
    const src = args.source;
    this.run(name, args, {
      APP_NAME: args.appName,
      DEPLOY_USER: args.deployUser,
      APP_USER: args.appUser,
      APP_PORT: args.appPort,
      APP_SOURCE: src.kind,
      APP_ARCHIVE_B64: src.kind === "archive" ? packDirectory(src.dir).toString("base64") : "",
      APP_GIT_URL: src.kind === "git" ? src.url : "",
      APP_GIT_REF: src.kind === "git" ? src.ref : "",
      APP_WORKER: args.worker,
      APP_BUILD: args.build ? "1" : "0",
      APP_BUILD_ENV_JSON: JSON.stringify(args.buildEnv),
      APP_PROCESSES_JSON: JSON.stringify(args.processes),
      HEALTH_PATH: args.healthPath,
      MEMORY_LIMIT: args.memoryLimit,
      APP_MIGRATE: args.migrate,
      NPM_REGISTRY: args.npmRegistry,
      DATABASE_URL: args.databaseUrl,
      REDIS_URL: args.redisUrl,
      APP_ENV_JSON: args.appEnvJson,
      ROLLBACK_TOOL_B64: toolB64("nodehost-rollback"),
      RELEASE_TOOL_B64: toolB64("nodehost-release"),
      ECOSYSTEM_TOOL_B64: toolB64("nodehost-ecosystem.js"),
    }, { secret: true, timeoutMinutes: 30 });
    this.registerOutputs({ fingerprint: this.fingerprint });
  }
}
