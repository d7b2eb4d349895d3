// Step 6: the app released under /srv/<app>/releases/<id>, run by PM2 as the app user, given the
// traffic only once its health check passes beside the serving release (nodehost-release).
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { packDirectory } from "./archive";
import { hostKeyLine } from "./git-ref";
import { HostStep, HostStepArgs, sha256, toolB64, Upload } from "./step";

/**
 * Where a packed app waits to be copied: in the project directory (where `pulumi up` runs), by a
 * relative path, so the FileAsset's path in state names no machine's directories; its hash alone
 * decides whether it changed (asset.go:146-160 at 1b5949891b, see step.ts). Git ignores it;
 * archives unused for a day go.
 */
export const ARCHIVE_DIR = path.join(".nodehost", "archives");
/** Under the connecting user's home on the host (SFTP resolves a relative path there). */
export const REMOTE_ARCHIVE_DIR = ".nodehost-incoming";

/** Packs the app once and writes it where its CopyToRemote reads it. */
export function stageArchive(appName: string, dir: string): Upload {
  const bytes = packDirectory(dir);
  const sum = sha256(bytes);
  const file = `${appName}-${sum.slice(0, 16)}.tgz`;
  const localPath = path.join(ARCHIVE_DIR, file);
  fs.mkdirSync(ARCHIVE_DIR, { recursive: true });
  // Older archives go after a day unused: another stack's up in this directory may be copying one.
  const dayAgo = Date.now() - 24 * 3600_000;
  for (const old of fs.readdirSync(ARCHIVE_DIR)) {
    const f = path.join(ARCHIVE_DIR, old);
    if (old !== file && old.endsWith(".tgz") && fs.statSync(f).mtimeMs < dayAgo) fs.rmSync(f, { force: true });
  }
  if (!fs.existsSync(localPath) || sha256(fs.readFileSync(localPath)) !== sum) fs.writeFileSync(localPath, bytes);
  else fs.utimesSync(localPath, new Date(), new Date());
  return { localPath, remotePath: `${REMOTE_ARCHIVE_DIR}/${file}`, sha256: sum };
}

export type AppSource =
  | { kind: "archive"; dir: string }
  /** deployKey and hostKeys: an SSH URL's (a private repository). */
  | { kind: "git"; url: string; ref: pulumi.Input<string>; deployKey?: pulumi.Input<string>; hostKeys: string[] };

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
  /**
   * What this up deploys, for the preview to show: `archive:<sha256 prefix>` (the release id of a
   * bundled or local app) or `<git URL>#<ref>` (the commit when app.gitFollow resolved one).
   */
  public readonly release: pulumi.Output<string>;

  constructor(name: string, args: AppArgs, opts?: pulumi.ComponentResourceOptions) {
    super("nodehost:host:App", name, "app", args, opts);
    const src = args.source;
    // The app travels as a file (CopyToRemote): not inside the step's stdin, so not in the state.
    const upload = src.kind === "archive" ? stageArchive(args.appName, src.dir) : undefined;
    this.run(name, args, {
      APP_NAME: args.appName,
      DEPLOY_USER: args.deployUser,
      APP_USER: args.appUser,
      APP_PORT: args.appPort,
      APP_SOURCE: src.kind,
      // The release id is the archive's sha256 (its first 12 digits), checked on the host.
      APP_ARCHIVE_SHA256: upload?.sha256 ?? "",
      APP_ARCHIVE_PATH: upload?.remotePath ?? "",
      CONNECT_USER: args.connection.user,
      APP_GIT_URL: src.kind === "git" ? src.url : "",
      APP_GIT_REF: src.kind === "git" ? src.ref : "",
      APP_GIT_DEPLOY_KEY: (src.kind === "git" && src.deployKey) || "",
      // "type base64" only: a key line's comment is not the host's business.
      APP_GIT_HOST_KEYS: src.kind === "git" ? src.hostKeys.map(hostKeyLine).join("\n") : "",
      GIT_FETCH_TOOL_B64: toolB64("nodehost-git-fetch"),
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
    }, { secret: true, timeoutMinutes: 30, uploads: upload ? [upload] : [] });
    this.release = src.kind === "git" ? pulumi.interpolate`${src.url}#${src.ref}` : pulumi.output(`archive:${upload!.sha256.slice(0, 12)}`);
    this.registerOutputs({ fingerprint: this.fingerprint, release: this.release });
  }
}
