import { z } from 'zod';
import { InputFile, JobInput, type JobInputAsset, Provenance } from './job-input.ts';
import { isPlainObject } from './plain-object.ts';

/**
 * What caas writes into an AIND dispatch model beside AIND's own fields, under one key that AIND's
 * pydantic model ignores: only what AIND has no field for, so nothing is said twice.
 */
export const AindCaasFields = z
  .object({
    analysis: JobInput.shape.analysis.optional().describe('the analysis the job runs (caas run --analysis for models without it)'),
    group: JobInput.shape.group.unwrap().optional(),
    bucket: JobInput.shape.bucket,
    instance_type: JobInput.shape.instance_type,
    files: z
      .array(InputFile.pick({ etag: true, size: true }))
      .optional()
      .describe('etag and size of each file_location entry, in the same order (they enter the identity)'),
    provenance: Provenance.optional(),
  })
  .strict();
export type AindCaasFields = z.infer<typeof AindCaasFields>;

const parameterSet = z.record(z.string(), z.unknown());

/**
 * AIND's AnalysisDispatchModel (analysis-pipeline-utils, `analysis_dispatch_model.py`): one job as
 * aind-analysis-job-dispatch writes it, with one entry per asset in each of the three lists. Names
 * and URLs are held to the same rules as a caas job's. Unknown keys are refused, as in a caas job:
 * a misspelt optional field would otherwise change a job's parameters without a word.
 */
export const AindDispatchModel = z
  .object({
    s3_location: z.array(JobInput.shape.inputs.element.shape.location).min(1).describe('the folder of each asset'),
    asset_name: z.array(JobInput.shape.inputs.element.shape.name).describe('the name of each asset'),
    docdb_record_id: z.array(JobInput.shape.inputs.element.shape.asset_id).describe('the metadata record _id of each asset'),
    file_location: z.array(InputFile.shape.url).nullish().describe('the files the job reads, each under one of the s3_location folders'),
    distributed_parameters: parameterSet.nullish(),
    group_metadata: parameterSet.nullish(),
    query: z.string().nullish().describe('the metadata query that found the assets (JSON text)'),
    analysis_code: z
      .looseObject({ parameters: parameterSet.nullish() })
      .nullish()
      .describe("aind-data-schema Code; its parameters are the job's fixed parameters"),
    caas: AindCaasFields.optional(),
  })
  .strict()
  .superRefine((model, ctx) => {
    const assets = model.s3_location.length;
    for (const key of ['asset_name', 'docdb_record_id'] as const) {
      if (model[key].length !== assets)
        ctx.addIssue({
          code: 'custom',
          path: [key],
          message: `expected ${entries(assets)}, one per s3_location entry, got ${model[key].length}`,
        });
    }
    const files = model.file_location;
    if (!files) {
      if (model.caas?.files) ctx.addIssue({ code: 'custom', path: ['caas', 'files'], message: 'given without file_location' });
      return;
    }
    const owners = files.map((url) => assetOfFile(model.s3_location, url));
    owners.forEach((owner, i) => {
      if (owner === undefined) ctx.addIssue({ code: 'custom', path: ['file_location', i], message: 'not under any s3_location entry' });
    });
    // An asset without files is only worth saying when every file found its asset.
    model.s3_location.forEach((location, k) => {
      if (!owners.includes(undefined) && !owners.includes(k))
        ctx.addIssue({
          code: 'custom',
          path: ['file_location'],
          message: `no file under s3_location[${k}] (${location}): list its files, or leave file_location out to read whole folders`,
        });
    });
    if (model.caas?.files && model.caas.files.length !== files.length)
      ctx.addIssue({
        code: 'custom',
        path: ['caas', 'files'],
        message: `expected ${entries(files.length)}, one per file_location entry, got ${model.caas.files.length}`,
      });
  });
export type AindDispatchModel = z.infer<typeof AindDispatchModel>;

function entries(n: number): string {
  return `${n} ${n === 1 ? 'entry' : 'entries'}`;
}

/**
 * Where a parameter of the merged set came from in an AIND model, for messages: the set's key
 * `parameters.cutoff` is `distributed_parameters.cutoff` or `analysis_code.parameters.cutoff`.
 */
export function aindParameterPath(model: AindDispatchModel, key: string | undefined): string {
  const fixed = model.analysis_code?.parameters ?? {};
  const distributed = model.distributed_parameters ?? {};
  if (key !== undefined && Object.hasOwn(distributed, key)) return 'distributed_parameters';
  if (key !== undefined && Object.hasOwn(fixed, key)) return 'analysis_code.parameters';
  return Object.keys(fixed).length === 0 ? 'distributed_parameters' : 'parameters (analysis_code.parameters, then distributed_parameters)';
}

