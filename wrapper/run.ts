import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { checkComputeName, type Launcher, openLauncher } from '../backends/compute/index.ts';
import { type MetadataStore, openDatabase } from '../backends/db/index.ts';
import { ObjectLocator, type ObjectStore, openStore, type StoreSettings } from '../backends/storage/index.ts';
import type { Analysis } from '../models/analysis.ts';
import { CaasError } from '../models/caas-error.ts';
import type { Owner, Submitter } from '../models/record.ts';
import { AGENT_PROGRAM } from './agent-program.ts';
import { provideAnalysisBucket } from './analysis-bucket.ts';
import { type ExecuteContext, executeJob, type JobResult, leaseProblem } from './execute.ts';
import { GATE_CHUNK, type PlanEntry, planChunk } from './gate.ts';
import { admitToGroup } from './group-access.ts';
import { PlanBudgets } from './group-budget.ts';
import { type JobEntry, readJobEntries } from './job-source.ts';
import { JobPreparer, type Prepared, type PreparedJob } from './prepare.ts';
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

function submitterOf(options: Pick<RunOptions, 'user'>): Submitter | undefined {
  return options.user ? { user: options.user, via: 'declared' } : undefined;
}

/** What planning keeps of a batch once its chunks went to the reporter: counts, and the analyses with uncommitted changes. */
interface PlannedBatch {
  counts: RunSummary['planned'];
  /** Per analysis folder with uncommitted changes: the files, and how many of its jobs are to run. */
  dirty: Map<string, { files: string[]; toRun: number }>;
}

/**
 * What planning needs of the run's options; a service planning a request also says who sent it
 * (`submitter`, over `user`) and the group of its jobs that name none (`defaultGroup`).
 */
export type PlanSettings = Pick<RunOptions, 'home' | 'storeSettings' | 'allowDirty' | 'analysis' | 'forceReason' | 'user'> & {
  submitter?: Submitter;
  defaultGroup?: string;
};

/**
 * `caas run`'s plan: each chunk goes to the reporter, is counted, and its RUN entries go to `runList`
 * (when executing). Nothing else of a chunk is kept, so planning holds one chunk of prepared jobs
 * (and the identities seen, for duplicates) however long the batch.
 */
async function planJobs(
  options: RunOptions,
  store: ObjectStore,
  db: MetadataStore,
  reporter: RunReporter,
  runList: RunList | undefined,
): Promise<PlannedBatch> {
  const planned: PlannedBatch = { counts: { RUN: 0, SKIP: 0, RUNNING: 0, INVALID: 0, REFUSED: 0 }, dirty: new Map() };
  await planChunks(readJobEntries(options.source, options.stdin as never), options, store, db, reporter.warn, async (entries) => {
    reporter.plan(entries);
    for (const entry of entries) {
      planned.counts[entry.action]++;
      tallyDirty(planned.dirty, entry);
    }
    await runList?.add(entries);
  });
  return planned;
}

/**
 * Plans a few job entries (a request body) and returns them all: `caas serve` plans through here,
 * with the same chunks as `caas run`, so the two never disagree about a job.
 */
export async function planEntries(
  entries: AsyncIterable<JobEntry> | Iterable<JobEntry>,
  options: PlanSettings,
  store: ObjectStore,
  db: MetadataStore,
  reporter: Pick<RunReporter, 'plan' | 'warn'>,
): Promise<PlanEntry[]> {
  const plan: PlanEntry[] = [];
  await planChunks(entries, options, store, db, reporter.warn, (chunk) => {
    reporter.plan(chunk);
    plan.push(...chunk);
  });
  return plan;
}

/**
 * read → validate → group → identity → gate, one DB lookup per chunk of jobs, then the groups'
 * budgets; each chunk's entries go to `onChunk` and are not kept here.
 */
async function planChunks(
  entries: AsyncIterable<JobEntry> | Iterable<JobEntry>,
  options: PlanSettings,
  store: ObjectStore,
  db: MetadataStore,
  warn: (message: string) => void,
  onChunk: (entries: PlanEntry[]) => Promise<void> | void,
): Promise<void> {
  const inputs = new ObjectLocator(store, { home: options.home, settings: options.storeSettings });
  const preparer = new JobPreparer({
    storeScheme: store.scheme,
    allowDirty: options.allowDirty,
    inputs,
    aindAnalysis: options.analysis,
    defaultGroup: options.defaultGroup,
  });
  const budgets = new PlanBudgets(db, (message) => warn(message));
  const seen = new Map<string, string>();
  let chunk: Prepared[] = [];
  const flush = async () => {
    const planned = await budgets.review(await planChunk(chunk, db, { force: options.forceReason !== undefined, seen }));
    chunk = [];
    await onChunk(planned);
  };
  try {
    for await (const entry of entries) {
      chunk.push(admitToGroup(await preparer.prepare(entry), options.submitter ?? submitterOf(options)));
      if (chunk.length >= GATE_CHUNK) await flush();
    }
    await flush();
  } finally {
    await inputs.close();
  }
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
  const runner = await JobRunner.open(options, store, (line) => reporter.warn(line));
  try {
    const refusals = new Set([...toRun.analyses.values()].flatMap(({ analysis }) => runner.refusal(analysis) ?? []));
    if (refusals.size > 0) throw new RunRefused([...refusals].join('\n'));
    await runner.ready(toRun.buckets);
    await forEachOfAtMost(
      toRun.entries(),
      options.concurrency,
      async (entry) => {
        reporter.started?.(entry);
        onResult(await runner.execute(entry.job!, options.signal));
      },
      () => options.signal?.aborted === true,
    );
  } finally {
    await runner.close();
  }
}

