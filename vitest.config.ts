import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
    // 2 cores: keep parallelism modest so timing-sensitive socket tests stay deterministic
    poolOptions: { forks: { maxForks: 2, minForks: 1 } }
  }
})
