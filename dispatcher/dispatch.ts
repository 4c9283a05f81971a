import type { Writable } from 'node:stream';
import { AnalysisError } from '../analyses/index.ts';
import { type CatalogReader, type Database, type MetadataStore, openCatalog, openDatabase } from '../backends/db/index.ts';
import { ObjectLocator, openStore, type StoreSettings } from '../backends/storage/index.ts';
import type { Analysis } from '../models/analysis.ts';
import { JobInput, type Provenance } from '../models/job-input.ts';
import { GATE_CHUNK } from '../wrapper/gate.ts';
import { JobPreparer } from '../wrapper/prepare.ts';
import { loadRunnableAnalysis } from '../wrapper/runnable-analysis.ts';
import { DispatchError } from './dispatch-error.ts';
import { dropNullGroups, groupAssets, keepLatest, singleAssets, splitByFile, type Unit, unwind, withListedFiles } from './expand.ts';
import { type EmittedJob, type OutputFormat, openSink } from './output.ts';
import { parameterSets, readParametersFile } from './params.ts';
import { csvAssets, type Notice, prefixAssets, queryAssets, readQuery, type SourceAsset } from './sources.ts';

/** Everything `caas dispatch` was asked, as plain values (the CLI only maps flags onto this). */
export interface DispatchRequest {
  home: string;
  dbUrl: string;
  /** Where --query and --assets-csv find assets, read-only (--catalog); defaults to the catalog in `dbUrl`. */
  catalogUrl?: string;
  storeUrl: string;
  storeSettings?: StoreSettings;
  /** Exactly one source: a catalog filter (JSON text or a file holding it), a CSV of asset ids, or a prefix URL. */
  query?: string;
  assetsCsv?: string;
  s3Prefix?: string;
  analysis: string;
  fileExt?: string;
  /** One job per matched file. Unset: on, except with groupBy (a group is one job). */
  splitFiles?: boolean;
  groupBy?: string[];
  dropNullGroups?: boolean;
  filterLatest?: string;
  /** The fields whose groups --filter-latest keeps one asset of; defaults to groupBy. */
  filterBy?: string[];
  unwind?: string[];
  /** analysis_parameters.json */
  params?: string;
  maxJobs?: number;
  group?: string;
  /** ISO time recorded in provenance (outside the identity); defaults to now. */
  dispatchedAt?: string;
  skipDone?: boolean;
  allowDirty?: boolean;
  /** File or folder; undefined or "-" writes JSONL to `stdout`. */
  output?: string;
  format?: OutputFormat;
  stdout?: Writable;
}

export interface DispatchReporter {
  warn(message: string): void;
  /** Called after each batch of jobs is written, with the counts so far. */
  progress?(summary: Readonly<DispatchSummary>): void;
}

export interface DispatchSummary {
  /** Assets the source yielded, before any filtering. */
  assets: number;
  jobs: number;
  parameterSets: number;
  skippedSucceeded: number;
  maxJobsReached: boolean;
  /** Counts of what was noticed on the way: unknown CSV ids, assets without matching files, ... */
  notices: Record<string, number>;
}

/** Notices of one kind printed before the rest are only counted (100k assets without files would drown the terminal). */
const NOTICES_SHOWN = 20;

/**
 * `caas dispatch`: source → (filter-latest, unwind, group) → file listing → split → parameter grid
 * → (skip succeeded) → output, as a chain of async generators, so memory stays flat however large
 * the catalog is (only --filter-latest and --group-by hold per-group state). Everything the user
 * gave is checked before the first job is written; output is committed only when all went well.
 */
