// Which VM tests run. `.ci/run` runs the CI tier; `NODEHOST_E2E_FULL=1` runs every test, the
// ones below included. Each test kept out of the CI tier is one whose behaviour is also proven
// elsewhere in `.ci/run` (natively against the real tool, or by another VM test), and it has its
// own variable too. The list, the reasons and the times are in test/e2e/README.md ("Tiers").
// CI's limit is 90 min; the CI tier is what fits within it with room for a slow machine.

/** Runs in the full tier (NODEHOST_E2E_FULL=1), or on its own with `own`=1. */
export function fullTier(own: string, env: NodeJS.ProcessEnv = process.env): boolean {
  return env.NODEHOST_E2E_FULL === "1" || env[own] === "1";
}