/** What a runner needs of the run's options to execute jobs. */
export type RunnerSettings = Pick<
  RunOptions,
  'compute' | 'home' | 'dbUrl' | 'leaseMs' | 'forceReason' | 'storeSettings' | 'statusIntervalMs' | 'user'
> & { plannedAt?: Date };

/**
 * One runner's means to execute jobs: its launcher, its metadata DB and its owner identity. `caas
 * run` uses one per batch and `caas serve` one per server, both through executeJob: claim, launch,
 * verify, record, exactly as each other.
 */
export class JobRunner {
  readonly owner: Owner = { host: hostname(), pid: process.pid, run: randomUUID() };
  private db: MetadataStore | undefined;
  /** The one opening of the DB: jobs that start together must share it, not each open (and leak) a handle. */
  private dbOpening: Promise<MetadataStore> | undefined;
  private readonly buckets = new Set<string>();

  private constructor(
    private readonly options: RunnerSettings,
    private readonly store: ObjectStore,
    private readonly launcher: Launcher,
    private readonly note: (line: string) => void,
  ) {}

  static async open(options: RunnerSettings, store: ObjectStore, note: (line: string) => void): Promise<JobRunner> {
    const launcher = await openLauncher(options.compute, {
      storeUrl: store.url,
      // From an empty environment: what reaches the machine is the store's endpoint, never this runner's credentials.
      storeEnvironment: store.environment({}),
      agent: AGENT_PROGRAM,
    });
    return new JobRunner(options, store, launcher, note);
  }

  /** Why the launcher cannot run an analysis, if it cannot (a blueprint setting it needs). */
  refusal(analysis: Pick<Analysis, 'name' | 'blueprint'>): string | undefined {
    return this.launcher.refuse?.(analysis.name, analysis.blueprint);
  }

  /** Makes sure the buckets exist (a missing S3 bucket is refused, RunRefused) and opens the DB for writing. */
  async ready(buckets: Iterable<string>): Promise<void> {
    const missing = [...buckets].filter((bucket) => !this.buckets.has(bucket));
    await ensureBuckets(this.store, new Set(missing));
    for (const bucket of missing) this.buckets.add(bucket);
    this.dbOpening ??= openDatabase(this.options.dbUrl, { home: this.options.home }).catch((error: unknown) => {
      this.dbOpening = undefined;
      throw error;
    });
    this.db = await this.dbOpening;
  }

  /**
   * Claims, runs and records one job; a store or DB failure is a `lost` result, not a throw, so the
   * other jobs go on. `submitter`: who this job runs for, when not the runner's --user (a service's token).
   */
  async execute(job: PreparedJob, signal?: AbortSignal, submitter?: Submitter): Promise<JobResult> {
    try {
      await this.ready([job.bucket]);
    } catch (error) {
      // A missing bucket is this job's answer, before any claim: trying again would be refused the same way.
      if (error instanceof RunRefused) return { where: job.where, identity: job.identity, outcome: 'refused', reason: error.message };
      throw error;
    }
    const ctx: ExecuteContext = {
      db: this.db!,
      store: this.store,
      launcher: this.launcher,
      owner: this.owner,
      leaseMs: this.options.leaseMs,
      force: this.options.forceReason,
      signal,
      storeSettings: this.options.storeSettings,
      statusIntervalMs: this.options.statusIntervalMs,
      plannedAt: this.options.plannedAt,
      submitter: submitter ?? submitterOf(this.options),
      note: this.note,
    };
    try {
      return await executeJob(job, ctx);
    } catch (error) {
      // A store or DB failure on one job must not stop the others (nor close the DB under them).
      const reason = `caas could not record this job: ${(error as Error).message}; its lease will expire and the next run retries it`;
      return { where: job.where, identity: job.identity, outcome: 'lost', reason };
    }
  }

  async close(): Promise<void> {
    await this.launcher.close();
    // A DB still opening (a stop during the first job's ready()) is closed once it is open.
    const db = this.db ?? (await this.dbOpening?.catch(() => undefined));
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