export async function runDispatch(request: DispatchRequest, reporter: DispatchReporter): Promise<DispatchSummary> {
  const plan = await planOf(request);
  const summary: DispatchSummary = {
    assets: 0,
    jobs: 0,
    parameterSets: plan.sets.length,
    skippedSucceeded: 0,
    maxJobsReached: false,
    notices: {},
  };
  const notice: Notice = (kind, message) => {
    const seen = (summary.notices[kind] ?? 0) + 1;
    summary.notices[kind] = seen;
    if (seen <= NOTICES_SHOWN) reporter.warn(message);
  };

  const store = await openStore(request.storeUrl, { home: request.home, settings: request.storeSettings });
  const locator = new ObjectLocator(store, { home: request.home, settings: request.storeSettings });
  // Dispatch writes nothing: the catalog and the records (for --skip-done) are both opened read-only,
  // through one connection when they are one DB; a prefix without --skip-done needs neither.
  const catalogUrl = request.catalogUrl ?? request.dbUrl;
  let records: Database | undefined;
  let catalog: CatalogReader | undefined;
  try {
    if (request.skipDone) records = await openDatabase(request.dbUrl, { home: request.home, readOnly: true });
    if (plan.source.kind !== 'prefix')
      catalog = records && catalogUrl === request.dbUrl ? records : await openCatalog(catalogUrl, { home: request.home });
    let jobs = jobsOf(plan, { catalog, locator, notice, summary });
    if (request.skipDone) jobs = withoutSucceeded(jobs, plan.analysis, locator, records!, request.allowDirty ?? false, summary);
    if (request.maxJobs !== undefined) jobs = upTo(jobs, request.maxJobs, summary);
    const sink = await openSink(request.format ?? 'jsonl', request.output, request.stdout ?? process.stdout);
    try {
      for await (const batch of jobs) {
        await sink.write(batch);
        summary.jobs += batch.length;
        reporter.progress?.(summary);
      }
      await sink.commit();
    } catch (error) {
      await sink.abort();
      throw error;
    }
  } finally {
    if (catalog !== records) await catalog?.close();
    await records?.close();
    await locator.close();
    await store.close();
  }
  for (const [kind, count] of Object.entries(summary.notices)) {
    if (count > NOTICES_SHOWN) reporter.warn(`... and ${count - NOTICES_SHOWN} more ${kind} (${count} in all)`);
  }
  return summary;
}

/** One line for stderr: how many jobs, and what shaped the count. */
export function summaryLine(summary: DispatchSummary): string {
  const parts = [`${summary.jobs} job${summary.jobs === 1 ? '' : 's'}`, `from ${summary.assets} asset${summary.assets === 1 ? '' : 's'}`];
  if (summary.parameterSets > 1) parts.push(`x ${summary.parameterSets} parameter sets`);
  const details = Object.entries(summary.notices).map(([kind, count]) => `${count} ${kind}`);
  if (summary.skippedSucceeded > 0) details.push(`${summary.skippedSucceeded} already succeeded (--skip-done)`);
  if (summary.maxJobsReached) details.push('stopped at --max-jobs');
  return details.length > 0 ? `${parts.join(' ')}; ${details.join('; ')}` : parts.join(' ');
}

type SourcePlan =
  | { kind: 'query'; filter: Record<string, unknown>; text: string }
  | { kind: 'csv'; file: string }
  | { kind: 'prefix'; url: string };

interface Plan {
  source: SourcePlan;
  analysis: Analysis;
  sets: Record<string, unknown>[];
  fileExt?: string;
  split: boolean;
  groupBy: string[];
  filterLatest?: string;
  filterBy: string[];
  unwind: string[];
  dropNullGroups: boolean;
  group: string;
  provenance: Provenance;
}

