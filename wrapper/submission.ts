import path from 'node:path';
import type { z } from 'zod';
import { KeyRefused, type ObjectInfo, type ObjectStore, objectUrl, storeKinds } from '../backends/storage/index.ts';
import type { Analysis } from '../models/analysis.ts';
import { datasetName, FOLDER_NAME, type JobFolder, jobFolder, MAX_TIMESTAMP_BYTES, timestampProblem } from '../models/bucket-contract.ts';
import { describeConfigProblem, isYamlName, parseConfigText } from '../models/config-text.ts';
import { describeIssues } from '../models/issues.ts';
import type { JobInput, JobInputAsset } from '../models/job-input.ts';
import { isPlainObject } from '../models/plain-object.ts';
import type { Owner } from '../models/record.ts';
import { SubmitFile } from '../models/submit.ts';
import { parseJsonText, untrustedJsonProblem } from '../models/untrusted-json.ts';
import { sha256Hex } from './identity.ts';
import { instanceTypeAllowed, type JobPreparer, type PreparedJob } from './prepare.ts';

/** `{group}/submissions/{anything}submit.json`, one folder deep: what the watcher picks up. */
const SUBMIT_KEY = /^([^/]+)\/submissions\/([^/]*)submit\.json$/;
const GROUP = FOLDER_NAME;
// Submit files and configs are a few lines; anything bigger is a mistake or an attack on the watcher.
export const MAX_SUBMIT_BYTES = 64 * 1024;
const MAX_CONFIG_BYTES = 1024 * 1024;
const MAX_KEY_BYTES = 1024;
const MAX_FOLDER_FILES = 10_000;

/** A name the watcher answers under and `caas submit --group` accepts. */
export function isGroupName(name: string): boolean {
  return GROUP.test(name);
}

export function isSubmitKey(key: string): boolean {
  return SUBMIT_KEY.test(key);
}

/** The group folder a submit key lies in, or undefined when that name could not be a group. */
export function submitGroup(key: string): string | undefined {
  const group = SUBMIT_KEY.exec(key)?.[1];
  return group !== undefined && isGroupName(group) ? group : undefined;
}

/**
 * The objects of one job folder the watcher and the clients agree on, beyond the agent's own
 * (bucket-contract.ts): the claim marker, and the rejection note that sits next to a submit file
 * whose job folder belongs to another job.
 */
export interface FolderKeys extends JobFolder {
  timestamp: string;
  /** {group}/results/job__{bucket}_{timestamp}/ (the same as `results`) */
  prefix: string;
  /** process_results/caas-link.json: where an answer from an identical earlier job points. */
  link: string;
}

export function folderKeys(bucket: string, group: string, timestamp: string): FolderKeys {
  const folder = jobFolder(bucket, group, timestamp);
  return { ...folder, timestamp, prefix: folder.results, link: `${folder.process}caas-link.json` };
}

export function rejectionNoteKey(submitKey: string): string {
  return `${submitKey}.rejected.txt`;
}

/**
 * The claim on a job folder. Whoever writes it first (putIfAbsent) processes the submit file;
 * submit_key + submit_sha256 say which submission owns the folder, the lease says whether its
 * owner is still alive.
 */
export interface SubmissionMarker {
  /** Set by `caas run` and `caas dev test` in their own job folders: not a submission, nothing for a watcher to do. */
  written_by?: 'caas run' | 'caas dev test';
  submit_key: string;
  submit_sha256: string;
  /** For the folder of one dataset of a list (1-based). */
  dataset?: number;
  owner: Owner;
  claimed: string;
  lease_expires: string;
}

/** The submit_key parseMarker gives a marker it cannot read. */
export const UNREADABLE_MARKER = '(unreadable marker)';

