import { z } from 'zod';
import { FOLDER_NAME } from './bucket-contract.ts';

/**
 * Names and URLs end up in paths, object keys, log lines and certificates: a NUL or a newline in
 * one truncates a path or forges a line, so C0 and C1 control characters are refused outright.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
const NO_CONTROL = /^[^\u0000-\u001f\u007f-\u009f]*$/;
const plainText = () => z.string().regex(NO_CONTROL, 'no control characters (NUL, newline, tab, ...)');

/** One file of an input, as listed from its location. etag and size enter the identity. */
export const InputFile = z
  .object({
    url: plainText().min(1).describe('Object URL: s3://bucket/key, file://bucket/key or file:///abs/path'),
    etag: z.string().optional(),
    size: z.number().int().nonnegative().optional(),
  })
  .strict();
export type InputFile = z.infer<typeof InputFile>;

/** One data asset a job reads (a session, or some files of it). */
export const JobInputAsset = z
  .object({
    asset_id: plainText().min(1),
    name: plainText().min(1),
    location: plainText().min(1).describe('URL of the asset folder'),
    files: z.array(InputFile).optional(),
  })
  .strict();
export type JobInputAsset = z.infer<typeof JobInputAsset>;

/** Where a job input came from. Kept in the record, never in the identity. */
export const Provenance = z
  .object({
    source: z.enum(['query', 'csv', 'prefix', 'file', 'submit', 'generator']),
    query: z.string().optional(),
    dispatched_at: z.string().optional(),
    submit_key: z.string().optional(),
  })
  .strict();
export type Provenance = z.infer<typeof Provenance>;

/** What `caas dispatch` emits and `caas run` consumes: one line of JSONL per job. */
export const JobInput = z
  .object({
    analysis: plainText().min(1).describe('Name of an analysis under analyses/'),
    inputs: z.array(JobInputAsset).min(1),
    parameters: z.record(z.string(), z.unknown()).default({}).describe('Validated by the analysis parameter model'),
    group: z
      .string()
      .regex(FOLDER_NAME, 'a group name: letters, digits, ".", "_" or "-"')
      .default('caas')
      .describe('NeuroCAAS user group: the folder under the analysis bucket'),
    bucket: z
      .string()
      .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name (lowercase, digits, "." and "-")')
      .optional()
      .describe('Analysis bucket; defaults to the blueprint bucket'),
    instance_type: plainText().optional(),
    group_metadata: z.record(z.string(), z.unknown()).optional(),
    provenance: Provenance.optional(),
  })
  .strict();
export type JobInput = z.infer<typeof JobInput>;
export type JobInputDraft = z.input<typeof JobInput>;
