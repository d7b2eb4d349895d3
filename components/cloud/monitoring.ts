// Alerts: uptime and TLS expiry on the health URL, a backup heartbeat, CPU/memory/disk on the droplets
// and on the managed database clusters.
import * as pulumi from "@pulumi/pulumi";
import * as digitalocean from "@pulumi/digitalocean";

export interface MonitoringArgs {
  /** Every app droplet of the stack: each metric alert covers them all. */
  dropletIds: pulumi.Input<string>[];
  /** The stack's managed database clusters (database.mode / cache.mode managed): the same thresholds watch them. */
  clusterIds?: pulumi.Input<string>[];
  /** https://<site><app.healthPath> */
  healthUrl: string;
  /** https://<site>/healthz/backup: 200 while the newest backup is younger than twice the schedule. */
  backupHeartbeatUrl: string;
  emails: string[];
  slack?: { channel: string; url: pulumi.Input<string> };
  cpuPercent: number;
  memoryPercent: number;
  diskPercent: number;
  uptimeCheck: boolean;
}

/**
 * The same metrics of a managed database cluster: [suffix, type, config field]. The provider takes
 * these types (tfdo monitoring/resource_monitor_alert.go:60-63 at v2.99.1, godo's Dbaas* constants;
 * values in openapi specification/resources/monitoring/models/alert_policy_request.yml:66-69 @7c1300c).
 */
export const CLUSTER_METRIC_ALERTS = [
  ["db-cpu", "v1/dbaas/alerts/cpu_alerts", "cpuPercent"],
  ["db-memory", "v1/dbaas/alerts/memory_utilization_alerts", "memoryPercent"],
  ["db-disk", "v1/dbaas/alerts/disk_utilization_alerts", "diskPercent"],
] as const;

/** Droplet metric alerts: [suffix, DigitalOcean metric type, config field]. */
export const METRIC_ALERTS = [
  ["cpu", "v1/insights/droplet/cpu", "cpuPercent"],
  ["memory", "v1/insights/droplet/memory_utilization_percent", "memoryPercent"],
  ["disk", "v1/insights/droplet/disk_utilization_percent", "diskPercent"],
] as const;

export class Monitoring extends pulumi.ComponentResource {
  constructor(name: string, args: MonitoringArgs, opts?: pulumi.ComponentResourceOptions) {
    super("nodehost:cloud:Monitoring", name, {}, opts);

    const slacks = args.slack ? [{ channel: args.slack.channel, url: args.slack.url }] : [];
    if (args.emails.length === 0 && slacks.length === 0) {
      pulumi.log.warn("alerts: no recipients configured (nodehost:alerts.emails / slackChannel): no alert is created", this);
      this.registerOutputs({});
      return;
    }
    const recipients = { emails: args.emails, slacks };

    // One 5-minute threshold alert per metric, over every entity it watches.
    const thresholdAlerts = (alerts: typeof METRIC_ALERTS | typeof CLUSTER_METRIC_ALERTS, entities: pulumi.Input<string>[], what: (suffix: string) => string) => {
      for (const [suffix, type, field] of alerts) {
        new digitalocean.MonitorAlert(
          `${name}-${suffix}`,
          {
            type,
            compare: "GreaterThan",
            value: args[field],
            window: "5m",
            entities,
            description: `${name}: ${what(suffix)} above ${args[field]}% for 5 minutes`,
            alerts: recipients,
            enabled: true,
          },
          { parent: this },
        );
      }
    };
    thresholdAlerts(METRIC_ALERTS, args.dropletIds, (suffix) => suffix);
    const clusterIds = args.clusterIds ?? [];
    if (clusterIds.length > 0) thresholdAlerts(CLUSTER_METRIC_ALERTS, clusterIds, (suffix) => `managed database ${suffix.slice(3)}`);

    // Every uptime alert needs a period: the API requires it (openapi
    // specification/resources/uptime/create_alert.yml:33-37 @7c1300c) and the provider always
    // sends one (uptime/resource_uptime_alert.go:136), so an alert without it fails on create.
    if (args.uptimeCheck) {
      const site = new digitalocean.UptimeCheck(
        `${name}-health`,
        { name: `${name}-health`, target: args.healthUrl, type: "https", regions: ["eu_west", "us_east"], enabled: true },
        { parent: this },
      );
      new digitalocean.UptimeAlert(
        `${name}-down`,
        { checkId: site.id, name: `${name}-down`, type: "down", threshold: 1, comparison: "greater_than", period: "2m", notifications: [recipients] },
        { parent: this },
      );
      new digitalocean.UptimeAlert(
        `${name}-tls-expiry`,
        { checkId: site.id, name: `${name}-tls-expiry`, type: "ssl_expiry", threshold: 14, comparison: "less_than", period: "10m", notifications: [recipients] },
        { parent: this },
      );
      const backup = new digitalocean.UptimeCheck(
        `${name}-backup`,
        { name: `${name}-backup`, target: args.backupHeartbeatUrl, type: "https", regions: ["eu_west"], enabled: true },
        { parent: this },
      );
      new digitalocean.UptimeAlert(
        `${name}-backup-stale`,
        { checkId: backup.id, name: `${name}-backup-stale`, type: "down", threshold: 1, comparison: "greater_than", period: "10m", notifications: [recipients] },
        { parent: this },
      );
    }
    this.registerOutputs({});
  }
}
