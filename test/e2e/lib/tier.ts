// Which VM tests run. `.ci/run` runs the CI tier; `NODEHOST_E2E_FULL=1` runs every test. A test
// left out of the CI tier is one whose behaviour `.ci/run` also proves elsewhere (natively against
// the real tool, or by another VM test), and it runs alone with its own variable too. The list,
// the reasons and the times are in test/e2e/README.md ("Tiers").

/** Runs in the full tier (NODEHOST_E2E_FULL=1), or on its own with `own`=1. */
export function fullTier(own: string): boolean {
  return process.env.NODEHOST_E2E_FULL === "1" || process.env[own] === "1";
}
