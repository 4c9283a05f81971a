import type { z } from 'zod';
import { AnalysisError } from '../analyses/index.ts';
import type { ObjectLocator } from '../backends/storage/index.ts';
import { AindDispatchModel, aindParameterPath, isAindDispatchModel, jobInputOfAind } from '../models/aind-dispatch.ts';
import type { Analysis } from '../models/analysis.ts';
import type { PreImage } from '../models/identity.ts';
import { describeIssues } from '../models/issues.ts';
import { type InputFile, JobInput, type JobInputAsset } from '../models/job-input.ts';
import { isPlainObject } from '../models/plain-object.ts';
import { untrustedJsonProblem } from '../models/untrusted-json.ts';
import { type CodeState, readCodeVersion } from './code-version.ts';
import { buildPreImage, type FolderFile, identityOf } from './identity.ts';
import type { JobEntry } from './job-source.ts';
import { loadRunnableAnalysis } from './runnable-analysis.ts';

/** A valid job with everything the gate and the launcher need. */
export interface PreparedJob {
  where: string;
  /** The job input as given (its parameters unvalidated; `parameters` below are the validated ones). */
  input: JobInput;
  analysis: Analysis;
  parameters: Record<string, unknown>;
  preimage: PreImage;
  identity: string;
  bucket: string;
  group: string;
  /** scheme://bucket/group: the output location that enters the identity. */
  output: string;
  code: CodeState;
}

export type Prepared = { ok: true; job: PreparedJob } | { ok: false; where: string; reason: string; analysis?: string };

export interface PrepareOptions {
  /** Scheme of the object store the results go to: part of the output location. */
  storeScheme: string;
  allowDirty: boolean;
  /** Analysis folders to search (default: CAAS_ANALYSES, then analyses/). */
  roots?: string[];
  /**
   * Where input folders are listed: an input given as a folder (no files) enters the identity with
   * what it holds, so new data in the same folder is a new job. Without it such an input is INVALID.
   */
  inputs?: ObjectLocator;
  /** The analysis of AIND dispatch models, which do not name one (--analysis). */
  aindAnalysis?: string;
  /**
   * The group of jobs that name none, instead of the job input's default (caas serve: the token's
   * group). Applied to the caas job input, so an AIND model without `caas.group` gets it too.
   */
  defaultGroup?: string;
}

/**
 * Validates job inputs and computes their identities: the checks on untrusted JSON (depth, lone
 * surrogates, forbidden keys), job schema, then the analysis' own parameter model (defaults
 * applied, unknown keys rejected), then the pre-image. Validation always comes before hashing, so
 * equal meaning gives equal identity.
 */
export class JobPreparer {
  private readonly codeStates = new Map<string, Promise<CodeState>>();
  /** Each folder listed once per preparer: a parameter grid over one asset asks the store once. */
  private readonly listings = new Map<string, Promise<FolderFile[]>>();

  constructor(private readonly options: PrepareOptions) {}

  async prepare(entry: JobEntry): Promise<Prepared> {
    const { where } = entry;
    if (entry.error !== undefined) return { ok: false, where, reason: entry.error };
    const problem = untrustedJsonProblem(entry.value);
    if (problem !== undefined) return { ok: false, where, reason: problem, analysis: analysisName(entry.value) };
    const given = isAindDispatchModel(entry.value) ? this.fromAind(entry.value) : { ok: true as const, value: entry.value };
    if (!given.ok) return { ok: false, where, reason: `AIND dispatch model: ${given.reason}`, analysis: this.options.aindAnalysis };
    const parsed = JobInput.safeParse(this.withDefaultGroup(given.value));
    if (!parsed.success) return { ok: false, where, reason: describeIssues(parsed.error), analysis: analysisName(given.value) };
    const job = parsed.data;
    let analysis: Analysis;
    try {
      analysis = await loadRunnableAnalysis(job.analysis, this.options.roots);
    } catch (error) {
      if (error instanceof AnalysisError) return { ok: false, where, reason: `analysis: ${error.message}`, analysis: job.analysis };
      throw error;
    }
    const prepared = await this.prepareValid(where, job, analysis);
    if (prepared.ok || !('aind' in given)) return prepared;
    // The parameters of an AIND model are its distributed_parameters over analysis_code.parameters.
    const reason = prepared.reason.replace(
      /(^|; )parameters(\.([^.:;]+))?/g,
      (_, lead: string, rest: string | undefined, key: string | undefined) => `${lead}${aindParameterPath(given.aind, key)}${rest ?? ''}`,
    );
    return { ...prepared, reason: `AIND dispatch model: ${reason}` };
  }

