// Calls a policy's validateResource with a fake args object and collects what it reports.
import type { ResourceValidationArgs, ResourceValidationPolicy } from "@pulumi/policy";

export interface FakeResource {
  type: string;
  name?: string;
  props: Record<string, unknown>;
  protect?: boolean;
  stack?: string;
}

/** The violation messages the policy reports for one resource ([] = it passes). */
export async function violations(policy: ResourceValidationPolicy, r: FakeResource): Promise<string[]> {
  const name = r.name ?? "res";
  const stack = r.stack ?? "production";
  const args: ResourceValidationArgs = {
    type: r.type,
    props: r.props,
    urn: `urn:pulumi:${stack}::nodehost::nodehost:cloud:Parent$${r.type}::${name}`,
    name,
    opts: {
      protect: r.protect ?? false, ignoreChanges: [], aliases: [], additionalSecretOutputs: [],
      customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 },
    },
    stackTags: new Map(),
    isType: () => false,
    asType: () => undefined,
    getConfig: <T extends object>() => ({}) as T,
    notApplicable: (reason?: string): never => {
      throw new Error(`notApplicable: ${reason ?? ""}`);
    },
  };
  const found: string[] = [];
  const checks = [policy.validateResource ?? []].flat();
  for (const check of checks) await check(args, (message) => found.push(message));
  return found;
}
