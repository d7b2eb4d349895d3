// The host layer: every remote step, in dependency order, against one SSH connection.
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { ManagedEndpoint, ManagedPostgres, managedDatabaseUrl, managedRedisUrl } from "../cloud/managed-data";
import { StackConfig } from "../config";
import { App, AppSource } from "./app";
import { Backups } from "./backups";
import { Base } from "./base";
import { DockerData } from "./docker-data";
import { resolveGitRef } from "./git-ref";
import { HealthGate } from "./health-gate";
import { Nginx } from "./nginx";
import { NodePm2 } from "./node-pm2";
import { HostConnection, HostStep } from "./step";
import { Tls } from "./tls";
import { WaitForBoot } from "./wait-for-boot";

export const DEPLOY_USER = "deploy";
/**
 * The app's own user (made by node-pm2): it runs npm ci, the build and the app under PM2, with no
 * sudo, no login shell and no password. The deploy user, which Pulumi connects as, never runs app code.
 */
export const APP_USER = "nodeapp";
export const DATA_MOUNT = "/mnt/data";
export const BUNDLED_APP_DIR = path.join(__dirname, "..", "..", "app");
/** A managed PostgreSQL's CA, where the app (sslrootcert) and the client container read it. */
export const MANAGED_PG_DIR = "/etc/nodehost-pg";
export const MANAGED_PG_CA_PATH = `${MANAGED_PG_DIR}/ca.pem`;
/**
 * The containers psql, pg_dump and pg_restore run in: the Docker PostgreSQL's own, or with a managed
 * one a client container of the same image that reaches it over TLS (docker-data step).
 */
export const PG_CONTAINER = { docker: "nodehost-postgres", managed: "nodehost-pg-client" } as const;

export interface BackupTarget {
  endpoint: pulumi.Input<string>;
  region: string;
  bucket: pulumi.Input<string>;
  accessKey: pulumi.Input<string>;
  secretKey: pulumi.Input<string>;
}

export interface HostArgs {
  config: StackConfig;
  connection: HostConnection;
  hostId: pulumi.Input<string>;
  /** Cloud resources the first step waits for, beyond the address it dials. */
  waitFor: pulumi.Resource[];
  dataDevice: pulumi.Input<string>;
  /** The data volume's configured size (0 where the program does not manage the volume). */
  dataSizeGb: number;
  backup: BackupTarget;
  /**
   * The secrets every app droplet of a stack shares (the same site password behind a load balancer,
   * the same backup keys): made by the first droplet's Host (where they always were, so their
   * URNs and values do not change when a stack grows) and handed to the others.
   */
  shared?: HostSecrets;
  /** PostgreSQL and Redis that DigitalOcean runs (database.mode / cache.mode managed). */
  managed?: { postgres?: ManagedPostgres; cache?: ManagedEndpoint };
  /** The app step starts after these too: the previous droplet's app step, so a release rolls one droplet at a time. */
  appAfter?: HostStep[];
  /**
   * Behind DigitalOcean's load balancer (app.droplets > 1), which ends TLS with its own certificate:
   * nginx serves the site on HTTP to `from` (the VPC range), there is no tls step, and the health
   * gate checks HTTP.
   */
  loadBalancer?: { from: pulumi.Input<string> };
}

export interface HostSecrets {
  postgresPassword: pulumi.Output<string>;
  redisPassword: pulumi.Output<string>;
  basicAuthPassword: pulumi.Output<string>;
  backupPassphrase: pulumi.Output<string>;
  pitrCipherPass: pulumi.Output<string>;
}

function appSource(app: StackConfig["app"], deployKey: StackConfig["appGitDeployKey"]): AppSource {
  switch (app.source) {
    case "bundled":
      return { kind: "archive", dir: BUNDLED_APP_DIR };
    case "path":
      return { kind: "archive", dir: path.resolve(app.path!) };
    case "git":
      if (!app.gitFollow) return { kind: "git", url: app.gitUrl!, ref: app.gitRef, deployKey, hostKeys: app.gitHostKeys };
      // The commit the branch names now: a moved branch is a new release, seen in the preview.
      return {
        kind: "git", url: app.gitUrl!, deployKey, hostKeys: app.gitHostKeys,
        ref: pulumi.unsecret(pulumi.output(deployKey ?? "").apply((key) =>
          resolveGitRef({ url: app.gitUrl!, ref: app.gitRef, deployKey: key || undefined, hostKeys: app.gitHostKeys }))),
      };
  }
}

