// docs/replacements.md against the provider's forcing fields and the program's options: every field
// that forces a new droplet, volume, VPC, reserved IP, bucket, domain, database cluster or database has a row, and each row's
// treatment is what the program really does. The config changes behind the guarded rows are played
// in account.test.ts.
import * as fs from "fs";
import * as path from "path";
import { beforeAll, describe, expect, test } from "vitest";
import { DO_TYPES as T, FORCE_NEW, FakeAccount } from "./fake-do";
import { ROOT, Run, upStack } from "./harness";

const TYPES: Record<string, string> = {
  Droplet: T.droplet, Volume: T.volume, Vpc: T.vpc, ReservedIp: T.reservedIp, SpacesBucket: T.bucket, Domain: T.domain,
  DatabaseCluster: T.databaseCluster, DatabaseDb: T.databaseDb,
};
/** Both engines managed (the stacks' default is Docker, which declares no cluster). */
const MANAGED = { "nodehost:database": JSON.stringify({ mode: "managed" }), "nodehost:cache": JSON.stringify({ mode: "managed" }) };

interface Row { resource: string; field: string; treatment: string; configKey: string }

function table(): Row[] {
  const doc = fs.readFileSync(path.join(ROOT, "docs", "replacements.md"), "utf8");
  return doc.split("\n")
    .filter((l) => /^\| [A-Z]\w+ \| [a-z]\w* \|/.test(l))
    .map((l) => l.split("|").slice(1, -1).map((c) => c.trim()))
    .map(([resource, field, treatment, configKey]) => ({ resource, field, treatment, configKey }));
}

let production: Run;
let staging: Run;
let productionManaged: Run;
let stagingManaged: Run;
beforeAll(async () => {
  const account = new FakeAccount();
  production = await upStack(account, "production");
  staging = await upStack(account, "staging");
  const managedAccount = new FakeAccount();
  productionManaged = await upStack(managedAccount, "production", MANAGED);
  stagingManaged = await upStack(managedAccount, "staging", MANAGED);
  for (const run of [production, staging, productionManaged, stagingManaged]) if (run.error) throw run.error;
});
/** Every resource of the type in the stack's runs (Docker engines, then managed ones). */
const all = (runs: Run[], type: string) => runs.flatMap((run) => run.custom.filter((r) => r.type === type));

describe("docs/replacements.md", () => {
  test("has a row for every field that forces a new stateful resource, and no other", () => {
    const rows = table().map((r) => `${r.resource}.${r.field}`).sort();
    const forcing = Object.entries(TYPES).flatMap(([name, type]) => [
      ...FORCE_NEW[type].map((f) => `${name}.${f}`),
      ...(name === "Droplet" ? ["Droplet.ipv6"] : []), // true -> false only (CustomizeDiff)
      ...(name === "SpacesBucket" ? ["SpacesBucket.name"] : []), // replaceOnChanges in the program
    ]).sort();
    expect(rows).toEqual(forcing);
  });

  test("each treatment is what the program does", () => {
    const known = new Set(["ignored", "unset", "fixed", "guarded"]);
    for (const row of table()) {
      const what = `${row.resource}.${row.field} (${row.treatment})`;
      expect([what, known.has(row.treatment)]).toEqual([what, true]);
      for (const run of [production, staging, productionManaged, stagingManaged]) {
        // staging has no Domain; the Docker runs have no cluster; managed runs have two (pg, cache)
        for (const r of run.custom.filter((x) => x.type === TYPES[row.resource])) {
        const value = r.inputs[row.field];
        if (row.treatment === "ignored") expect([what, r.opts.ignoreChanges ?? []]).toEqual([what, expect.arrayContaining([row.field])]);
        if (row.treatment === "unset") expect([what, value]).toEqual([what, undefined]);
        if (row.treatment === "fixed") expect([what, value === undefined]).toEqual([what, false]);
        if (row.treatment === "guarded") expect([what, r.opts.ignoreChanges ?? []]).toEqual([what, expect.not.arrayContaining([row.field])]);
        }
      }
    }
  });

  test("every resource type of the table is declared by some stack shape (no row goes unchecked)", () => {
    for (const [name, type] of Object.entries(TYPES)) {
      expect([name, all([production, productionManaged], type).length > 0]).toEqual([name, true]);
    }
  });

  test("guarded means protected in production: the resource itself, or (the VPC) the droplet it would take with it", () => {
    for (const row of table().filter((r) => r.treatment === "guarded")) {
      const holders = row.resource === "Vpc" ? all([production, productionManaged], T.droplet) : all([production, productionManaged], TYPES[row.resource]);
      expect(holders.length).toBeGreaterThan(0);
      for (const holder of holders) expect([`${row.resource}.${row.field}`, holder.opts.protect]).toEqual([`${row.resource}.${row.field}`, true]);
    }
  });

  test("a fixed field has the same value in both stacks' shapes (no config key moves it)", () => {
    for (const row of table().filter((r) => r.treatment === "fixed")) {
      expect(row.configKey).toBe("");
      const shape = (v: unknown) => String(v).replace(/production|staging/g, "<stack>");
      const p = all([production, productionManaged], TYPES[row.resource]).map((r) => shape(r.inputs[row.field]));
      const s = all([staging, stagingManaged], TYPES[row.resource]).map((r) => shape(r.inputs[row.field]));
      expect(p.length).toBeGreaterThan(0);
      expect(p).toEqual(s);
    }
  });
});
