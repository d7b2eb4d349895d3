// Step 3: Docker, and the PostgreSQL and Redis containers on 127.0.0.1 with data on the volume; with
// a managed PostgreSQL, a client container that reaches it instead (and moves the Docker one's data there);
// with a managed Valkey, no Redis container (a Docker one's keys are moved there).
import * as pulumi from "@pulumi/pulumi";
import type { ManagedEndpoint, ManagedPostgres } from "../cloud/managed-data";
import { HostStep, HostStepArgs, toolB64 } from "./step";

export interface DockerDataArgs extends HostStepArgs {
  dataMount: string;
  postgresImage: string;
  redisImage: string;
  /** Image tarballs loaded when an image is not present (mirrors, offline hosts, tests). */
  imagePreloadDir: string;
  postgresUser: string;
  postgresDb: string;
  postgresPassword: pulumi.Input<string>;
  redisPassword: pulumi.Input<string>;
  /** PostgreSQL archives its WAL with pgBackRest (backup.pointInTime.enabled). */
  pitr: boolean;
  archiveTimeoutSeconds: number;
  /** "HH:MM" (host clock) each day the images' tags are pulled again and switched to, or "never". */
  imagesRefreshAt: string;
  /** database.mode managed: the cluster this host's app and backups use instead of a Docker PostgreSQL. */
  managedPostgres?: ManagedPostgres;
  /** Where the cluster's CA is written for the app (MANAGED_PG_CA_PATH's directory). */
  managedPgDir: string;
  /** cache.mode managed: the Valkey this host's app uses instead of a Docker Redis (verified by the host's trust store). */
  managedCache?: ManagedEndpoint;
}

export class DockerData extends HostStep {
  constructor(name: string, args: DockerDataArgs, opts?: pulumi.ComponentResourceOptions) {
    super("nodehost:host:DockerData", name, "docker-data", args, opts);
    this.run(name, args, {
      DATA_MOUNT: args.dataMount,
      POSTGRES_IMAGE: args.postgresImage,
      REDIS_IMAGE: args.redisImage,
      IMAGE_PRELOAD_DIR: args.imagePreloadDir,
      POSTGRES_USER: args.postgresUser,
      POSTGRES_DB: args.postgresDb,
      POSTGRES_PASSWORD: args.postgresPassword,
      REDIS_PASSWORD: args.redisPassword,
      PITR_ENABLED: args.pitr ? "true" : "false",
      PITR_ARCHIVE_TIMEOUT: args.archiveTimeoutSeconds,
      IMAGES_REFRESH_AT: args.imagesRefreshAt,
      CONTAINERS_TOOL_B64: toolB64("nodehost-containers"),
      POSTGRES_MODE: args.managedPostgres ? "managed" : "docker",
      MANAGED_PG_DIR: args.managedPgDir,
      MANAGED_PG_HOST: args.managedPostgres?.host ?? "",
      MANAGED_PG_PORT: args.managedPostgres?.port ?? "",
      MANAGED_PG_PASSWORD: args.managedPostgres?.password ?? "",
      MANAGED_PG_ADMIN_USER: args.managedPostgres?.adminUser ?? "",
      MANAGED_PG_ADMIN_PASSWORD: args.managedPostgres?.adminPassword ?? "",
      MANAGED_PG_CA_B64: args.managedPostgres ? pulumi.output(args.managedPostgres.caPem).apply((pem) => Buffer.from(pem ?? "").toString("base64")) : "",
      CACHE_MODE: args.managedCache ? "managed" : "docker",
      MANAGED_REDIS_HOST: args.managedCache?.host ?? "",
      MANAGED_REDIS_PORT: args.managedCache?.port ?? "",
      MANAGED_REDIS_USER: args.managedCache?.user ?? "",
      MANAGED_REDIS_PASSWORD: args.managedCache?.password ?? "",
    }, { secret: true, timeoutMinutes: 30 });
    this.registerOutputs({ fingerprint: this.fingerprint });
  }
}
