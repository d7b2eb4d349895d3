// .github/scripts/guard-preview.mjs on sample `pulumi preview --json` output: exit code and message.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { afterAll, describe, expect, test } from "vitest";

const SCRIPT = path.join(__dirname, "..", "..", ".github", "scripts", "guard-preview.mjs");
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "guard-preview-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const urn = (type: string, name: string, parent = "nodehost:cloud:Server") =>
  `urn:pulumi:production::nodehost::${parent}$${type}::${name}`;
const VOLUME = "digitalocean:index/volume:Volume";
const IP = "digitalocean:index/reservedIp:ReservedIp";
const BUCKET = "digitalocean:index/spacesBucket:SpacesBucket";
const DROPLET = "digitalocean:index/droplet:Droplet";
const DOMAIN = "digitalocean:index/domain:Domain";
const CLUSTER = "digitalocean:index/databaseCluster:DatabaseCluster";
const DB = "digitalocean:index/databaseDb:DatabaseDb";
const LB = "digitalocean:index/loadBalancer:LoadBalancer";
const CERT = "digitalocean:index/certificate:Certificate";

function guard(preview: unknown, opts: { stdin?: boolean; raw?: string } = {}) {
  const text = opts.raw ?? JSON.stringify(preview);
  const file = path.join(dir, `p-${Math.random().toString(36).slice(2)}.json`);
  fs.writeFileSync(file, text);
  const r = spawnSync(process.execPath, opts.stdin ? [SCRIPT] : [SCRIPT, file], {
    input: opts.stdin ? text : undefined,
    encoding: "utf8",
    env: { ...process.env, GITHUB_ACTIONS: "" },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const step = (op: string, type: string, name: string, withState = true) => ({
  op,
  urn: urn(type, name),
  ...(withState ? { newState: { type, urn: urn(type, name) } } : {}),
});

describe("guard-preview", () => {
  test("a safe preview passes: same and updated state, a replaced droplet (cattle), a volume created after a refresh", () => {
    const r = guard({
      steps: [
        step("same", VOLUME, "nodehost-production-data"),
        step("update", IP, "nodehost-production-ip"),
        step("same", BUCKET, "nodehost-production-backups-bucket"),
        step("replace", DROPLET, "nodehost-production-droplet"),
        step("create-replacement", DROPLET, "nodehost-production-droplet"),
        step("delete-replaced", DROPLET, "nodehost-production-droplet"),
        step("create", VOLUME, "nodehost-production-data"),
      ],
      changeSummary: { same: 2, update: 1, replace: 1, create: 1 },
    });
    expect(r.code).toBe(0);
    expect(r.out).toBe("guard-preview: ok: 7 steps, none replaces or deletes a volume, reserved IP, bucket, DNS zone, database cluster, database or load balancer\n");
    expect(r.err).toBe("");
  });

  test("a replaced certificate passes: its name follows the names it covers, so a change of names makes the new one first", () => {
    const r = guard({ steps: [step("create-replacement", CERT, "c"), step("update", LB, "lb"), step("delete-replaced", CERT, "c")], changeSummary: {} });
    expect(r.code).toBe(0);
  });

  test("a preview with no changes (no steps listed) passes", () => {
    expect(guard({ changeSummary: { same: 30 } }).code).toBe(0);
  });

  const cases = ["replace", "delete", "create-replacement", "delete-replaced"].flatMap((op) => [
    [op, VOLUME, "data volume", "nodehost-production-data"],
    [op, IP, "reserved IP", "nodehost-production-ip"],
    [op, BUCKET, "backup bucket", "nodehost-production-backups-bucket"],
    [op, DOMAIN, "DNS zone", "nodehost-production-domain"],
    [op, CLUSTER, "managed database cluster", "nodehost-production-pg"],
    [op, DB, "managed database", "nodehost-production-pg-db"],
    [op, LB, "load balancer", "nodehost-production-lb"],
  ]);
  test.each(cases)("%s of %s fails and names it", (op, type, what, name) => {
    const r = guard({ steps: [step("same", DROPLET, "d"), step(op, type, name)], changeSummary: {} });
    expect(r.code).toBe(1);
    expect(r.err.split("\n")[0]).toBe(`guard-preview: refused: ${op} of the ${what} ${urn(type, name)}`);
    expect(r.err).toContain("docs/runbooks/disaster-recovery.md");
  });

  test("the type is read from the URN when a step carries no state, and every risky step is listed", () => {
    const r = guard({ steps: [step("delete", VOLUME, "v", false), step("replace", IP, "ip", false)], changeSummary: {} });
    expect(r.code).toBe(1);
    expect(r.err).toContain(`refused: delete of the data volume ${urn(VOLUME, "v")}`);
    expect(r.err).toContain(`refused: replace of the reserved IP ${urn(IP, "ip")}`);
  });

  test("reads the preview from stdin when given no file", () => {
    const r = guard({ steps: [step("delete", BUCKET, "b")], changeSummary: {} }, { stdin: true });
    expect(r.code).toBe(1);
    expect(r.err).toContain("refused: delete of the backup bucket");
  });

  test("input that is not a preview is an error (exit 2), never a pass", () => {
    const broken = guard(null, { raw: "error: could not load stack" });
    expect(broken.code).toBe(2);
    expect(broken.err).toMatch(/^guard-preview: cannot read preview JSON from /);
    const other = guard({ hello: "world" });
    expect(other.code).toBe(2);
    expect(other.err).toBe("guard-preview: input is not the output of `pulumi preview --json` (no steps, no changeSummary)\n");
  });
});
