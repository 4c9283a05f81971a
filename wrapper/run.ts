import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { checkComputeName, openLauncher } from '../backends/compute/index.ts';
import { type MetadataStore, openDatabase } from '../backends/db/index.ts';
import { ObjectLocator, type ObjectStore, openStore, type StoreSettings } from '../backends/storage/index.ts';
import { CaasError } from '../models/caas-error.ts';
import type { Submitter } from '../models/record.ts';
import { AGENT_PROGRAM } from './agent-program.ts';
import { provideAnalysisBucket } from './analysis-bucket.ts';
import { type ExecuteContext, executeJob, type JobResult, leaseProblem } from './execute.ts';
import { GATE_CHUNK, type PlanEntry, planChunk } from './gate.ts';
import { admitToGroup } from './group-access.ts';
import { PlanBudgets } from './group-budget.ts';
import { readJobEntries } from './job-source.ts';
import { JobPreparer, type Prepared } from './prepare.ts';
import { RunList } from './run-list.ts';
import { forEachOfAtMost } from './worker-pool.ts';

export interface RunOptions {
  /** JSONL / JSON array file, folder of job files, or "-" for stdin. */
  source: string;
  /** The analysis of AIND dispatch models among the jobs, which do not name one (--analysis). */
  analysis?: string;
  home: string;
  storeUrl: string;
  dbUrl: string;
  compute: string;
  storeSettings?: StoreSettings;
  execute: boolean;
  concurrency: number;
  allowDirty: boolean;
  /** --force --reason: rerun succeeded identities as new, audited attempts. */
  forceReason?: string;
  leaseMs: number;
  statusIntervalMs?: number;
  /** Who the jobs run for (--user, CAAS_USER): checked against their group's users and kept with each attempt. */
  user?: string;
  stdin?: NodeJS.ReadableStream;
  /** Stop: start no more jobs, cancel the running ones, record them as failed, return. */
  signal?: AbortSignal;
}

export interface RunReporter {
  plan(entries: PlanEntry[]): void;
  warn(message: string): void;
  started?(entry: PlanEntry): void;
  result(result: JobResult): void;
}

export interface RunSummary {
  planned: Record<PlanEntry['action'], number>;
  results: Record<JobResult['outcome'], number>;
  /** 0 all good, 1 some job failed or was lost, 2 some job was invalid, 3 some job was refused by its group's budget or limit. */
  exitCode: 0 | 1 | 2 | 3;
}

export class RunRefused extends CaasError {}

/**
 * `caas run`: read → validate → identity → gate (one lookup per chunk) → plan; with execute, run
 * the RUN jobs. A dry run opens the store and the DB read-only and writes nothing anywhere.
 */
export async function runBatch(options: RunOptions, reporter: RunReporter): Promise<RunSummary> {
  // Before anything is opened or created, and in a dry run too: a typo must not surface only after
  // the buckets and the DB exist, nor pass a dry run that --execute then refuses.
  checkComputeName(options.compute);
  const tooShort = leaseProblem(options.leaseMs, options.statusIntervalMs);
  if (tooShort) throw new RunRefused(`--lease-seconds: ${tooShort}`);
  // Failures other runners record after this moment belong to this wave: the next run retries them.
  const plannedAt = new Date();
  const store = await openStore(options.storeUrl, { home: options.home, settings: options.storeSettings });
  // Only an executing run keeps its RUN jobs; a dry run's plan goes to the reporter, chunk by chunk, and is gone.
  const runList = options.execute ? new RunList() : undefined;
  try {
    // Planning reads only; the DB is opened for writing once there is something to run, after the
    // refusals below, so a refused or dry run leaves no file behind.
    const planningDb = await openDatabase(options.dbUrl, { home: options.home, readOnly: true });
    let planned: PlannedBatch;
    try {
      planned = await planJobs(options, store, planningDb, reporter, runList);
    } finally {
      await planningDb.close();
    }
    const summary: RunSummary = {
      planned: planned.counts,
      results: { succeeded: 0, failed: 0, skipped: 0, running: 0, 'failed-elsewhere': 0, lost: 0, refused: 0 },
      exitCode: 0,
    };
    checkDirtyAnalyses(planned.dirty, options, reporter);
    if (runList && runList.size > 0) {
      await executePlan(
        runList,
        { ...options, plannedAt },
        store,
        (result) => {
          summary.results[result.outcome]++;
          reporter.result(result);
        },
        reporter,
      );
    }
    summary.exitCode = exitCodeOf(summary);
    return summary;
  } finally {
    await runList?.close();
    await store.close();
  }
}

/** Invalid input first (2), then failures (1), then jobs their group refused (3): the next period or a freed slot may let them run. */
function exitCodeOf(summary: RunSummary): RunSummary['exitCode'] {
  if (summary.planned.INVALID > 0) return 2;
  if (summary.results.failed > 0 || summary.results.lost > 0) return 1;
  return summary.planned.REFUSED > 0 || summary.results.refused > 0 ? 3 : 0;
}

function submitterOf(options: RunOptions): Submitter | undefined {
  return options.user ? { user: options.user, via: 'declared' } : undefined;
}

/** What planning keeps of a batch once its chunks went to the reporter: counts, and the analyses with uncommitted changes. */
interface PlannedBatch {
  counts: RunSummary['planned'];
  /** Per analysis folder with uncommitted changes: the files, and how many of its jobs are to run. */
  dirty: Map<string, { files: string[]; toRun: number }>;
}

/**
 * read → validate → group → identity → gate, one DB lookup per chunk of jobs; the reporter sees each
 * chunk's plan, and the RUN entries go to `runList` (when executing). Nothing else of a chunk is
 * kept, so planning holds one chunk of prepared jobs (and the identities seen, for duplicates)
 * however long the batch.
 */