  private withDefaultGroup(value: unknown): unknown {
    const group = this.options.defaultGroup;
    return group !== undefined && isPlainObject(value) && value.group === undefined ? { ...value, group } : value;
  }

  /** The caas job input an AIND dispatch model means, or what is wrong with it (field paths are AIND's). */
  private fromAind(value: unknown): { ok: true; value: unknown; aind: AindDispatchModel } | { ok: false; reason: string } {
    const parsed = AindDispatchModel.safeParse(value);
    if (!parsed.success) return { ok: false, reason: describeIssues(parsed.error) };
    const named = parsed.data.caas?.analysis;
    const flag = this.options.aindAnalysis;
    if (named !== undefined && flag !== undefined && named !== flag)
      return { ok: false, reason: `caas.analysis: "${named}", but --analysis says "${flag}"` };
    const analysis = named ?? flag;
    if (analysis === undefined)
      return { ok: false, reason: '(root): names no analysis (AIND models leave it to the wrapper): give it with --analysis <name>' };
    return { ok: true, value: jobInputOfAind(parsed.data, analysis), aind: parsed.data };
  }

  async prepareValid(where: string, job: JobInput, analysis: Analysis): Promise<Prepared> {
    // Jobs built by code (dispatch from catalog documents, submissions) carry untrusted text too.
    const problem = untrustedJsonProblem(job);
    if (problem !== undefined) return { ok: false, where, reason: problem, analysis: analysis.name };
    const parameters = (analysis.parameters as z.ZodType).safeParse(job.parameters);
    if (!parameters.success) return { ok: false, where, reason: describeIssues(parameters.error, 'parameters'), analysis: analysis.name };
    if (job.instance_type && !instanceTypeAllowed(analysis, job.instance_type)) {
      return {
        ok: false,
        where,
        reason: `instance_type: "${job.instance_type}" is not allowed for ${analysis.name}; expected one of ${analysis.blueprint.allowed_instance_types.join(', ') || analysis.blueprint.instance_type}`,
        analysis: analysis.name,
      };
    }
    const code = await this.codeStateOf(analysis.dir);
    const bucket = job.bucket ?? analysis.blueprint.bucket;
    const output = `${this.options.storeScheme}://${bucket}/${job.group}`;
    const outside = analysis.script ? inputOutsideBucket(job, `${this.options.storeScheme}://${bucket}/`) : undefined;
    if (outside !== undefined) {
      return {
        ok: false,
        where,
        reason: `inputs: ${outside} is not in the analysis bucket: ${analysis.name} is a NeuroCAAS script, which reads its data from "s3://$bucketname/$inputpath"; put the data under ${output}/inputs/ and name it there`,
        analysis: analysis.name,
      };
    }
    const inputs: (JobInputAsset & { listing?: FolderFile[] })[] = [];
    for (const [i, input] of job.inputs.entries()) {
      if (input.files) {
        const files = [];
        for (const [j, file] of input.files.entries()) {
          try {
            files.push(await this.pinFile(file));
          } catch (error) {
            return { ok: false, where, reason: `inputs.${i}.files.${j}.url: ${(error as Error).message}`, analysis: analysis.name };
          }
        }
        inputs.push({ ...input, files });
        continue;
      }
      try {
        inputs.push({ ...input, listing: await this.listFolder(folderUrl(input.location)) });
      } catch (error) {
        return { ok: false, where, reason: `inputs.${i}.location: ${(error as Error).message}`, analysis: analysis.name };
      }
    }
    const preimage = buildPreImage({
      analysis: { name: analysis.name, version: analysis.version },
      code: code.version,
      parameters: parameters.data as Record<string, unknown>,
      inputs,
      output,
    });
    return {
      ok: true,
      job: {
        where,
        input: job,
        analysis,
        // The same values as the pre-image's, in the model's own order: what the config file and
        // the record show people (the pre-image keeps canonical order for hashing).
        parameters: JSON.parse(JSON.stringify(parameters.data)) as Record<string, unknown>,
        preimage,
        identity: identityOf(preimage),
        bucket,
        group: job.group,
        output,
        code,
      },
    };
  }