/** Checks every flag and reads every input file, so that all usage errors come before any output. */
async function planOf(request: DispatchRequest): Promise<Plan> {
  const given = [request.query, request.assetsCsv, request.s3Prefix].filter((s) => s !== undefined);
  if (given.length !== 1) {
    throw new DispatchError(
      `${given.length === 0 ? 'no source given' : 'give only one source'}: use one of --query <json|file>, --assets-csv <file>, --s3-prefix <url>`,
    );
  }
  const groupBy = request.groupBy ?? [];
  const filterBy = request.filterBy ?? (request.filterLatest ? groupBy : []);
  const unwound = request.unwind ?? [];
  if (request.filterLatest && filterBy.length === 0) {
    throw new DispatchError(
      '--filter-latest keeps the newest asset of each group: say which with --filter-by <fields...> or --group-by <fields...>',
    );
  }
  if (request.filterBy && !request.filterLatest) throw new DispatchError('--filter-by only goes with --filter-latest <field>');
  if (unwound.length > 0 && groupBy.length === 0) {
    throw new DispatchError('--unwind expands an array field so that --group-by can group by its elements; add --group-by <fields...>');
  }
  if (groupBy.length > 0 && request.splitFiles === true) {
    throw new DispatchError("--split-files cannot go with --group-by: a group is one job with all its assets' files");
  }
  if (request.maxJobs !== undefined && !(Number.isInteger(request.maxJobs) && request.maxJobs >= 1)) {
    throw new DispatchError(`--max-jobs expects a whole number >= 1, got ${request.maxJobs}`);
  }
  const group = request.group ?? 'caas';
  const groupCheck = JobInput.shape.group.safeParse(group);
  if (!groupCheck.success) throw new DispatchError(`--group "${group}": ${groupCheck.error.issues[0]?.message}`);
  let fileExt = request.fileExt;
  if (fileExt !== undefined) {
    if (fileExt.trim() === '' || fileExt.includes('/'))
      throw new DispatchError(`--file-ext "${fileExt}" is not a file extension (e.g. .nwb)`);
    if (!fileExt.startsWith('.')) fileExt = `.${fileExt}`;
  }
  const dispatchedAt = dispatchTime(request.dispatchedAt);

  let analysis: Analysis;
  try {
    analysis = await loadRunnableAnalysis(request.analysis);
  } catch (error) {
    if (error instanceof AnalysisError) throw new DispatchError(`--analysis: ${error.message}`);
    throw error;
  }
  const sets = parameterSets(analysis, request.params === undefined ? undefined : await readParametersFile(request.params), request.params);

  let source: SourcePlan;
  if (request.query !== undefined) source = { kind: 'query', ...(await readQuery(request.query)) };
  else if (request.assetsCsv !== undefined) source = { kind: 'csv', file: request.assetsCsv };
  else source = { kind: 'prefix', url: request.s3Prefix!.endsWith('/') ? request.s3Prefix! : `${request.s3Prefix}/` };
  const provenance: Provenance = {
    source: source.kind,
    query: source.kind === 'query' ? source.text : source.kind === 'csv' ? source.file : source.url,
    dispatched_at: dispatchedAt,
  };
  return {
    source,
    analysis,
    sets,
    fileExt,
    // Split only means something for files matched by --file-ext; a group is always one job.
    split: fileExt !== undefined && groupBy.length === 0 && request.splitFiles !== false,
    groupBy,
    filterLatest: request.filterLatest,
    filterBy,
    unwind: unwound,
    dropNullGroups: request.dropNullGroups ?? true,
    group,
    provenance,
  };
}

function dispatchTime(given: string | undefined): string {
  if (given === undefined) return new Date().toISOString();
  const ms = /^\d{4}-\d{2}-\d{2}/.test(given) ? Date.parse(given) : Number.NaN;
  if (Number.isNaN(ms)) throw new DispatchError(`--dispatched-at "${given}" is not an ISO date-time such as 2025-01-31T12:00:00Z`);
  return new Date(ms).toISOString();
}

interface Context {
  catalog: CatalogReader | undefined;
  locator: ObjectLocator;
  notice: Notice;
  summary: DispatchSummary;
}

/**
 * The jobs of each unit as one batch (an await per batch, not per job, keeps 300k jobs cheap), each
 * with its JSONL line assembled from pieces serialised once: the inputs once per unit, each
 * parameter set once per dispatch. The pieces are JSON.stringify's own output in the key order of
 * the job object, so the line is exactly JSON.stringify(job).
 */
