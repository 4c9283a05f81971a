import { z } from 'zod';
import { JobInputAsset } from './job-input.ts';

/**
 * What an analysis is told about its job (AIND's wrapper hands its analyses a job dict): the file
 * named by $CAAS_JOB. The runner writes it into the job folder (logs/job.json) before the machine
 * starts, and the agent stages it beside the config, so it is the same wherever the job runs.
 */
export const JobDocument = z
  .object({
    identity: z.string().describe('sha256 of the pre-image: the job, as caas dedups it'),
    analysis: z.object({ name: z.string(), version: z.string() }).strict(),
    code: z
      .object({ url: z.string(), commit: z.string(), dirty: z.string().optional() })
      .strict()
      .describe("the analysis code version in the identity; url is the repository's remote (or the analysis folder without one)"),
    command: z.array(z.string()).describe('the command the agent runs'),
    outputs_file: z.string().nullable().describe('the file under process_results whose fields become output_parameters'),
    parameters: z.record(z.string(), z.unknown()).describe('as validated, defaults filled in (the same as $CAAS_CONFIG)'),
    inputs: z.array(JobInputAsset).describe('every input: asset id, name, location and files (with etag and size where known)'),
    group: z.string(),
    group_metadata: z.record(z.string(), z.unknown()).nullable().describe("the dispatcher's metadata of the group this job came from"),
    results: z.string().describe('where the outputs go: the process_results URL'),
    folder_listings: z
      .record(z.string(), z.array(z.object({ url: z.string(), etag: z.string(), size: z.number() }).strict()))
      .default({})
      .describe(
        'per folder input (its URL): the objects it held when the job was prepared, which the identity holds (kept here, not in the agent spec, which rides in UserData)',
      ),
  })
  .strict();
export type JobDocument = z.infer<typeof JobDocument>;
