import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Tests spawn real child processes and SQLite files; two cores, so keep the pool small.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
