#!/usr/bin/env node
// Fails CI when a `pulumi preview --json` would replace or delete the data volume, the reserved IP,
// the backup bucket, the DNS zone, a managed database cluster or database, or the load balancer:
// those hold data, an address or records that a rebuild cannot give back (docs/replacements.md).
// Usage: node guard-preview.mjs preview.json   (or the JSON on stdin)
import { readFileSync } from "node:fs";

const GUARDED_TYPES = {
  "digitalocean:index/volume:Volume": "data volume",
  "digitalocean:index/reservedIp:ReservedIp": "reserved IP",
  "digitalocean:index/spacesBucket:SpacesBucket": "backup bucket",
  "digitalocean:index/domain:Domain": "DNS zone",
  "digitalocean:index/databaseCluster:DatabaseCluster": "managed database cluster",
  "digitalocean:index/databaseDb:DatabaseDb": "managed database",
  // A new load balancer has a new address: DNS moves and clients with the old one cached fail.
  "digitalocean:index/loadBalancer:LoadBalancer": "load balancer",
};
const DANGEROUS_OPS = ["replace", "delete", "create-replacement", "delete-replaced"];

/** A URN's resource type: the last `$`-separated segment of its third `::` part. */
function typeOfUrn(urn) {
  const qualified = String(urn).split("::")[2] ?? "";
  return qualified.split("$").pop();
}

/** The steps of a preview that would replace or delete a guarded resource. */
function dangerousSteps(preview) {
  return (preview.steps ?? [])
    .map((s) => ({ op: s.op, urn: s.urn, type: s.newState?.type ?? s.oldState?.type ?? typeOfUrn(s.urn) }))
    .filter((s) => DANGEROUS_OPS.includes(s.op) && s.type in GUARDED_TYPES);
}

function main() {
  const file = process.argv[2];
  let preview;
  try {
    preview = JSON.parse(readFileSync(file ?? 0, "utf8"));
  } catch (e) {
    console.error(`guard-preview: cannot read preview JSON from ${file ?? "stdin"}: ${e.message}`);
    return 2;
  }
  if (preview === null || typeof preview !== "object" || (!Array.isArray(preview.steps) && !preview.changeSummary)) {
    console.error("guard-preview: input is not the output of `pulumi preview --json` (no steps, no changeSummary)");
    return 2;
  }
  const bad = dangerousSteps(preview);
  if (bad.length === 0) {
    console.log(`guard-preview: ok: ${preview.steps?.length ?? 0} steps, none replaces or deletes a volume, reserved IP, bucket, DNS zone, database cluster, database or load balancer`);
    return 0;
  }
  const annotate = process.env.GITHUB_ACTIONS === "true" ? "::error title=stateful resource at risk::" : "";
  for (const s of bad) {
    console.error(`${annotate}guard-preview: refused: ${s.op} of the ${GUARDED_TYPES[s.type]} ${s.urn}`);
  }
  console.error(
    "guard-preview: CI never replaces or deletes stateful resources; if this is deliberate, follow " +
      "docs/runbooks/disaster-recovery.md from a workstation instead",
  );
  return 1;
}

process.exitCode = main();