async function planJobs(
  options: RunOptions,
  store: ObjectStore,
  db: MetadataStore,
  reporter: RunReporter,
  runList: RunList | undefined,
): Promise<PlannedBatch> {
  const inputs = new ObjectLocator(store, { home: options.home, settings: options.storeSettings });
  const preparer = new JobPreparer({ storeScheme: store.scheme, allowDirty: options.allowDirty, inputs, aindAnalysis: options.analysis });
  const budgets = new PlanBudgets(db, (message) => reporter.warn(message));
  const planned: PlannedBatch = { counts: { RUN: 0, SKIP: 0, RUNNING: 0, INVALID: 0, REFUSED: 0 }, dirty: new Map() };
  const seen = new Map<string, string>();
  let chunk: Prepared[] = [];
  const flush = async () => {
    const entries = await budgets.review(await planChunk(chunk, db, { force: options.forceReason !== undefined, seen }));
    chunk = [];
    reporter.plan(entries);
    for (const entry of entries) {
      planned.counts[entry.action]++;
      tallyDirty(planned.dirty, entry);
    }
    await runList?.add(entries);
  };
  for await (const entry of readJobEntries(options.source, options.stdin as never)) {
    chunk.push(admitToGroup(await preparer.prepare(entry), submitterOf(options)));
    if (chunk.length >= GATE_CHUNK) await flush();
  }
  await flush();
  await inputs.close();
  return planned;
}

function tallyDirty(dirty: PlannedBatch['dirty'], entry: PlanEntry): void {
  if (!entry.job?.code.dirtyFiles.length) return;
  const seen = dirty.get(entry.job.analysis.dir) ?? { files: entry.job.code.dirtyFiles, toRun: 0 };
  if (entry.action === 'RUN') seen.toRun++;
  dirty.set(entry.job.analysis.dir, seen);
}

/**
 * Uncommitted changes in an analysis folder: refused with --execute (unless --allow-dirty), a
 * warning otherwise. Also when nothing is to run: a job planned as SKIP was matched against the
 * committed code, so changes not yet committed would otherwise go unnoticed ("all done").
 */
function checkDirtyAnalyses(dirty: PlannedBatch['dirty'], options: RunOptions, reporter: RunReporter): void {
  for (const [dir, { files, toRun }] of dirty) {
    const message = `analysis folder ${dir} has uncommitted changes: ${files.join(', ')}`;
    if (options.allowDirty) {
      reporter.warn(`${message} (--allow-dirty: the diff's sha256 is part of the identity)`);
    } else if (toRun === 0) {
      reporter.warn(
        `${message}: no job of it is to run, each matched a record of the committed code; the changes are in no identity yet: commit them (new identities), or pass --allow-dirty`,
      );
    } else if (options.execute) {
      throw new RunRefused(
        `${message}\nCommit them (the identity records the commit), or pass --allow-dirty to run with a hash of the diff in the identity.`,
      );
    } else {
      reporter.warn(`${message}: --execute will refuse until they are committed or --allow-dirty is given`);
    }
  }
}

/** Runs the RUN jobs, `concurrency` at a time, each claimed, launched and recorded by executeJob. */
async function executePlan(
  toRun: RunList,
  options: RunOptions & { plannedAt: Date },
  store: ObjectStore,
  onResult: (result: JobResult) => void,
  reporter: RunReporter,
): Promise<void> {
  // The launcher first: what it cannot work with (the store, a blueprint setting it needs) is
  // refused before a bucket is made or a job claimed, so nothing is left half-done.
  const launcher = await openLauncher(options.compute, {
    storeUrl: store.url,
    // From an empty environment: what reaches the machine is the store's endpoint, never this runner's credentials.
    storeEnvironment: store.environment({}),
    agent: AGENT_PROGRAM,
  });
  const refusals = new Map<string, string>();
  for (const { analysis } of toRun.analyses.values()) {
    const refused = launcher.refuse?.(analysis.name, analysis.blueprint);
    if (refused) refusals.set(analysis.name, refused);
  }
  if (refusals.size > 0) {
    await launcher.close();
    throw new RunRefused([...refusals.values()].join('\n'));
  }
  let db: MetadataStore | undefined;
  try {
    await ensureBuckets(store, toRun.buckets);
    db = await openDatabase(options.dbUrl, { home: options.home });
    const ctx: ExecuteContext = {
      db,
      store,
      launcher,
      owner: { host: hostname(), pid: process.pid, run: randomUUID() },
      leaseMs: options.leaseMs,
      force: options.forceReason,
      signal: options.signal,
      storeSettings: options.storeSettings,
      statusIntervalMs: options.statusIntervalMs,
      plannedAt: options.plannedAt,
      submitter: submitterOf(options),
      note: (line) => reporter.warn(line),
    };
    await forEachOfAtMost(
      toRun.entries(),
      options.concurrency,
      async (entry) => {
        reporter.started?.(entry);
        let result: JobResult;
        try {
          result = await executeJob(entry.job!, ctx);
        } catch (error) {
          // A store or DB failure on one job must not stop the others (nor close the DB under them).
          const reason = `caas could not record this job: ${(error as Error).message}; its lease will expire and the next run retries it`;
          result = { where: entry.where, identity: entry.job!.identity, outcome: 'lost', reason };
        }
        onResult(result);
      },
      () => options.signal?.aborted === true,
    );
  } finally {
    await launcher.close();
    await db?.close();
  }
}

/** A missing S3 bucket is refused up front rather than failing every job. */
async function ensureBuckets(store: ObjectStore, buckets: Set<string>): Promise<void> {
  for (const bucket of buckets) {
    const refusal = await provideAnalysisBucket(store, bucket);
    if (refusal) throw new RunRefused(refusal);
  }
}