  /** What a folder input holds now, as object URLs with their etag and size. */
  listFolder(url: string): Promise<FolderFile[]> {
    let listing = this.listings.get(url);
    if (!listing) {
      listing = this.readFolder(url);
      this.listings.set(url, listing);
    }
    return listing;
  }

  /**
   * A file named without its etag or size (a hand-written job, an AIND dispatch model) gets them
   * from the store, so its content is in the identity as a listed file's is: new data under the
   * same name is a new job, and the agent checks what it stages against them.
   */
  private async pinFile(file: InputFile): Promise<InputFile> {
    if ((file.etag !== undefined && file.size !== undefined) || !this.options.inputs) return file;
    let found: { etag: string; size: number } | undefined;
    try {
      const { store, bucket, key } = await this.options.inputs.locate(file.url);
      found = await store.head(bucket, key);
    } catch (error) {
      throw new Error(`could not look at ${file.url}: ${(error as Error).message}`);
    }
    if (!found) throw new Error(`${file.url} does not exist`);
    return { url: file.url, etag: file.etag ?? found.etag, size: file.size ?? found.size };
  }

  private async readFolder(url: string): Promise<FolderFile[]> {
    if (!this.options.inputs) throw new Error(`${url} is a folder and there is no store here to list it in: name its files`);
    let files: FolderFile[];
    try {
      const { store, bucket, key } = await this.options.inputs.locate(url);
      files = [];
      for await (const object of store.list(bucket, key))
        files.push({ url: url + object.key.slice(key.length), etag: object.etag, size: object.size });
    } catch (error) {
      throw new Error(`could not list the folder ${url}: ${(error as Error).message}`);
    }
    // A misspelt location lists nothing too: a job over no data is refused, never recorded as done.
    if (files.length === 0) throw new Error(`the folder ${url} holds nothing (missing or empty): expected the asset's data under it`);
    return files;
  }

  /** The code state of an analysis folder, read from git once per preparer and shared by every job it prepares. */
  codeStateOf(dir: string): Promise<CodeState> {
    let state = this.codeStates.get(dir);
    if (!state) {
      state = readCodeVersion(dir, { allowDirty: this.options.allowDirty });
      this.codeStates.set(dir, state);
    }
    return state;
  }
}

/** An input folder's URL as it is listed and staged: with its trailing "/". */
export function folderUrl(location: string): string {
  return location.endsWith('/') ? location : `${location}/`;
}

/** The first input (file URL, or folder location without files) that is not in this bucket. */
function inputOutsideBucket(job: JobInput, bucketUrl: string): string | undefined {
  const urls = job.inputs.flatMap((input) => input.files?.map((file) => file.url) ?? [input.location]);
  return urls.find((url) => !url.startsWith(bucketUrl));
}

export function instanceTypeAllowed(analysis: Analysis, type: string): boolean {
  const { allowed_instance_types: allowed, instance_type: standard } = analysis.blueprint;
  return type === standard || allowed.includes(type);
}

function analysisName(value: unknown): string | undefined {
  const name = (value as { analysis?: unknown } | null)?.analysis;
  return typeof name === 'string' ? name : undefined;
}
