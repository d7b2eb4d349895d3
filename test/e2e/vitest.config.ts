// The VM suite: its two VM files (provision.test.ts, releases.test.ts) run at once, each in its own
// worker with its own world and host, their tests in order; timeouts sized for software emulation.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/e2e/**/*.test.ts"],
    pool: "forks",
    // Two workers: the two hosts (one vCPU each, lib/harness.ts's SUITE_VM_CPUS) keep this
    // machine's two cores busy; host.test.ts (no VM) takes a few seconds in either.
    fileParallelism: true,
    maxWorkers: 2,
    minWorkers: 1,
    sequence: { concurrent: false, shuffle: false },
    // Measured under TCG on 2 cores: image build ~2.5 min, boot to SSH ~45 s, a full provision
    // ~10+ min; a test that needs longer than this has a cause to find, not a bigger number.
    testTimeout: 45 * 60_000,
    hookTimeout: 30 * 60_000,
    // The images every worker boots are built here, once, before the workers start.
    globalSetup: ["test/e2e/global-setup.ts"],
    reporters: ["verbose"],
  },
});