export function parseMarker(text: string | undefined): SubmissionMarker | undefined {
  if (text === undefined) return undefined;
  try {
    const value = JSON.parse(text) as Partial<SubmissionMarker> | null;
    if (typeof value?.submit_key === 'string' && typeof value.submit_sha256 === 'string' && typeof value.lease_expires === 'string') {
      return value as SubmissionMarker;
    }
  } catch {}
  // An unreadable marker still claims the folder, for nobody we can name.
  return { submit_key: UNREADABLE_MARKER, submit_sha256: '', owner: { host: '', pid: 0, run: '' }, claimed: '', lease_expires: '' };
}

/** A submit file as read, before any validation: enough to find the job folder its answer goes to. */
export interface SubmitRead {
  key: string;
  group: string;
  sha256: string;
  /** The parsed JSON, or undefined with `jsonError` set. */
  value?: unknown;
  jsonError?: string;
  /** Why the parsed JSON may not go further (too deep, lone surrogates, forbidden keys): see models/untrusted-json.ts. */
  problem?: string;
  /** The timestamp field when it is usable, else one derived from the file name. */
  timestamp: string;
}

export function readSubmit(key: string, group: string, body: Uint8Array): SubmitRead {
  const sha256 = sha256Hex(body);
  const parsed = parseJsonText(Buffer.from(body).toString('utf8'));
  const value = parsed.ok ? parsed.value : undefined;
  const jsonError = parsed.ok ? undefined : parsed.reason.replace(/^invalid JSON: /, '');
  const problem = parsed.ok ? untrustedJsonProblem(value) : undefined;
  // The timestamp still names the folder of a refused file, when it is usable (a plain string).
  const field = (value as { timestamp?: unknown } | null | undefined)?.timestamp;
  const timestamp = typeof field === 'string' && usableTimestamp(field) ? field : fallbackTimestamp(key);
  return { key, group, sha256, value, jsonError, ...(problem === undefined ? {} : { problem }), timestamp };
}

/** The submit file at `key` as read from the store, or undefined when it is gone; an oversized one is not downloaded. */
export async function readSubmitObject(store: ObjectStore, bucket: string, key: string, group: string): Promise<SubmitRead | undefined> {
  const info = await store.head(bucket, key);
  if (!info) return undefined;
  if (info.size > MAX_SUBMIT_BYTES) {
    const read = readSubmit(key, group, new Uint8Array());
    return { ...read, sha256: `etag:${info.etag}`, value: undefined, jsonError: `larger than ${MAX_SUBMIT_BYTES} bytes` };
  }
  return readSubmit(key, group, await store.get(bucket, key));
}

/** A timestamp that can name a job folder (timestampProblem says why not). */
function usableTimestamp(value: string): boolean {
  return timestampProblem(value) === undefined;
}

/**
 * When the submit file gives no usable timestamp, its answer still needs a job folder: the file
 * name without "submit.json" (so `T_submit.json` answers in job__{bucket}_T, as if it said T).
 */
export function fallbackTimestamp(key: string): string {
  const stem = (SUBMIT_KEY.exec(key)?.[2] ?? '').replace(/[_.-]+$/, '');
  const clean = stem
    .replace(/[^A-Za-z0-9._-]+/g, '-')
    .replace(/\.{2,}/g, '.')
    .replace(/^[^A-Za-z0-9]+/, '')
    .slice(0, MAX_TIMESTAMP_BYTES);
  return clean || 'submit';
}

/** One dataset of a valid submission, ready for the gate. */
export interface SubmittedDataset {
  /** As the submit file names it. */
  dataname: string;
  key: string;
  prepared: PreparedJob;
}

export interface ValidSubmission {
  submit: SubmitFile;
  /** Key of the config under {group}/configs/ (what the agent stages and copies). */
  configname: string;
  configKey: string;
  /** sha256 of the config bytes that were validated. */
  configSha256: string;
  datasets: SubmittedDataset[];
}

/** Why a submission may not run, written for the user who submitted. */
type Refusal = { ok: false; reason: string };

function reject(reason: string): Refusal {
  return { ok: false, reason };
}

export type Validation = { ok: true; submission: ValidSubmission } | Refusal;