async function* jobsOf(plan: Plan, ctx: Context): AsyncIterable<EmittedJob[]> {
  const { source } = plan;
  let items: AsyncIterable<SourceAsset> =
    source.kind === 'query'
      ? queryAssets(ctx.catalog!, source.filter)
      : source.kind === 'csv'
        ? csvAssets(ctx.catalog!, source.file, ctx.notice)
        : prefixAssets(ctx.locator, source.url, plan.fileExt, ctx.notice);
  items = counted(items, ctx.summary);
  // AIND's pipeline order: drop nulls, keep the latest, unwind, group.
  if (plan.filterLatest) {
    if (plan.dropNullGroups) items = dropNullGroups(items, plan.filterBy);
    items = keepLatest(items, plan.filterLatest, plan.filterBy, [...plan.groupBy, ...plan.unwind]);
  }
  if (plan.unwind.length > 0) items = unwind(items, plan.unwind);
  if (plan.groupBy.length > 0 && plan.dropNullGroups) items = dropNullGroups(items, plan.groupBy);
  let units: AsyncIterable<Unit> = plan.groupBy.length > 0 ? groupAssets(items, plan.groupBy) : singleAssets(items);
  if (plan.fileExt !== undefined && source.kind !== 'prefix') units = withListedFiles(units, ctx.locator, plan.fileExt, ctx.notice);

  const head = `{"analysis":${JSON.stringify(plan.analysis.name)},"inputs":`;
  const middles = plan.sets.map((parameters) => `,"parameters":${JSON.stringify(parameters)},"group":${JSON.stringify(plan.group)}`);
  const tail = `,"provenance":${JSON.stringify(plan.provenance)}}`;
  for await (const unit of units) {
    const batch: EmittedJob[] = [];
    for (const part of plan.split ? splitByFile(unit) : [unit]) {
      const inputs = JSON.stringify(part.inputs);
      const metadata = part.groupMetadata ? `,"group_metadata":${JSON.stringify(part.groupMetadata)}` : '';
      for (const [k, parameters] of plan.sets.entries()) {
        const job: JobInput = {
          analysis: plan.analysis.name,
          inputs: part.inputs,
          parameters,
          group: plan.group,
          ...(part.groupMetadata && { group_metadata: part.groupMetadata }),
          provenance: plan.provenance,
        };
        batch.push({ job, line: head + inputs + middles[k] + metadata + tail });
      }
    }
    yield batch;
  }
}

async function* counted(items: AsyncIterable<SourceAsset>, summary: DispatchSummary): AsyncIterable<SourceAsset> {
  for await (const item of items) {
    summary.assets++;
    yield item;
  }
}

/**
 * --skip-done: the wrapper's own identity of each job (validated parameters, code version, output
 * location), then one metadata lookup per chunk; only `succeeded` identities are dropped, as in the gate.
 */
async function* withoutSucceeded(
  batches: AsyncIterable<EmittedJob[]>,
  analysis: Analysis,
  inputs: ObjectLocator,
  records: MetadataStore,
  allowDirty: boolean,
  summary: DispatchSummary,
): AsyncIterable<EmittedJob[]> {
  const preparer = new JobPreparer({ storeScheme: inputs.primary.scheme, allowDirty, inputs });
  let chunk: EmittedJob[] = [];
  let n = 0;
  const unfinished = async () => {
    const identities = await Promise.all(
      chunk.map(async ({ job }) => {
        const prepared = await preparer.prepareValid(`job ${++n}`, job, analysis);
        if (!prepared.ok) throw new DispatchError(`${prepared.where}: ${prepared.reason}`);
        return prepared.job.identity;
      }),
    );
    const found = await records.lookup(identities);
    const kept = chunk.filter((_, i) => found.get(identities[i]!)?.status !== 'succeeded');
    summary.skippedSucceeded += chunk.length - kept.length;
    chunk = [];
    return kept;
  };
  for await (const batch of batches) {
    chunk.push(...batch);
    if (chunk.length >= GATE_CHUNK) yield await unfinished();
  }
  yield await unfinished();
}

async function* upTo(batches: AsyncIterable<EmittedJob[]>, max: number, summary: DispatchSummary): AsyncIterable<EmittedJob[]> {
  let left = max;
  for await (const batch of batches) {
    if (batch.length >= left) {
      yield batch.slice(0, left);
      summary.maxJobsReached = true;
      return;
    }
    left -= batch.length;
    yield batch;
  }
}
