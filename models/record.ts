import { z } from 'zod';
import { AindProcessing } from './aind-processing.ts';
import { CodeVersion, PreImage } from './identity.ts';
import { JobInput, JobInputAsset, Provenance } from './job-input.ts';

export const RecordStatus = z.enum(['claimed', 'running', 'succeeded', 'failed']);
export type RecordStatus = z.infer<typeof RecordStatus>;

export const Owner = z.object({ host: z.string(), pid: z.number().int(), run: z.string() }).strict();
export type Owner = z.infer<typeof Owner>;

export const JobLocation = z
  .object({
    store: z.string().describe('scheme of the object store (file, s3, ...)'),
    bucket: z.string(),
    group: z.string(),
    timestamp: z.string(),
    results: z.string().describe('URL of results/job__{bucket}_{timestamp}/process_results/'),
    logs: z.string().describe('URL of results/job__{bucket}_{timestamp}/logs/'),
  })
  .strict();
export type JobLocation = z.infer<typeof JobLocation>;

export const ManifestEntry = z.object({ key: z.string(), size: z.number().int().nonnegative(), sha256: z.string() }).strict();
export type ManifestEntry = z.infer<typeof ManifestEntry>;

/** Who an attempt ran for, where caas can know it (docs/concepts.md#groups-limits-and-budgets). */
export const Submitter = z
  .object({
    user: z.string().min(1),
    via: z
      .enum(['declared', 's3-event', 'token'])
      .describe(
        'declared: `caas run --user` / CAAS_USER, a statement, not a proof; s3-event: the IAM principal S3 reported for the submit file; token: the name of the caas serve bearer token that submitted the job',
      ),
  })
  .strict();
export type Submitter = z.infer<typeof Submitter>;

/** What an attempt cost, estimated from its instance type and wall time: a guide for budgets, not a bill. */
export const AttemptCost = z
  .object({
    usd: z.number().nonnegative().describe('estimated: price_per_hour x runtime_s / 3600'),
    instance_type: z.string(),
    runtime_s: z.number().nonnegative().describe("from the attempt's start to its end, as the runner saw them"),
    price_per_hour: z.number().nonnegative().describe("the blueprint's price of instance_type (0 when it lists none)"),
  })
  .strict();
export type AttemptCost = z.infer<typeof AttemptCost>;

export const Attempt = z
  .object({
    n: z.number().int().positive(),
    started: z.string(),
    ended: z.string().nullable(),
    status: RecordStatus,
    reason: z.string().nullable(),
    exit_code: z.number().int().nullable(),
    results: z.string().nullable().describe('results URL of this attempt'),
    owner: Owner,
    force_reason: z.string().optional(),
    lapsed: z
      .boolean()
      .optional()
      .describe('closed because its runner stopped renewing the lease: its agent may have gone on (and be adopted)'),
    adopted: z
      .array(z.object({ by: Owner, at: z.string() }).strict())
      .optional()
      .describe('runners that took this attempt over while its agent was still alive (its own runner had died)'),
    submitter: Submitter.optional(),
    cost: AttemptCost.optional().describe('estimated when the attempt was recorded; counts against its group budget'),
  })
  .strict();
export type Attempt = z.infer<typeof Attempt>;

/** One document per identity in the metadata DB (`records`); _id = identity. */
export const MetadataRecord = z
  .object({
    _id: z.string().regex(/^[0-9a-f]{64}$/),
    status: RecordStatus,
    preimage: PreImage,
    analysis: z.object({ name: z.string(), version: z.string() }).strict(),
    code: CodeVersion,
    parameters: z.record(z.string(), z.unknown()),
    inputs: z.array(JobInputAsset),
    query: Provenance.nullable(),
    group_metadata: JobInput.shape.group_metadata.describe('the values the assets of a --group-by job share'),
    job: JobLocation.nullable(),
    outputs: z
      .object({ manifest: z.array(ManifestEntry), output_parameters: z.record(z.string(), z.unknown()).nullable() })
      .strict()
      .nullable(),
    compute: z.object({ backend: z.string(), host: z.string(), instance: z.string().nullable(), type: z.string().nullable() }).strict(),
    exit_code: z.number().int().nullable(),
    reason: z.string().nullable(),
    stderr_tail: z.array(z.string()).default([]),
    start: z.string().nullable(),
    end: z.string().nullable(),
    duration_s: z.number().nullable(),
    attempts: z.array(Attempt),
    lease: z.object({ owner: Owner, expires: z.string() }).strict().nullable(),
    created: z.string(),
    updated: z.string(),
    caas_version: z.string(),
    processing: AindProcessing.optional().describe(
      "a succeeded job in aind-data-schema's field names, as metadata.nd.json beside its results",
    ),
  })
  .strict();
export type MetadataRecord = z.infer<typeof MetadataRecord>;