export interface ValidationContext {
  store: ObjectStore;
  bucket: string;
  analysis: Analysis;
  preparer: JobPreparer;
}

/**
 * Everything a submit file must satisfy before any compute starts, in the order a user would fix
 * it: the group may use the analysis, the file is JSON of the submit model, the instance type is
 * allowed, the config and data exist inside the group's own configs/ and inputs/, and the config
 * satisfies the analysis' parameter model. Reasons are written for the user who submitted.
 */
export async function validateSubmission(read: SubmitRead, ctx: ValidationContext): Promise<Validation> {
  const { analysis, bucket } = ctx;
  const groups = analysis.blueprint.groups.map((g) => g.name);
  if (!groups.includes(read.group)) {
    return reject(`group "${read.group}" may not use ${analysis.name}: the blueprint lists ${groups.join(', ')}`);
  }
  if (read.jsonError !== undefined) return reject(`the submit file is not JSON (${read.jsonError})`);
  if (read.problem !== undefined) return reject(`the submit file ${read.key}: ${read.problem}`);
  const parsed = SubmitFile.safeParse(read.value);
  if (!parsed.success) {
    return reject(
      `the submit file does not match {"dataname", "configname", "timestamp"[, "instance_type"]}: ${describeSubmitIssues(parsed.error)}`,
    );
  }
  const submit = parsed.data;
  if (submit.instance_type !== undefined && !instanceTypeAllowed(analysis, submit.instance_type)) {
    const allowed = analysis.blueprint.allowed_instance_types.join(', ') || analysis.blueprint.instance_type;
    return reject(`instance_type ${JSON.stringify(submit.instance_type)} is not allowed for ${analysis.name}: expected one of ${allowed}`);
  }

  const config = await checkConfig(submit.configname, read.group, ctx);
  if (!config.ok) return config;
  const { parameters } = config;

  const datanames = typeof submit.dataname === 'string' ? [submit.dataname] : submit.dataname;
  const located = await locateDatasets(datanames, read.group, ctx);
  if (!located.ok) return located;
  const { assets } = located;

  const datasets: SubmittedDataset[] = [];
  for (const [i, { dataname, key, asset }] of assets.entries()) {
    const job: JobInput = {
      analysis: analysis.name,
      inputs: [asset],
      parameters,
      group: read.group,
      bucket,
      ...(submit.instance_type ? { instance_type: submit.instance_type } : {}),
      provenance: { source: 'submit', submit_key: read.key },
    };
    const where = datanames.length === 1 ? read.key : `${read.key} dataset ${i + 1}`;
    const prepared = await ctx.preparer.prepareValid(where, job, analysis);
    if (!prepared.ok) return reject(prepared.reason);
    datasets.push({ dataname, key, prepared: prepared.job });
  }
  return {
    ok: true,
    submission: {
      submit,
      configname: config.key.slice(`${read.group}/configs/`.length),
      configKey: config.key,
      configSha256: sha256Hex(config.bytes),
      datasets,
    },
  };
}

