// Unit tests: Pulumi mocks and local script tests. The VM suite has its own config (test/e2e).
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    exclude: ["test/e2e/**", "node_modules/**"],
    testTimeout: 60_000,
  },
});
