import { z } from 'zod';
import { AnalysisEnvironment } from './blueprint.ts';

/**
 * What the wrapper hands the agent (the instance side). The same spec drives a local child process
 * and the agent started by an EC2 instance's UserData.
 */
export const AgentSpec = z
  .object({
    store: z.string().describe('object store URL, its settings in the query: file:///root, s3://?endpoint=...'),
    store_settings: z
      .record(z.string(), z.record(z.string(), z.string()))
      .default({})
      .describe('settings per store kind (scheme → name → value), for the stores the inputs are in'),
    bucket: z.string(),
    group: z.string(),
    timestamp: z.string(),
    dataname: z.string().describe('what the job reads, as named in the submit file'),
    inputs: z.array(z.string()).describe('object URLs to stage into the input folder'),
    input_checks: z
      .record(z.string(), z.object({ etag: z.string().optional(), size: z.number().optional() }).strict())
      .default({})
      .describe('etag and size each input had when it was dispatched (they are in the identity)'),
    listed_folders: z
      .array(z.string())
      .optional()
      .describe(
        "folder inputs listed when the job was prepared: exactly the objects the job document's folder_listings name are staged (absent when none, so a spec without folders stays readable by an older agent)",
      ),
    code: z
      .object({ commit: z.string(), dirty: z.string().optional() })
      .strict()
      .optional()
      .describe('the code version in the identity: the agent refuses to run other code'),
    configname: z.string(),
    config_copy: z.string().optional().describe('file name of the config copy in process_results (default: configname)'),
    command: z.array(z.string()).min(1),
    analysis_dir: z.string(),
    instance: z.string().describe('name of the machine, for the status file'),
    max_runtime_s: z.number().positive(),
    status_interval_ms: z.number().int().positive().default(2000).describe('how often the status file (the heartbeat) is rewritten'),
    log_limit_bytes: z
      .number()
      .int()
      .positive()
      .default(64 * 1024 * 1024)
      .describe('per log: beyond it the first and last halves are kept'),
    environment: AnalysisEnvironment.default({ set: {}, pass: [] }).describe("the blueprint's additions to the analysis environment"),
  })
  .strict();
export type AgentSpec = z.infer<typeof AgentSpec>;