/** The config a submit file names: inside the group's configs/, small, JSON (or YAML, by its name), and valid for the analysis' parameter model. */
async function checkConfig(
  configname: string,
  group: string,
  ctx: ValidationContext,
): Promise<{ ok: true; key: string; bytes: Buffer; parameters: Record<string, unknown> } | Refusal> {
  const { analysis, store, bucket } = ctx;
  const config = confineKey(configname, { bucket, group, area: 'configs' });
  if (!config.ok) return reject(`configname: ${config.reason}`);
  const configInfo = await headOrRefusal(store, bucket, config.key);
  if (typeof configInfo === 'string') return reject(`configname: ${configInfo}`);
  if (!configInfo) return reject(`configname: ${config.key} does not exist; upload the config to ${group}/configs/ first`);
  if (configInfo.size > MAX_CONFIG_BYTES) return reject(`configname: ${config.key} is larger than ${MAX_CONFIG_BYTES} bytes`);
  const configBytes = await store.get(bucket, config.key);
  const parsedConfig = parseConfigText(config.key, configBytes.toString('utf8'));
  if (!parsedConfig.ok) {
    if (isYamlName(config.key)) return reject(`config ${describeConfigProblem(config.key, parsedConfig)}`);
    return reject(`config ${config.key} is not JSON (${parsedConfig.reason.replace(/^invalid JSON: /, '')})`);
  }
  const parameters = parsedConfig.value;
  const problem = untrustedJsonProblem(parameters);
  if (problem !== undefined) return reject(`config ${config.key}: ${problem}`);
  if (!isPlainObject(parameters)) {
    const form = isYamlName(config.key) ? 'a YAML mapping' : 'a JSON object';
    return reject(`config ${config.key} must be ${form} of ${analysis.name} parameters`);
  }
  const checked = (analysis.parameters as z.ZodType).safeParse(parameters);
  if (!checked.success) return reject(`config ${config.key} is not valid for ${analysis.name}: ${describeIssues(checked.error)}`);
  return { ok: true, key: config.key, bytes: configBytes, parameters };
}

interface LocatedDataset {
  dataname: string;
  key: string;
  asset: JobInputAsset;
}

/**
 * The datasets a submit file names, each inside the group's inputs/ and there, with etags and sizes;
 * two may not share a file name, which names their status files.
 */
async function locateDatasets(
  datanames: string[],
  group: string,
  ctx: ValidationContext,
): Promise<{ ok: true; assets: LocatedDataset[] } | Refusal> {
  const { store, bucket } = ctx;
  const assets: LocatedDataset[] = [];
  const statusNames = new Map<string, string>();
  for (const dataname of datanames) {
    const data = confineKey(dataname, { bucket, group, area: 'inputs' });
    if (!data.ok) return reject(`dataname ${JSON.stringify(dataname)}: ${data.reason}`);
    const name = datasetName(data.key);
    const clash = statusNames.get(name);
    if (clash !== undefined)
      return reject(
        `datanames ${JSON.stringify(clash)} and ${JSON.stringify(dataname)} share the file name ${name}: their status files would collide`,
      );
    statusNames.set(name, dataname);
    const asset = await describeAsset(store, bucket, data.key);
    if (asset === undefined)
      return reject(`dataname ${JSON.stringify(dataname)}: ${data.key} does not exist; upload the data to ${group}/inputs/ first`);
    if (typeof asset === 'string') return reject(`dataname ${JSON.stringify(dataname)}: ${asset}`);
    assets.push({ dataname, key: data.key, asset });
  }
  return { ok: true, assets };
}

/** zod's own message for the dataname union ("Invalid input") does not say what would be valid. */
function describeSubmitIssues(error: z.ZodError): string {
  return describeIssues(error)
    .split('; ')
    .map((line) =>
      line.startsWith('dataname: Invalid input') ? 'dataname: expected a key under {group}/inputs/ or a non-empty list of them' : line,
    )
    .join('; ');
}

export type Confined = { ok: true; key: string } | { ok: false; reason: string };

/**
 * Turns a dataname or configname into a key inside `{group}/{area}/` of this bucket, or says why
 * not. Accepted spellings: `x.json` (under the area), `inputs/x.json` (under the group, as
 * NeuroCAAS writes them), `{group}/inputs/x.json` (the full key) and `s3://{bucket}/{group}/inputs/x.json`.
 * Percent-encoding is decoded exactly once; whatever still looks encoded, climbs (`..`), uses
 * backslashes or control characters, or lands outside the area is refused, never normalised.
 */
