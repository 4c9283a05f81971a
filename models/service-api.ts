import { z } from 'zod';
import { FOLDER_NAME } from './bucket-contract.ts';
import { QueuedJob } from './queued-job.ts';
import { MetadataRecord } from './record.ts';

/**
 * The contracts of `caas serve`'s HTTP API (docs/serve.md): what each route answers. The OpenAPI
 * document at /api/openapi.json is generated from these and from the job input and record models.
 */

export const Identity = z
  .string()
  .regex(/^[0-9a-f]{64}$/, 'an identity: 64 lowercase hex digits')
  .describe('a job identity (sha256 of its canonical pre-image)');

export const Issue = z
  .object({
    path: z.array(z.union([z.string(), z.number()])).describe('where in the job input: ["parameters", "cutoff"]'),
    message: z.string(),
  })
  .strict();
export type Issue = z.infer<typeof Issue>;

export const ErrorAnswer = z
  .object({ error: z.string().describe('what is wrong and what is expected'), issues: z.array(Issue).optional() })
  .strict();
export type ErrorAnswer = z.infer<typeof ErrorAnswer>;

export const BlueprintSummary = z
  .object({
    bucket: z.string(),
    instance_type: z.string(),
    allowed_instance_types: z.array(z.string()),
    max_runtime_minutes: z.number(),
    deploy_limit: z.number().int(),
    groups: z.array(
      z
        .object({
          name: z.string(),
          instance_limit: z.number().int().nullable(),
          budget: z.object({ usd: z.number(), period: z.string() }).nullable(),
        })
        .strict(),
    ),
  })
  .strict();

export const AnalysisSummary = z
  .object({
    name: z.string(),
    version: z.string(),
    description: z.string(),
    code: z
      .object({ url: z.string().nullable(), commit: z.string().nullable(), dirty: z.boolean(), problem: z.string().nullable() })
      .strict()
      .describe('the git version jobs would run with now; problem says why it cannot be read'),
  })
  .strict();
export type AnalysisSummary = z.infer<typeof AnalysisSummary>;

export const AnalysisDetail = AnalysisSummary.extend({
  parameters: z.record(z.string(), z.unknown()).describe("JSON Schema of the analysis' parameters (defaults, ranges, enums)"),
  outputs: z
    .object({ file: z.string(), schema: z.record(z.string(), z.unknown()) })
    .strict()
    .nullable()
    .describe('the file under process_results whose fields become output_parameters, and its JSON Schema'),
  blueprint: BlueprintSummary,
}).strict();
export type AnalysisDetail = z.infer<typeof AnalysisDetail>;

export const AnalysesAnswer = z.object({ analyses: z.array(AnalysisSummary) }).strict();

export const PlanAction = z.enum(['RUN', 'SKIP', 'RUNNING', 'INVALID', 'REFUSED']);

/** What the service made of one job of a POST /api/jobs body. */
export const JobAnswer = z
  .object({
    where: z.string().describe('body, or body[i] for the i-th job of an array'),
    action: PlanAction,
    identity: Identity.nullable(),
    analysis: z.string().nullable(),
    reason: z.string().nullable(),
    issues: z.array(Issue).describe('INVALID: each problem with its field path'),
    queued: z.boolean().describe('accepted into the queue by this request (execute=true)'),
    location: z.string().nullable().describe('/api/jobs/{identity}'),
    record: MetadataRecord.nullable().describe('SKIP and RUNNING: the record that decided it'),
  })
  .strict();
export type JobAnswer = z.infer<typeof JobAnswer>;

export const JobsAnswer = z
  .object({
    execute: z.boolean(),
    counts: z.record(PlanAction, z.number().int()),
    jobs: z.array(JobAnswer),
  })
  .strict();
export type JobsAnswer = z.infer<typeof JobsAnswer>;

export const JobState = z.enum(['queued', 'running', 'succeeded', 'failed', 'cancelled', 'refused']);

export const JobStatusAnswer = z
  .object({
    identity: Identity,
    state: JobState,
    analysis: z.string().nullable(),
    group: z.string().nullable(),
    attempts: z.number().int(),
    queue: QueuedJob.nullable().describe("the service's queue entry, when the job came through a service"),
    job_folder: z.string().nullable().describe("the current attempt's job folder"),
    status_file: z.unknown().describe("the agent's status file (logs/DATASET_NAME-*_STATUS.json), when there is one"),
    end: z.string().nullable().describe('end.txt, once the attempt is over'),
    record: MetadataRecord.nullable(),
  })
  .strict();
export type JobStatusAnswer = z.infer<typeof JobStatusAnswer>;

export const JobListAnswer = z.object({ jobs: z.array(QueuedJob) }).strict();

export const CancelAnswer = z
  .object({
    identity: Identity,
    cancelled: z.enum(['queued', 'running']).describe('queued: it will not run; running: its runner stops the attempt and records it'),
    reason: z.string(),
  })
  .strict();

export const RecordsAnswer = z
  .object({ records: z.array(z.record(z.string(), z.unknown())).describe('whole records, or the fields asked for plus _id') })
  .strict();

export const Difference = z
  .object({ path: z.string(), this: z.unknown(), against: z.unknown() })
  .strict()
  .describe('a pre-image field whose value differs (absent on one side: missing)');

export const WhyAnswer = z
  .object({
    identity: Identity,
    compared: z.array(z.object({ against: Identity, status: z.string(), created: z.string(), differences: z.array(Difference) }).strict()),
    candidates: z.number().int().describe('records of the same analysis sharing an input (without ?against=)'),
  })
  .strict();

export const DispatchBody = z
  .object({
    analysis: z.string().min(1),
    query: z.record(z.string(), z.unknown()).optional().describe('a MongoDB filter over the catalog'),
    assets: z.array(z.string().min(1)).min(1).optional().describe('asset ids of the catalog'),
    prefix: z.string().min(1).optional().describe("an object prefix URL in the service's store"),
    file_ext: z.string().optional(),
    split: z.boolean().optional().describe('one job per matched file (default: on, except with group_by)'),
    group_by: z.array(z.string()).optional(),
    params: z
      .union([z.record(z.string(), z.unknown()), z.array(z.record(z.string(), z.unknown()))])
      .optional()
      .describe('parameters, or a list of parameter sets (a grid of jobs)'),
    max_jobs: z.number().int().positive().optional(),
    group: z.string().regex(FOLDER_NAME).optional(),
    execute: z.boolean().default(false).describe('queue the jobs (otherwise a dry-run plan)'),
  })
  .strict();
export type DispatchBody = z.infer<typeof DispatchBody>;

export const DispatchAnswer = JobsAnswer.extend({
  dispatched: z
    .object({ assets: z.number().int(), jobs: z.number().int(), max_jobs_reached: z.boolean(), notices: z.record(z.string(), z.number()) })
    .strict(),
}).strict();

export const Health = z
  .object({ ok: z.boolean(), checks: z.record(z.string(), z.string()).describe('per dependency: ok, or what failed') })
  .strict();