export class Host extends pulumi.ComponentResource {
  /** Every step in the order it runs. */
  public readonly steps: HostStep[];
  public readonly basicAuthPassword: pulumi.Output<string>;
  public readonly backupPassphrase: pulumi.Output<string>;
  /** pgBackRest's repo1-cipher-pass for the point-in-time archive (exported as a secret output). */
  public readonly pitrCipherPass: pulumi.Output<string>;
  /** The app release this up deploys (App.release). */
  public readonly appRelease: pulumi.Output<string>;
  /** The secrets this host was given or made (HostArgs.shared for the next droplet). */
  public readonly secrets: HostSecrets;
  /** The app step (the next droplet's app step waits for it). */
  public readonly appStep: HostStep;

  constructor(name: string, args: HostArgs, opts?: pulumi.ComponentResourceOptions) {
    super("nodehost:host:Host", name, {}, opts);
    const cfg = args.config;
    const child = { parent: this };
    const password = (suffix: string) =>
      new random.RandomPassword(`${name}-${suffix}`, { length: 32, special: false }, child).result;
    const passphrase = (suffix: string) =>
      new random.RandomPassword(`${name}-${suffix}`, { length: 48, special: false }, child).result;
    this.secrets = args.shared ?? {
      postgresPassword: password("postgres-password"),
      redisPassword: password("redis-password"),
      basicAuthPassword: cfg.basicAuthPassword ?? password("basic-auth-password"),
      // Kept in state (encrypted) so a rebuilt host restores without hand work; exported as a
      // secret output to keep a copy outside Pulumi (backups cannot be read without it).
      backupPassphrase: cfg.backupPassphrase ?? passphrase("backup-passphrase"),
      pitrCipherPass: cfg.backupPitrCipherPass ?? passphrase("pitr-cipher-pass"),
    };
    const { postgresPassword, redisPassword } = this.secrets;
    this.basicAuthPassword = this.secrets.basicAuthPassword;
    this.backupPassphrase = this.secrets.backupPassphrase;
    this.pitrCipherPass = this.secrets.pitrCipherPass;

    const common = { connection: args.connection, hostId: args.hostId };
    const managedPg = args.managed?.postgres;
    const managedCache = args.managed?.cache;
    // The point-in-time archive is the Docker PostgreSQL's WAL; a managed cluster keeps its own
    // (DigitalOcean's point-in-time recovery), and the host's dumps go on beside it.
    const pitr = cfg.backup.pointInTime.enabled && !managedPg;
    const boot = new WaitForBoot(`${name}-wait-for-boot`, { ...common, after: [], waitFor: args.waitFor }, child);
    const base = new Base(`${name}-base`, {
      ...common, after: [boot],
      deployUser: DEPLOY_USER, swapMb: cfg.droplet.swapMb, dataDevice: args.dataDevice, dataMount: DATA_MOUNT,
      dataSizeGb: args.dataSizeGb,
      sshUsers: [DEPLOY_USER, args.connection.user, ...cfg.ssh.extraUsers],
      sshAllowFrom: cfg.ssh.openToWorld ? [] : cfg.ssh.allowFrom,
      rebootAt: cfg.updates.rebootAt,
      logForward: cfg.logs.forward,
    }, child);
    const data = new DockerData(`${name}-docker-data`, {
      ...common, after: [base],
      dataMount: DATA_MOUNT,
      postgresImage: cfg.images.postgres, redisImage: cfg.images.redis, imagePreloadDir: cfg.images.preloadDir,
      postgresUser: cfg.database.user, postgresDb: cfg.database.name,
      postgresPassword, redisPassword,
      pitr, archiveTimeoutSeconds: cfg.backup.pointInTime.archiveTimeoutSeconds,
      imagesRefreshAt: cfg.updates.imagesAt,
      managedPostgres: managedPg, managedPgDir: MANAGED_PG_DIR, managedCache,
    }, child);
    const backups = new Backups(`${name}-backups`, {
      ...common, after: [data],
      appName: cfg.app.name, stack: cfg.stack, dataMount: DATA_MOUNT,
      postgresUser: cfg.database.user, postgresDb: cfg.database.name,
      postgresContainer: managedPg ? PG_CONTAINER.managed : PG_CONTAINER.docker,
      cacheMode: managedCache ? "managed" : "docker",
      s3Endpoint: args.backup.endpoint, s3Region: args.backup.region, s3Bucket: args.backup.bucket,
      s3Prefix: cfg.backup.prefix, s3AccessKey: args.backup.accessKey, s3SecretKey: args.backup.secretKey,
      schedule: cfg.backup.schedule, drillSchedule: cfg.backup.drillSchedule,
      retentionLocalDays: cfg.backup.retentionLocalDays, retentionRemoteDays: cfg.backup.retentionRemoteDays,
      localCopies: cfg.backup.localCopies, allowEmptyStart: cfg.backup.allowEmptyStart,
      staleAfterMinutes: cfg.backup.staleAfterHours * 60,
      passphrase: this.backupPassphrase,
      previousPassphrases: cfg.backupPreviousPassphrases,
      publicKeys: cfg.backup.publicKeys,
      endpointCaPem: cfg.backup.endpointCaPem,
      pitr: pitr ? { ...cfg.backup.pointInTime, cipherPass: this.pitrCipherPass } : undefined,
    }, child);
    const node = new NodePm2(`${name}-node-pm2`, {
      ...common, after: [base],
      deployUser: DEPLOY_USER, appUser: APP_USER, nodeMajor: cfg.app.nodeMajor, nodeSource: cfg.app.nodeSource,
      npmRegistry: cfg.app.npmRegistry, pm2Version: cfg.app.pm2Version, runtimeUpdateAt: cfg.updates.runtimeAt,
    }, child);
    // The app re-runs when Node.js or PM2 changed (node-pm2), not when docker-data or backups did:
    // its URLs are its own parameters (a rotated password or a moved cluster re-runs it that way),
    // and the app rides out a PostgreSQL restart on a new image as it does the image timer's. It
    // still runs after backups (its pre-deploy backup needs the tools).
    const app = new App(`${name}-app`, {
      ...common, after: [node, ...(args.appAfter ?? [])], orderAfter: [backups],
      appName: cfg.app.name, deployUser: DEPLOY_USER, appUser: APP_USER, appPort: cfg.app.port, source: appSource(cfg.app, cfg.appGitDeployKey),
      worker: cfg.app.worker, build: cfg.app.build, migrate: cfg.app.migrate, npmRegistry: cfg.app.npmRegistry,
      processes: cfg.app.processes, buildEnv: { ...cfg.app.env, ...cfg.app.buildEnv },
      healthPath: cfg.app.healthPath, memoryLimit: cfg.app.memoryLimit,
      databaseUrl: managedPg ? managedDatabaseUrl(managedPg, MANAGED_PG_CA_PATH) :
        pulumi.interpolate`postgres://${cfg.database.user}:${postgresPassword.apply(encodeURIComponent)}@127.0.0.1:5432/${cfg.database.name}`,
      redisUrl: managedCache ? managedRedisUrl(managedCache) : pulumi.interpolate`redis://:${redisPassword.apply(encodeURIComponent)}@127.0.0.1:6379`,
      // The config has refused names the stack sets and names in both maps (components/config.ts).
      appEnvJson: cfg.appSecrets
        ? cfg.appSecrets.apply((secrets) => JSON.stringify({ ...cfg.app.env, ...secrets }))
        : JSON.stringify(cfg.app.env),
    }, child);
    // After the first release (the site's upstream is the release's slot), but a release does not
    // re-run it: the site follows `current` and nodehost-release moves the upstream itself.
    const nginx = new Nginx(`${name}-nginx`, {
      ...common, after: [], orderAfter: [app],
      appName: cfg.app.name, siteNames: cfg.siteNames, appPort: cfg.app.port,
      basicAuthUser: cfg.nginx.basicAuthUser, basicAuthPassword: this.basicAuthPassword, allowIps: cfg.nginx.allowIps,
      apiPublic: cfg.nginx.apiPublic, healthPath: cfg.app.healthPath,
      maxBodySize: cfg.nginx.maxBodySize, routes: cfg.nginx.routes,
      lbFrom: args.loadBalancer?.from,
    }, child);
    const tls = args.loadBalancer ? undefined : new Tls(`${name}-tls`, {
      ...common, after: [nginx],
      appName: cfg.app.name, siteNames: cfg.siteNames,
      acmeServer: cfg.tls.acmeServer, acmeEmail: cfg.tls.email, acmeCaPem: cfg.tls.caPem,
    }, child);
    // Re-run after any step (the three it takes cover every other): a site checked after each change.
    const gate = new HealthGate(`${name}-health-gate`, {
      ...common, after: [tls ?? nginx, app, backups],
      siteNames: cfg.siteNames, healthPath: cfg.app.healthPath, acmeCaPem: cfg.tls.caPem, timeoutSeconds: 180,
      plainHttp: args.loadBalancer !== undefined,
    }, child);

    this.steps = tls ? [boot, base, data, backups, node, app, nginx, tls, gate] : [boot, base, data, backups, node, app, nginx, gate];
    this.appRelease = app.release;
    this.appStep = app;
    this.registerOutputs({ steps: this.steps.map((s) => s.stepName) });
  }
}