export function confineKey(raw: string, where: { bucket: string; group: string; area: 'inputs' | 'configs' }): Confined {
  const { bucket, group, area } = where;
  const base = `${group}/${area}/`;
  let value: string;
  try {
    value = decodeURIComponent(raw);
  } catch {
    return { ok: false, reason: 'broken percent-encoding' };
  }
  if (value.includes('%')) return { ok: false, reason: 'still percent-encoded after decoding once (double encoding is refused)' };
  if (value.includes('\\')) return { ok: false, reason: 'backslashes are not allowed in names' };
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(value)) return { ok: false, reason: 'control characters (NUL, newline, ...) are not allowed in names' };
  if (value.includes('..')) return { ok: false, reason: '".." is not allowed in names' };
  let key: string;
  const url = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/]*)\/?(.*)$/.exec(value);
  if (url) {
    const [, scheme = '', urlBucket = '', urlKey = ''] = url;
    // NeuroCAAS users write s3:// whatever store caas keeps the bucket in: any store's scheme names this bucket.
    if (!storeKinds().some((kind) => kind.scheme === scheme))
      return { ok: false, reason: `only s3://${bucket}/${base}... URLs are accepted, not ${scheme}://` };
    if (urlBucket !== bucket)
      return {
        ok: false,
        reason: `names bucket ${JSON.stringify(urlBucket)}: data must be in this analysis bucket, s3://${bucket}/${base}`,
      };
    key = urlKey;
  } else if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(value)) {
    return { ok: false, reason: `only s3://${bucket}/${base}... URLs are accepted` };
  } else if (value.startsWith('/') || value.startsWith('~')) {
    return { ok: false, reason: `absolute paths are not allowed: name a key under ${base}` };
  } else if (value.startsWith(base)) {
    key = value;
  } else if (value.startsWith(`${area}/`)) {
    key = `${group}/${value}`;
  } else if (value.startsWith(`${group}/`)) {
    return { ok: false, reason: `lies outside ${base}` };
  } else if (/^[^/]+\/(inputs|configs)\//.test(value) && !/^(inputs|configs)\//.test(value)) {
    return { ok: false, reason: `lies in another group's folder: name a key under ${base}` };
  } else {
    key = `${base}${value}`;
  }
  const rest = key.startsWith(base) ? key.slice(base.length) : undefined;
  if (rest === undefined || rest === '' || rest === '/') return { ok: false, reason: `must name something inside ${base}` };
  const segments = rest.replace(/\/$/, '').split('/');
  if (segments.some((s) => s === '' || s === '.')) return { ok: false, reason: 'empty or "." path segments are not allowed' };
  if (area === 'configs' && key.endsWith('/')) return { ok: false, reason: 'must name a config file, not a folder' };
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) return { ok: false, reason: `longer than ${MAX_KEY_BYTES} bytes` };
  return { ok: true, key };
}

/**
 * The asset a data key names, with etag and size of every file (they enter the identity): one
 * object, or every object under a key ending in "/".
 */
async function describeAsset(store: ObjectStore, bucket: string, key: string): Promise<JobInputAsset | string | undefined> {
  const file = (info: ObjectInfo) => ({ url: objectUrl(store.scheme, bucket, info.key), etag: info.etag, size: info.size });
  if (key.endsWith('/')) {
    const files = [];
    for await (const info of store.list(bucket, key)) {
      files.push(file(info));
      if (files.length > MAX_FOLDER_FILES) return `${key} holds more than ${MAX_FOLDER_FILES} files: submit fewer at a time`;
    }
    if (files.length === 0) return undefined;
    return { asset_id: key, name: datasetName(key), location: objectUrl(store.scheme, bucket, key), files };
  }
  const info = await headOrRefusal(store, bucket, key);
  if (typeof info === 'string') return info;
  if (!info) return undefined;
  return {
    asset_id: key,
    name: path.posix.basename(key),
    location: objectUrl(store.scheme, bucket, `${path.posix.dirname(key)}/`),
    files: [file(info)],
  };
}

/** An object's head, or why the store refuses the key (a link out of the group folder): the user's to fix. */
async function headOrRefusal(store: ObjectStore, bucket: string, key: string): Promise<ObjectInfo | string | undefined> {
  try {
    return await store.head(bucket, key);
  } catch (error) {
    if (error instanceof KeyRefused) return error.message;
    throw error;
  }
}
