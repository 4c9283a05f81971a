import { z } from 'zod';

export const JobState = z.enum(['INITIALIZING', 'IN PROGRESS', 'SUCCESS', 'FAILED']);
export type JobState = z.infer<typeof JobState>;

/** logs/DATASET_NAME-{dataname}_STATUS.json, rewritten while the job runs. */
export const StatusFile = z
  .object({
    status: JobState,
    reason: z.string().nullable().describe('exit code or cause'),
    input: z.string(),
    instance: z.string(),
    command: z.string(),
    job_start: z.string().nullable(),
    job_finish: z.string().nullable(),
    cpu_usage: z.string().nullable(),
    memory_usage: z.string().nullable(),
    std: z.array(z.string()).describe('most recent output lines'),
    exit_code: z.number().int().nullable().optional(),
  })
  .strict();
export type StatusFile = z.infer<typeof StatusFile>;
