// docs/replacements.md against the provider's forcing fields and the program's options: every field
// that forces a new droplet, volume, VPC, reserved IP, bucket or domain has a row, and each row's
// treatment is what the program really does. The config changes behind the guarded rows are played
// in account.test.ts.
import * as fs from "fs";
import * as path from "path";
import { beforeAll, describe, expect, test } from "vitest";
import { DO_TYPES as T, FORCE_NEW, FakeAccount } from "./fake-do";
import { one, ROOT, Run, upStack } from "./harness";

const TYPES: Record<string, string> = {
  Droplet: T.droplet, Volume: T.volume, Vpc: T.vpc, ReservedIp: T.reservedIp, SpacesBucket: T.bucket, Domain: T.domain,
};

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
beforeAll(async () => {
  const account = new FakeAccount();
  production = await upStack(account, "production");
  staging = await upStack(account, "staging");
  if (production.error || staging.error) throw production.error ?? staging.error;
});

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
      for (const run of [production, staging]) {
        const found = run.custom.filter((r) => r.type === TYPES[row.resource]);
        if (found.length === 0) continue; // staging has no Domain
        const r = one(found, TYPES[row.resource]);
        const value = r.inputs[row.field];
        if (row.treatment === "ignored") expect([what, r.opts.ignoreChanges ?? []]).toEqual([what, expect.arrayContaining([row.field])]);
        if (row.treatment === "unset") expect([what, value]).toEqual([what, undefined]);
        if (row.treatment === "fixed") expect([what, value === undefined]).toEqual([what, false]);
        if (row.treatment === "guarded") expect([what, r.opts.ignoreChanges ?? []]).toEqual([what, expect.not.arrayContaining([row.field])]);
      }
    }
  });

  test("guarded means protected in production: the resource itself, or (the VPC) the droplet it would take with it", () => {
    for (const row of table().filter((r) => r.treatment === "guarded")) {
      const self = one(production.custom, TYPES[row.resource]);
      const holder = row.resource === "Vpc" ? one(production.custom, T.droplet) : self;
      expect([`${row.resource}.${row.field}`, holder.opts.protect]).toEqual([`${row.resource}.${row.field}`, true]);
    }
  });

  test("a fixed field has the same value in both stacks' shapes (no config key moves it)", () => {
    for (const row of table().filter((r) => r.treatment === "fixed")) {
      expect(row.configKey).toBe("");
      const p = one(production.custom, TYPES[row.resource]).inputs[row.field];
      const s = one(staging.custom, TYPES[row.resource]).inputs[row.field];
      const shape = (v: unknown) => String(v).replace(/production|staging/g, "<stack>");
      expect(shape(p)).toBe(shape(s));
    }
  });
});
