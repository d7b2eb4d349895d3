// Unit tests: Pulumi mocks and local script tests. The VM suite has its own config (test/e2e).
import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    exclude: ["test/e2e/**", "node_modules/**"],
    testTimeout: 60_000,
    // Vitest's default is one worker fewer than the CPUs: one on a 2-core CI machine, where the
    // script tests (real PostgreSQL, gpg, nginx, testssl) spend most of their time waiting on
    // those processes. One more worker than CPUs: `npm test` took 282 s on one worker and
    // 139-152 s on three here (477 tests).
    maxWorkers: availableParallelism() + 1,
  },
});
