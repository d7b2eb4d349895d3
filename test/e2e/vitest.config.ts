// The VM suite: one process, files and tests in order, timeouts sized for software emulation.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/e2e/**/*.test.ts"],
    pool: "forks",
    poolOptions: { forks: { singleFork: true } },
    fileParallelism: false,
    sequence: { concurrent: false, shuffle: false },
    // Measured under TCG on 2 cores: image build ~2.5 min, boot to SSH ~45 s, a full provision
    // ~10+ min; a test that needs longer than this has a cause to find, not a bigger number.
    testTimeout: 45 * 60_000,
    hookTimeout: 30 * 60_000,
    globalSetup: ["test/e2e/global-setup.ts"],
    reporters: ["verbose"],
  },
});
