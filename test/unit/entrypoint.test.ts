// index.ts itself: bad config stops the program before a single resource is declared.
import { expect, test, vi } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { stackFileConfig, withUserValues } from "./harness";

/** index.ts run under mocks with production's stack file edited by `edit`: what it threw, what it declared. */
async function runIndex(edit: (raw: Record<string, string>) => Record<string, string>): Promise<{ error?: Error; declared: string[] }> {
  const declared: string[] = [];
  pulumi.runtime.setMocks(
    {
      newResource: (args) => {
        declared.push(`${args.type}::${args.name}`);
        return { id: `${args.name}-id`, state: args.inputs };
      },
      call: (args) => args.inputs,
    },
    "nodehost",
    "production",
  );
  const { raw, secretKeys } = withUserValues(stackFileConfig("production"));
  pulumi.runtime.setAllConfig(edit(raw), secretKeys);
  vi.resetModules();
  const error = await import("../../index").then(() => undefined, (e: Error) => e);
  await (pulumi.runtime as unknown as { waitForRPCs: () => Promise<void> }).waitForRPCs();
  return { error, declared };
}

test("invalid config throws a ConfigError naming every bad key and declares no resource", async () => {
  const { error, declared } = await runIndex((raw) => ({ ...raw, "nodehost:domian": "typo.example", "nodehost:droplet": JSON.stringify({ region: "mars1" }) }));

  expect(error?.name).toBe("ConfigError");
  expect(error?.message).toContain("nodehost:domian: unknown key (misspelt?)");
  expect(error?.message).toContain("nodehost:droplet.region: Invalid option");
  expect(declared).toEqual([]);
});

test("more droplets are refused by key, before any resource, until their host steps are built; managed engines are not", async () => {
  const { error, declared } = await runIndex((raw) => ({
    ...raw,
    "nodehost:database": JSON.stringify({ mode: "managed" }),
    "nodehost:cache": JSON.stringify({ mode: "managed" }),
    "nodehost:app": JSON.stringify({ ...JSON.parse(raw["nodehost:app"] ?? "{}"), droplets: 2 }),
  }));

  expect(error?.name).toBe("ConfigError");
  expect(error?.message).not.toContain("nodehost:database.mode: managed is not available yet");
  expect(error?.message).not.toContain("nodehost:cache.mode: managed is not available yet");
  expect(error?.message).toContain("nodehost:app.droplets: more than 1 is not available yet");
  expect(declared).toEqual([]);
});
