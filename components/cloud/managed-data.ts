// DigitalOcean's managed engines for a stack that has outgrown PostgreSQL and Redis in Docker on one
// droplet (issue 13; docs/design/grow-past-one-droplet.md): a PostgreSQL cluster with the app's
// database and user, a Valkey cluster for the cache, and one database firewall per cluster that
// admits the stack's droplets by tag, all in the stack's region and VPC.
//
// Sources: terraform-provider-digitalocean v2.99.1 (what @pulumi/digitalocean 4.80 bridges),
// cited as "tfdo <file>:<line>" under digitalocean/.
import * as pulumi from "@pulumi/pulumi";
import * as digitalocean from "@pulumi/digitalocean";

export interface ManagedDataArgs {
  region: string;
  vpcId: pulumi.Input<string>;
  /** The tag every app droplet of the stack carries: the firewalls admit it (present and future droplets). */
  dropletTag: string;
  postgres: {
    /** The major version (a cluster's `version`; tfdo database/resource_database_cluster.go:62-80). */
    version: string;
    /** A database size slug, e.g. db-s-1vcpu-1gb. */
    size: string;
    nodeCount: number;
    /** The app's database and user (database.name, database.user). */
    database: string;
    user: string;
  };
  cache: {
    version: string;
    size: string;
    /** What Valkey drops when full (only the caching engines take one: validateExclusiveAttributes, 330-350). */
    evictionPolicy: string;
  };
  tags: string[];
  /** Production: a deleted or replaced cluster is lost data. */
  protect: boolean;
  /** database.mode managed: the PostgreSQL cluster is made. */
  postgresEnabled: boolean;
  /** cache.mode managed: the Valkey cluster is made. */
  cacheEnabled: boolean;
}

/**
 * A managed PostgreSQL as the host layer needs it: the app's endpoint, the admin that grants the
 * app's user its schema, and the CA the server's certificate is verified against.
 */
export interface ManagedPostgres {
  host: pulumi.Input<string>;
  port: pulumi.Input<number>;
  database: pulumi.Input<string>;
  user: pulumi.Input<string>;
  password: pulumi.Input<string>;
  adminUser: pulumi.Input<string>;
  adminPassword: pulumi.Input<string>;
  caPem: pulumi.Input<string>;
}

/**
 * Where the app reaches one managed engine: the private (VPC) address, and what it authenticates
 * with. For Valkey, the host's own trust store verifies the server: DigitalOcean's Valkey clusters
 * present a Let's Encrypt certificate ("This method uses Let's Encrypt certification, which does
 * not require that you download a CA certificate", docs.digitalocean.com/products/databases/valkey/how-to/connect).
 */
export interface ManagedEndpoint {
  host: pulumi.Input<string>;
  port: pulumi.Input<number>;
  user: pulumi.Input<string>;
  /** A secret in state and in every output (the provider marks it Sensitive, which Pulumi does not carry over). */
  password: pulumi.Input<string>;
}

export class ManagedData extends pulumi.ComponentResource {
  /**
   * The app's endpoint, the cluster's own admin (doadmin) the host uses once per run to let the
   * app's user create its tables (DigitalOcean makes the database owned by doadmin and the user
   * with no rights on its public schema, which PostgreSQL 15+ no longer opens to every user), and
   * the CA that signed the server's certificate (the app verifies the server by it: sslmode=verify-full).
   */
  public readonly postgres?: ManagedPostgres;
  public readonly cache?: ManagedEndpoint;
  /** `do:dbaas:<id>` of each cluster, for the stack's Project. */
  public readonly urns: pulumi.Output<string>[] = [];
  /** The clusters' ids (the dbaas metric alerts watch them). */
  public readonly clusterIds: pulumi.Output<string>[] = [];

