// The off-site backup bucket (Spaces), versioned, and a key that can touch only it.
import * as pulumi from "@pulumi/pulumi";
import * as digitalocean from "@pulumi/digitalocean";
import * as random from "@pulumi/random";

export interface BackupBucketArgs {
  region: string;
  /** Fixed name (needed to reuse a bucket after the stack is gone); else `<name>-<random>`. */
  bucketName?: string;
  /** false: the bucket already exists (disaster recovery): use it, do not create it. */
  create: boolean;
  retentionDays: number;
  protect: boolean;
}

export class BackupBucket extends pulumi.ComponentResource {
  public readonly bucketName: pulumi.Output<string>;
  public readonly bucketUrn?: pulumi.Output<string>;
  public readonly endpoint: string;
  public readonly accessKey: pulumi.Output<string>;
  public readonly secretKey: pulumi.Output<string>;

  constructor(name: string, args: BackupBucketArgs, opts?: pulumi.ComponentResourceOptions) {
    super("nodehost:cloud:BackupBucket", name, {}, opts);

    let bucketName: pulumi.Output<string>;
    if (args.bucketName) {
      bucketName = pulumi.output(args.bucketName);
    } else {
      const suffix = new random.RandomId(`${name}-suffix`, { byteLength: 3 }, { parent: this });
      bucketName = pulumi.interpolate`${name}-${suffix.hex}`;
    }
    if (args.create) {
      const bucket = new digitalocean.SpacesBucket(
        `${name}-bucket`,
        {
          name: bucketName,
          region: args.region,
          acl: "private",
          // Retention of current backups is nodehost-backup's, which never removes the newest
          // three: a lifecycle expiry would delete the newest too after a month of failed backups.
          // Versioned, a backup deleted or overwritten (by retention, an operator or a leaked key's
          // plain DELETE) stays recoverable as a noncurrent version for the retention, then goes.
          // (tfdo v2.99.1 spaces/resource_spaces_bucket.go:97-113 versioning, :180-192 and
          // :705-715 noncurrent_version_expiration -> NoncurrentVersionExpiration.NoncurrentDays.)
          versioning: { enabled: true },
          lifecycleRules: [
            {
              enabled: true,
              noncurrentVersionExpiration: { days: args.retentionDays },
              abortIncompleteMultipartUploadDays: 1,
            },
          ],
        },
        // The provider updates `name` in place and the API keeps the old bucket
        // (spaces/resource_spaces_bucket.go:35-39 has no ForceNew): the host would then follow a
        // bucket that does not exist. A new name is a new bucket, which production's protect
        // refuses and the preview guard reports.
        { parent: this, protect: args.protect, replaceOnChanges: ["name"] },
      );
      this.bucketUrn = bucket.bucketUrn;
      bucketName = bucket.name;
    }
    const key = new digitalocean.SpacesKey(
      `${name}-key`,
      { name: pulumi.interpolate`${name}-host`, grants: [{ bucket: bucketName, permission: "readwrite" }] },
      { parent: this, additionalSecretOutputs: ["secretKey"] },
    );

    this.bucketName = bucketName;
    this.endpoint = `https://${args.region}.digitaloceanspaces.com`;
    this.accessKey = pulumi.secret(key.accessKey);
    this.secretKey = pulumi.secret(key.secretKey);
    this.registerOutputs({ bucketName: this.bucketName, endpoint: this.endpoint });
  }
}
