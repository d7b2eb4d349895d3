// The pack against the program's own cloud components, configured from the checked-in stack files:
// production passes every rule, and production with protect off is stopped.
// Not proven here: the host steps (they hold no resource the pack checks) and the CLI's analyzer wiring.
import { describe, expect, test } from "vitest";
import { parseConfig, StackConfig } from "../../components/config";
import { BackupBucket } from "../../components/cloud/bucket";
import { Network } from "../../components/cloud/network";
import { Server } from "../../components/cloud/server";
import { policies } from "../../policy/rules";
import { runProgram, stackFileConfig, TEST_PUBLIC_KEY, withUserValues } from "../unit/harness";
import { violations } from "./harness";

function config(stack: string, over: Record<string, string> = {}): StackConfig {
  const { raw, secretKeys } = withUserValues(stackFileConfig(stack));
  return parseConfig({ ...raw, ...over }, secretKeys, { project: "nodehost", stack });
}

/** Declares the cloud components the way components/stack.ts does and returns every violation. */
async function packViolations(cfg: StackConfig): Promise<string[]> {
  const name = `nodehost-${cfg.stack}`;
  const run = await runProgram(cfg.stack, () => {
    const network = new Network(name, {
      region: cfg.droplet.region, tag: name, sshAllowFrom: cfg.ssh.allowFrom, sshOpenToWorld: cfg.ssh.openToWorld,
    });
    new Server(name, {
      region: cfg.droplet.region, size: cfg.droplet.size, image: cfg.droplet.image, vpcId: network.vpcId,
      userData: "#cloud-config", sshPublicKey: cfg.ssh.publicKeys[0], registerKey: cfg.ssh.registerKey,
      volumeSizeGb: cfg.droplet.volumeSizeGb, backups: cfg.droplet.backups, backupPolicy: cfg.droplet.backupPolicy,
      ipv6: cfg.droplet.ipv6, tags: [name], protect: cfg.protect,
    });
    new BackupBucket(`${name}-backups`, {
      region: cfg.backup.region, create: cfg.backup.createBucket,
      retentionDays: cfg.backup.retentionRemoteDays, protect: cfg.protect,
    });
  });
  if (run.error) throw run.error;
  const found: string[] = [];
  for (const r of run.custom) {
    for (const policy of policies) {
      const props = r.inputs;
      found.push(...(await violations(policy, { type: r.type, name: r.name, props, protect: r.opts.protect === true, stack: cfg.stack })));
    }
  }
  return found;
}

describe("the pack on the program's cloud resources", () => {
  test("production as checked in passes every rule", async () => {
    expect(await packViolations(config("production"))).toEqual([]);
  });

  test("staging as checked in passes every rule", async () => {
    expect(await packViolations(config("staging"))).toEqual([]);
  });

  test("production with nodehost:protect false is stopped on droplet, volume, reserved IP and bucket", async () => {
    const found = await packViolations(config("production", { "nodehost:protect": "false" }));
    expect(found.map((m) => m.split(" is not protected")[0]).sort()).toEqual([
      "the backup bucket nodehost-production-backups-bucket",
      "the data volume nodehost-production-data",
      "the droplet nodehost-production-droplet",
      "the reserved IP nodehost-production-ip",
    ]);
  });

  test("production with SSH open to the world is stopped", async () => {
    const found = await packViolations(
      config("production", { "nodehost:ssh": JSON.stringify({ publicKeys: [TEST_PUBLIC_KEY], allowFrom: [], openToWorld: true }) }),
    );
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/^the firewall nodehost-production-firewall opens SSH to the world/);
  });
});
