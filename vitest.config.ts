import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration files each start their own nats-server; two cores run two files at a time.
    maxWorkers: 2,
    coverage: {
      provider: "v8",
      include: ["lib/**/*.ts", "handlers/**/*.ts", "runtime/**/*.ts"],
      reporter: ["text-summary", "text"],
      thresholds: { lines: 85, statements: 85, functions: 85, branches: 75 },
    },
  },
});