  constructor(name: string, args: ManagedDataArgs, opts?: pulumi.ComponentResourceOptions) {
    super("nodehost:cloud:ManagedData", name, {}, opts);
    const child = { parent: this };
    // name, engine, region, private_network_uuid and project_id are ForceNew (tfdo
    // database/resource_database_cluster.go:40-60, 87-95, 145-159): a change replaces the cluster
    // and so its data. Production protects it; the preview guard refuses a replace or delete.
    const held = { ...child, protect: args.protect };
    // Each cluster: in the stack's region and VPC, held, admitted to the stack's tag, in the Project and the alerts.
    // One firewall per cluster: the API replaces the whole rule set on each call (tfdo
    // database/resource_database_firewall.go:73-80), so a second resource would silently undo the
    // first. A `tag` rule (:42-48) admits every droplet of the stack, the ones a later `up` adds too.
    const stackCluster = (suffix: string, engine: Pick<digitalocean.DatabaseClusterArgs, "engine" | "version" | "size" | "nodeCount" | "evictionPolicy">) => {
      const cluster = new digitalocean.DatabaseCluster(`${name}-${suffix}`, {
        name: `${name}-${suffix}`,
        ...engine,
        region: args.region,
        privateNetworkUuid: args.vpcId,
        tags: args.tags,
      }, held);
      new digitalocean.DatabaseFirewall(`${name}-${suffix}-firewall`, {
        clusterId: cluster.id,
        rules: [{ type: "tag", value: args.dropletTag }],
      }, child);
      this.urns.push(cluster.clusterUrn);
      this.clusterIds.push(cluster.id);
      return cluster;
    };
    if (args.postgresEnabled) {
      const pg = stackCluster("pg", { engine: "pg", version: args.postgres.version, size: args.postgres.size, nodeCount: args.postgres.nodeCount });
      // Deleting a DatabaseDb drops the database: it is held like the cluster. The user is not (a
      // new user with a new password loses no data).
      const db = new digitalocean.DatabaseDb(`${name}-pg-db`, { clusterId: pg.id, name: args.postgres.database }, held);
      // The user's password is generated by DigitalOcean and read back once (tfdo
      // database/resource_database_user.go:77-80 Sensitive, 219-221): it is never on a command
      // line, and the program keeps it only as a secret.
      const user = new digitalocean.DatabaseUser(`${name}-pg-user`, { clusterId: pg.id, name: args.postgres.user }, child);
      this.postgres = {
        host: pg.privateHost,
        port: pg.port,
        database: db.name,
        user: user.name,
        password: pulumi.secret(user.password),
        // The cluster's default user and its password (tfdo v2.99.1
        // database/resource_database_cluster.go:214-228 schema, Sensitive; :735-737 set from the API's connection).
        adminUser: pg.user,
        adminPassword: pulumi.secret(pg.password),
        // PEM text (tfdo v2.99.1 database/datasource_database_ca.go:33-40: string(ca.Certificate)).
        caPem: digitalocean.getDatabaseCaOutput({ clusterId: pg.id }, child).certificate,
      };
    }
    if (args.cacheEnabled) {
      // Valkey in place of Redis: DigitalOcean moved its Redis clusters to Valkey, and the provider
      // suppresses a redis <-> valkey diff so that a moved cluster is not replaced (:52-59).
      const cache = stackCluster("cache", { engine: "valkey", version: args.cache.version, size: args.cache.size, nodeCount: 1, evictionPolicy: args.cache.evictionPolicy });
      // The default user is the only one a caching cluster has; its password is the cluster's.
      this.cache = {
        host: cache.privateHost,
        port: cache.port,
        user: cache.user,
        password: pulumi.secret(cache.password),
      };
    }
    this.registerOutputs({});
  }
}

/**
 * The app's DATABASE_URL for a managed cluster: the private host, TLS verified against the
 * cluster's CA at `caPath` on the host (node-postgres and libpq both read sslrootcert).
 */
export function managedDatabaseUrl(pg: Pick<ManagedPostgres, "host" | "port" | "database" | "user" | "password">, caPath: string): pulumi.Output<string> {
  return pulumi.secret(pulumi.interpolate`postgres://${pulumi.output(pg.user).apply(encodeURIComponent)}:${pulumi.output(pg.password).apply(encodeURIComponent)}@${pg.host}:${pg.port}/${pg.database}?sslmode=verify-full&sslrootcert=${encodeURIComponent(caPath)}`);
}

/** The app's REDIS_URL for a managed Valkey: TLS (rediss) on the private host. */
export function managedRedisUrl(cache: ManagedEndpoint): pulumi.Output<string> {
  return pulumi.secret(pulumi.interpolate`rediss://${pulumi.output(cache.user).apply(encodeURIComponent)}:${pulumi.output(cache.password).apply(encodeURIComponent)}@${cache.host}:${cache.port}`);
}
