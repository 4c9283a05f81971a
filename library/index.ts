/**
 * caas as a library: what the CLI does, for Node programs (`import { dispatch, plan, run } from
 * 'caas'`). Every function takes plain, typed options, with the CLI's defaults for what is left out
 * (CAAS_HOME, CAAS_STORE, CAAS_DB, CAAS_COMPUTE, ... else `.caas`, `file:`, `sqlite:`, local), reports through
 * an optional reporter instead of printing, and throws a `CaasError` (with its `exitCode`) where the
 * CLI would exit 2. Nothing here parses argv or writes to the terminal.
 */
import path from 'node:path';
import { openDatabase } from '../backends/db/index.ts';
import { type StoreSettings, settingOptionName, storeSettingsFrom } from '../backends/storage/index.ts';
import { generateSampleCatalog } from '../dispatcher/catalog.ts';
import { type DispatchReporter, type DispatchRequest, type DispatchSummary, runDispatch } from '../dispatcher/dispatch.ts';
import type { SampleDataOptions } from '../dispatcher/sample-data.ts';
import { defaultSettings, statusIntervalOf } from '../models/caas-settings.ts';
import { checkFilter, type Filter } from '../models/filter.ts';
import type { MetadataRecord } from '../models/record.ts';
import { DEFAULT_STATUS_INTERVAL_MS, type JobResult } from '../wrapper/execute.ts';
import type { PlanEntry } from '../wrapper/gate.ts';
import { type ResultsPlace, recordByPrefix } from '../wrapper/record-lookup.ts';
import { type RunOptions, type RunReporter, type RunSummary, runBatch } from '../wrapper/run.ts';
import { explainJobRef, type WhyOutcome } from '../wrapper/why.ts';
import type { Workspace } from '../wrapper/workspace.ts';

export { CaasError, exitCodeOf } from '../models/caas-error.ts';
export type { Filter } from '../models/filter.ts';
export type { MetadataRecord } from '../models/record.ts';
export { handler as s3EventHandler, handleS3Event } from '../wrapper/s3-event-handler.ts';
export { type SubmissionOutcome, SubmissionWatcher, type WatchOptions } from '../wrapper/watch.ts';
export type { DispatchReporter, DispatchSummary, JobResult, PlanEntry, ResultsPlace, RunReporter, RunSummary, WhyOutcome };

/** Where caas keeps things; each field defaults as the CLI's global flags do. */
export interface WorkspaceOptions {
  /** The workspace for the embedded defaults (default: `.caas` in the working folder). */
  home?: string;
  /**
   * `file:` (default: a folder per bucket under the workspace), `file:///folder`, `s3://`, or
   * `s3://?endpoint=URL` for an S3-compatible server (AWS_ENDPOINT_URL gives that endpoint too).
   */
  storeUrl?: string;
  /** `sqlite:` (default: under the workspace), `sqlite:<file>` or `mongodb://…`. */
  dbUrl?: string;
  /** Settings per store kind, for stores a URL leaves unsaid (default: from the environment, e.g. AWS_ENDPOINT_URL). */
  storeSettings?: StoreSettings;
}

/**
 * The store kinds' settings from the options named as their flags are (a plain JavaScript caller's
 * `s3Endpoint`, as --s3-endpoint), else from their environment variables, as the CLI takes them.
 */
function storeSettingsOf(options: WorkspaceOptions): StoreSettings {
  const given = options as Record<string, unknown>;
  return storeSettingsFrom((setting) => {
    const value = given[settingOptionName(setting)];
    if (typeof value === 'string' && value !== '') return value;
    return setting.env ? process.env[setting.env] : undefined;
  });
}

function workspaceOf(options: WorkspaceOptions): Workspace {
  const defaults = defaultSettings();
  return {
    home: path.resolve(options.home ?? defaults.home),
    storeUrl: options.storeUrl ?? defaults.storeUrl,
    dbUrl: options.dbUrl ?? defaults.dbUrl,
    storeSettings: options.storeSettings ?? storeSettingsOf(options),
  };
}

/** Writes the sample spike trains and their catalog entries (`caas catalog generate-sample`). */
export async function generateSample(options: WorkspaceOptions & SampleDataOptions = {}): Promise<{ count: number; bucket: string }> {
  const { count, bucket } = await generateSampleCatalog(workspaceOf(options), options);
  return { count, bucket };
}

