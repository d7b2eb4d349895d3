// Step 3: Docker, and the PostgreSQL and Redis containers on 127.0.0.1 with data on the volume.
import * as pulumi from "@pulumi/pulumi";
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
    }, { secret: true, timeoutMinutes: 30 });
    this.registerOutputs({ fingerprint: this.fingerprint });
  }
}