/** Fields only an AIND dispatch model has; a caas job input has none of them. */
const AIND_ONLY = ['s3_location', 'asset_name', 'docdb_record_id', 'file_location', 'distributed_parameters', 'query', 'analysis_code'];

/** Whether a job entry is meant as an AIND dispatch model: AIND's fields and none of a caas job's own. */
export function isAindDispatchModel(value: unknown): boolean {
  if (!isPlainObject(value) || Object.hasOwn(value, 'analysis') || Object.hasOwn(value, 'inputs')) return false;
  return AIND_ONLY.some((key) => Object.hasOwn(value, key));
}

/** The asset a file belongs to: the s3_location it lies under (the deepest one, should they nest). */
function assetOfFile(locations: readonly string[], url: string): number | undefined {
  let owner: number | undefined;
  locations.forEach((location, k) => {
    const folder = location.endsWith('/') ? location : `${location}/`;
    if (url.startsWith(folder) && (owner === undefined || folder.length > locations[owner]!.length)) owner = k;
  });
  return owner;
}

/**
 * The caas job input an AIND dispatch model means. Its parameters are merged as AIND's wrapper
 * merges them: analysis_code.parameters (the fixed ones), then distributed_parameters over them;
 * the `file_location` AIND tracks among them is the inputs' files here. The files' etag and size
 * come from `caas.files` when caas wrote the model; AIND's own models have none.
 */
export function jobInputOfAind(model: AindDispatchModel, analysis: string): z.input<typeof JobInput> {
  const fixed = { ...(model.analysis_code?.parameters ?? {}) };
  if (model.file_location) delete fixed.file_location;
  const files = model.file_location ?? [];
  const inputs = model.s3_location.map((location, k): JobInputAsset => {
    const asset = { asset_id: model.docdb_record_id[k]!, name: model.asset_name[k]!, location };
    if (!model.file_location) return asset;
    const own = files.flatMap((url, i) => (assetOfFile(model.s3_location, url) === k ? [{ url, ...model.caas?.files?.[i] }] : []));
    return { ...asset, files: own };
  });
  const caas = model.caas ?? {};
  const provenance = model.query != null ? { ...caas.provenance, source: 'query' as const, query: model.query } : caas.provenance;
  return {
    analysis,
    inputs,
    parameters: { ...fixed, ...(model.distributed_parameters ?? {}) },
    ...(caas.group !== undefined && { group: caas.group }),
    ...(caas.bucket !== undefined && { bucket: caas.bucket }),
    ...(caas.instance_type !== undefined && { instance_type: caas.instance_type }),
    ...(model.group_metadata != null && { group_metadata: model.group_metadata }),
    ...(provenance !== undefined && { provenance }),
  };
}

/**
 * The AIND dispatch model of a caas job input, for AIND tools downstream: every AIND field (null
 * where caas has nothing, as AIND writes them), the parameters whole in distributed_parameters
 * (AIND's wrapper lays them over its fixed ones), and under `caas` what AIND has no field for, so
 * that `caas run` reads back the same job and so the same identity. Either every input lists its
 * files or none does, as caas dispatch makes them.
 */
export function aindOfJobInput(job: JobInput): z.input<typeof AindDispatchModel> {
  const listed = job.inputs.filter((input) => input.files !== undefined).length;
  if (listed !== 0 && listed !== job.inputs.length)
    throw new Error('an AIND dispatch model lists the files of every asset or of none; this job lists some');
  const files = listed > 0 ? job.inputs.flatMap((input) => input.files ?? []) : undefined;
  const versions = files?.map(({ etag, size }) => ({ ...(etag !== undefined && { etag }), ...(size !== undefined && { size }) }));
  const caas: AindCaasFields = {
    analysis: job.analysis,
    group: job.group,
    ...(job.bucket !== undefined && { bucket: job.bucket }),
    ...(job.instance_type !== undefined && { instance_type: job.instance_type }),
    ...(versions?.some((v) => Object.keys(v).length > 0) && { files: versions }),
    ...(job.provenance !== undefined && { provenance: job.provenance }),
  };
  return {
    s3_location: job.inputs.map((input) => input.location),
    asset_name: job.inputs.map((input) => input.name),
    docdb_record_id: job.inputs.map((input) => input.asset_id),
    file_location: files?.map((file) => file.url) ?? null,
    distributed_parameters: Object.keys(job.parameters).length > 0 ? job.parameters : null,
    group_metadata: job.group_metadata ?? null,
    query: job.provenance?.source === 'query' ? (job.provenance.query ?? null) : null,
    analysis_code: null,
    caas,
  };
}