export type DispatchOptions = Omit<DispatchRequest, keyof Workspace> & WorkspaceOptions;

/**
 * `caas dispatch`: a dataset query, CSV or prefix → job inputs, written to `output` (a file or
 * folder). `catalogUrl` (default CAAS_CATALOG, else the catalog in `dbUrl`) is read only.
 */
export function dispatch(options: DispatchOptions, reporter: Partial<DispatchReporter> = {}): Promise<DispatchSummary> {
  const catalogUrl = options.catalogUrl ?? defaultSettings().catalogUrl;
  return runDispatch({ ...options, ...workspaceOf(options), catalogUrl }, { warn: () => {}, ...reporter });
}

export type RunJobsOptions = Partial<Omit<RunOptions, keyof Workspace | 'source' | 'execute'>> &
  WorkspaceOptions & {
    /** JSONL or JSON array file of job inputs, or a folder of job files. */
    source: string;
  };

/** The defaults of `caas run`: CAAS_COMPUTE or local compute, 2 at a time, CAAS_LEASE_SECONDS or a 60 s lease, CAAS_USER. */
function runOptionsOf(options: RunJobsOptions, execute: boolean): RunOptions {
  const defaults = defaultSettings();
  return {
    compute: defaults.compute,
    concurrency: 2,
    allowDirty: false,
    leaseMs: defaults.leaseSeconds * 1000,
    statusIntervalMs: statusIntervalOf() ?? DEFAULT_STATUS_INTERVAL_MS,
    ...(defaults.user ? { user: defaults.user } : {}),
    ...options,
    ...workspaceOf(options),
    execute,
  };
}

/** `caas run` without --execute: validate, compute identities, gate; nothing is written anywhere. */
export async function plan(
  options: RunJobsOptions,
  reporter: Partial<RunReporter> = {},
): Promise<{ entries: PlanEntry[]; summary: RunSummary }> {
  const entries: PlanEntry[] = [];
  const summary = await runBatch(runOptionsOf(options, false), {
    warn: () => {},
    result: () => {},
    ...reporter,
    plan: (chunk) => {
      entries.push(...chunk);
      reporter.plan?.(chunk);
    },
  });
  return { entries, summary };
}

/** `caas run --execute`: the plan, then every job it says to run, each exactly once. */
export async function run(
  options: RunJobsOptions,
  reporter: Partial<RunReporter> = {},
): Promise<{ results: JobResult[]; summary: RunSummary }> {
  const results: JobResult[] = [];
  const summary = await runBatch(runOptionsOf(options, true), {
    warn: () => {},
    plan: () => {},
    ...reporter,
    result: (result) => {
      results.push(result);
      reporter.result?.(result);
    },
  });
  return { results, summary };
}

/** `caas query`: the records that match a MongoDB filter, streamed; the DB is closed when the loop ends. */
export async function* query(
  filter: Filter = {},
  options: WorkspaceOptions & { sort?: Record<string, 1 | -1>; limit?: number } = {},
): AsyncGenerator<MetadataRecord> {
  checkFilter(filter);
  const workspace = workspaceOf(options);
  const db = await openDatabase(workspace.dbUrl, { home: workspace.home, readOnly: true });
  try {
    yield* db.find(filter, { sort: options.sort, limit: options.limit });
  } finally {
    await db.close();
  }
}

/** `caas show`: one record by its identity or a unique prefix of it, and where its results are. */
export function show(identity: string, options: WorkspaceOptions = {}): Promise<{ record: MetadataRecord; place?: ResultsPlace }> {
  return recordByPrefix(identity, workspaceOf(options));
}

/** `caas why`: whether a job (`jobs.jsonl:12`, or a file of one job) would run, and why, against the records. */
export function why(
  ref: string,
  options: WorkspaceOptions & { allowDirty?: boolean; limit?: number; analysis?: string } = {},
): Promise<WhyOutcome> {
  return explainJobRef(ref, workspaceOf(options), {
    allowDirty: options.allowDirty ?? false,
    limit: options.limit ?? 3,
    analysis: options.analysis,
  });
}
