import { z } from 'zod';

/** mock-wait's parameters (run.sh reads the same fields from the staged config). */
export const MockWaitParameters = z
  .object({
    wait: z.number().min(0).default(1).describe('seconds to wait before finishing'),
    fail: z.boolean().default(false).describe('exit 3 after waiting, as a failing analysis would'),
    marker: z
      .string()
      .optional()
      .describe(
        'when set, append "<dataname> <configname>" to $CAAS_MOCK_MARKER_FILE when done (and to $CAAS_MOCK_START_FILE when started), so tests can count real runs',
      ),
  })
  .strict();
export type MockWaitParameters = z.infer<typeof MockWaitParameters>;
