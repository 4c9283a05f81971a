import { z } from 'zod';

export const JobState = z.enum(['INITIALIZING', 'IN PROGRESS', 'SUCCESS', 'FAILED']);
export type JobState = z.infer<typeof JobState>;

/**
 * The agent's sign of life, rewritten with the status file every interval from the agent's start
 * until just before end.txt. A runner that takes over a job whose runner died reads it: a fresh
 * heartbeat means the job is still running and is adopted, not started again.
 */
export const Heartbeat = z
  .object({
    at: z.string().describe('when the agent last wrote the status file (its own clock)'),
    interval_ms: z.number().int().positive().describe('how often it writes: the heartbeat is stale after a few of these'),
    host: z.string(),
    pid: z.number().int(),
    instance: z.string().describe('the machine: local@<host> or inline@<host> (with pid), or the EC2 instance id'),
  })
  .strict();
export type Heartbeat = z.infer<typeof Heartbeat>;

/** What the agent kept of a log that outgrew the blueprint's log_limit_mb: its head and its tail. */
export const LogCut = z
  .object({
    written_bytes: z.number().int().nonnegative(),
    kept_bytes: z.number().int().nonnegative(),
    cut_bytes: z.number().int().nonnegative(),
  })
  .strict();
export type LogCut = z.infer<typeof LogCut>;

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
    heartbeat: Heartbeat.optional(),
    logs_cut: z
      .object({ stdout: LogCut.optional(), stderr: LogCut.optional() })
      .strict()
      .optional()
      .describe('logs that outgrew the limit: the bytes between their head and tail were not kept'),
  })
  .strict();
export type StatusFile = z.infer<typeof StatusFile>;
