import { z } from 'zod';

/**
 * A job as aind-data-schema (2.x) describes a processing step, with its field names, so AIND's
 * tools and queries read caas results as they read their own: a `DataProcess` of stage "Analysis"
 * whose `code` names the repository, the commit, the parameters and the input data.
 */
export const AindDataProcess = z
  .object({
    process_type: z.literal('Analysis'),
    name: z.string().describe('the analysis and its version, e.g. spike-rate@1.0.0'),
    stage: z.literal('Analysis'),
    code: z
      .object({
        url: z.string().describe("the analysis repository's remote URL (or the analysis folder without one)"),
        name: z.string().describe('the analysis'),
        version: z.string().describe('the git commit of the analysis code'),
        parameters: z.record(z.string(), z.unknown()).describe('as validated, defaults filled in'),
        input_data: z.array(z.object({ url: z.string() }).strict()).describe('every input location'),
        run_script: z.string().describe('the command the agent ran'),
      })
      .strict(),
    experimenters: z.array(z.string()),
    start_date_time: z.string(),
    end_date_time: z.string(),
    output_path: z.string().describe('the process_results URL'),
    output_parameters: z.record(z.string(), z.unknown()),
    notes: z.string().describe('the caas identity, the analysis version and the commit, so the record is one query away'),
  })
  .strict();
export type AindDataProcess = z.infer<typeof AindDataProcess>;

export const AindProcessing = z.object({ object_type: z.literal('Processing'), data_processes: z.array(AindDataProcess).min(1) }).strict();
export type AindProcessing = z.infer<typeof AindProcessing>;

/** metadata.nd.json beside a job's process_results: AIND's combined metadata document, with its processing section. */
export const AindMetadataDocument = z
  .object({
    object_type: z.literal('Metadata'),
    name: z.string().describe('{analysis}_{first 12 characters of the identity}'),
    location: z.string().describe('the job folder URL'),
    processing: AindProcessing,
  })
  .strict();
export type AindMetadataDocument = z.infer<typeof AindMetadataDocument>;
