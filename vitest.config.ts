import { configDefaults, defineConfig } from 'vitest/config';

/**
 * Two tiers, one run: `npm test` runs both projects, each test file once; `npm run test:unit` runs
 * only `unit`, the tests under test/unit/, which call modules in this process (no child processes,
 * servers, network or databases: test/tiers.test.ts keeps them so).
 */
export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Tests spawn real child processes and SQLite files; two cores, so keep the pool small.
    maxWorkers: 2,
    reporters: ['default'],
    projects: [
      // `extends: true` takes the settings above (arrays such as include would be concatenated, so the root sets none).
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          // The unit files share one module graph per worker: importing zod, the AWS SDK and the models
          // again for every file was three quarters of the tier's time. So a unit test puts back what
          // it changes (fake timers, spies, environment).
          isolate: false,
        },
      },
      {
        extends: true,
        test: { name: 'integration', include: ['test/**/*.test.ts'], exclude: [...configDefaults.exclude, 'test/unit/**'] },
      },
    ],
  },
});
