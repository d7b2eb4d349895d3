// Step 4: backup/restore tools and cron; restores the newest off-site backup onto an empty volume.
import * as pulumi from "@pulumi/pulumi";
import { HostStep, HostStepArgs, toolB64 } from "./step";

export interface BackupsArgs extends HostStepArgs {
  appName: string;
  /** The stack's name: in every object name, so stacks sharing a bucket keep apart. */
  stack: string;
  dataMount: string;
  postgresUser: string;
  postgresDb: string;
  /** Where pg_dump, psql and pg_restore run: the Docker PostgreSQL, or the client of a managed one (docker-data). */
  postgresContainer: string;
  /** cache.mode: "managed" leaves Redis out of the archives and restores (DigitalOcean keeps the Valkey). */
  cacheMode: "docker" | "managed";
  s3Endpoint: pulumi.Input<string>;
  s3Region: string;
  s3Bucket: pulumi.Input<string>;
  s3Prefix: string;
  s3AccessKey: pulumi.Input<string>;
  s3SecretKey: pulumi.Input<string>;
  schedule: string;
  /** When the restore drill runs (cron). */
  drillSchedule: string;
  retentionLocalDays: number;
  retentionRemoteDays: number;
  /** Archives kept on the volume at most. */
  localCopies: number;
  /** Start empty even when the bucket records that this stack has run (nodehost-backups --start). */
  allowEmptyStart: boolean;
  /** The heartbeat at /healthz/backup turns 404 when the newest backup is older than this. */
  staleAfterMinutes: number;
  /** Every archive is encrypted with it before it leaves pg_dump's hands; restores need it. */
  passphrase: pulumi.Input<string>;
  /** Passphrases of backups made before a rotation: restores try them after the current one. */
  previousPassphrases?: pulumi.Input<string[]>;
  /** ASCII-armored OpenPGP public keys every archive is also encrypted to. */
  publicKeys: string[];
  /** PEM CA the endpoint is checked against ("" = the host's CAs). */
  endpointCaPem: string;
  /** Point-in-time recovery with pgBackRest, or undefined when off. */
  pitr?: { schedule: string; fullEveryDays: number; retentionFull: number; cipherPass: pulumi.Input<string> };
}

export class Backups extends HostStep {
  constructor(name: string, args: BackupsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("nodehost:host:Backups", name, "backups", args, opts);
    this.run(name, args, {
      APP_NAME: args.appName,
      STACK: args.stack,
      DATA_MOUNT: args.dataMount,
      POSTGRES_USER: args.postgresUser,
      POSTGRES_DB: args.postgresDb,
      POSTGRES_CONTAINER: args.postgresContainer,
      CACHE_MODE: args.cacheMode,
      S3_ENDPOINT: args.s3Endpoint,
      S3_REGION: args.s3Region,
      S3_BUCKET: args.s3Bucket,
      S3_PREFIX: args.s3Prefix,
      S3_ACCESS_KEY: args.s3AccessKey,
      S3_SECRET_KEY: args.s3SecretKey,
      BACKUP_SCHEDULE: args.schedule,
      DRILL_SCHEDULE: args.drillSchedule,
      RETENTION_LOCAL_DAYS: args.retentionLocalDays,
      RETENTION_REMOTE_DAYS: args.retentionRemoteDays,
      LOCAL_COPIES: args.localCopies,
      ALLOW_EMPTY_START: args.allowEmptyStart ? "true" : "false",
      BACKUP_STALE_AFTER_MIN: args.staleAfterMinutes,
      BACKUP_TOOL_B64: toolB64("nodehost-backup"),
      RESTORE_TOOL_B64: toolB64("nodehost-restore"),
      LIST_TOOL_B64: toolB64("nodehost-backups"),
      KEYS_TOOL_B64: toolB64("nodehost-backup-keys"),
      BACKUP_PASSPHRASE: args.passphrase,
      // One per line (the schema allows no line break in a passphrase).
      BACKUP_PREVIOUS_PASSPHRASES: pulumi.output(args.previousPassphrases ?? []).apply((p) => p.join("\n")),
      S3_CA_PEM_B64: Buffer.from(args.endpointCaPem).toString("base64"),
      PITR_ENABLED: args.pitr ? "true" : "false",
      PITR_SCHEDULE: args.pitr?.schedule ?? "",
      PITR_FULL_EVERY_DAYS: args.pitr?.fullEveryDays ?? 7,
      PITR_RETENTION_FULL: args.pitr?.retentionFull ?? 2,
      PITR_CIPHER_PASS: args.pitr?.cipherPass ?? "",
      PITR_TOOL_B64: toolB64("nodehost-pitr"),
      BACKUP_PUBLIC_KEYS_B64: Buffer.from(args.publicKeys.map((k) => k.trim() + "\n").join("")).toString("base64"),
    }, { secret: true, timeoutMinutes: 30 });
    this.registerOutputs({ fingerprint: this.fingerprint });
  }
}
