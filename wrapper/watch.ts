import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { checkComputeName, type Launcher, openLauncher } from '../backends/compute/index.ts';
import { type MetadataStore, openDatabase } from '../backends/db/index.ts';
import {
  getText,
  type ObjectInfo,
  ObjectLocator,
  type ObjectStore,
  objectUrl,
  openStore,
  type StoreSettings,
} from '../backends/storage/index.ts';
import type { Analysis } from '../models/analysis.ts';
import { DATASET_FOLDER_MARK, statusKey } from '../models/bucket-contract.ts';
import { CaasError } from '../models/caas-error.ts';
import type { MetadataRecord, Owner, Submitter } from '../models/record.ts';
import { AGENT_PROGRAM } from './agent-program.ts';
import { analysisOwningBucket, provideAnalysisBucket } from './analysis-bucket.ts';
import { CertificateNotes, oneLine } from './certificate-notes.ts';
import { readCodeVersion } from './code-version.ts';
import { type ExecuteContext, executeJob, type JobPlacement, leaseProblem } from './execute.ts';
import { planChunk } from './gate.ts';
import { userRefusal } from './group-access.ts';
import { JobPreparer } from './prepare.ts';
import {
  type FolderKeys,
  folderKeys,
  isSubmitKey,
  readSubmitObject,
  rejectionNoteKey,
  type SubmitRead,
  type SubmittedDataset,
  submitGroup,
  type Validation,
  type ValidSubmission,
  validateSubmission,
} from './submission.ts';
import { claimJobFolder, keepMarker, newMarker, settledAnswer } from './submission-claim.ts';
import { type AnswerBucket, answerFromRecord, type DatasetResult, writeWatcherStatus } from './watcher-answers.ts';

export interface WatchOptions {
  bucket: string;
  home: string;
  storeUrl: string;
  dbUrl: string;
  compute: string;
  storeSettings?: StoreSettings;
  /** Submissions processed at a time. */
  concurrency: number;
  leaseMs: number;
  allowDirty: boolean;
  statusIntervalMs?: number;
  roots?: string[];
  log?: (line: string) => void;
  /** Use this launcher instead of opening `compute` (tests count launches with it). */
  launcher?: Launcher;
  /** Use this store instead of opening `storeUrl` (tests interleave another watcher's writes with it). */
  store?: ObjectStore;
  /** How long to wait before asking again about a job another runner holds. */
  retryMs?: number;
}

export type SubmissionOutcomeKind =
  /** Ran (or recovered) and verified / did not verify. */
  | 'succeeded'
  | 'failed'
  /** Identical data and config had succeeded before: linked, not run. */
  | 'answered'
  /** Invalid: certificate line and end.txt written, nothing ran. */
  | 'rejected'
  /** The job folder belongs to another job: watcher log and a note next to the submit file only. */
  | 'conflict'
  /** Already processed (end.txt exists). */
  | 'done'
  /** Another live watcher holds the claim. */
  | 'elsewhere'
  /** Not a submission this watcher may answer (bad group folder name, file gone). */
  | 'ignored'
  /** Something outside the submission went wrong (store, git); tried again later. */
  | 'error';

export interface SubmissionOutcome {
  key: string;
  outcome: SubmissionOutcomeKind;
  reason: string;
  /** URL of the job folder the answer is in. */
  folder?: string;
  /** For 'elsewhere': when the other claim's lease runs out. */
  retryAt?: number;
}

export class WatchRefused extends CaasError {}

/**
 * Turns submit files in an analysis bucket into jobs, each exactly once: the first writer of the
 * job folder's logs/submission.json (an atomic put-if-absent) owns the submission, keeps a lease on
 * it while it works, and answers in that folder: a rejection, a link to an identical earlier result,
 * or the job itself through the same gate, claim and verification as `caas run`.
 */
export class SubmissionWatcher {
  readonly owner: Owner = { host: hostname(), pid: process.pid, run: randomUUID() };
  private readonly settled = new Map<string, string>();
  private readonly retryAt = new Map<string, number>();
  private readonly inFlight = new Set<string>();
  private readonly answers: AnswerBucket;
  private readonly ctx: ExecuteContext;
  private readonly log: (line: string) => void;
  /** Where a submission's data is listed when it names a folder. */
  private readonly inputs: ObjectLocator;

  private constructor(
    readonly analysis: Analysis,
    readonly store: ObjectStore,
    readonly db: MetadataStore,
    readonly launcher: Launcher,
    private readonly options: WatchOptions,
  ) {
    this.ctx = {
      db,
      store,
      launcher,
      owner: this.owner,
      leaseMs: options.leaseMs,
      storeSettings: options.storeSettings,
      statusIntervalMs: options.statusIntervalMs,
      note: (line) => this.log(`${new Date().toISOString()} ${line}`),
    };
    this.log = options.log ?? ((line) => process.stdout.write(`${line}\n`));
    this.inputs = new ObjectLocator(store, { home: options.home, settings: options.storeSettings });
    this.answers = { store, bucket: options.bucket, notes: new CertificateNotes(store, options.bucket) };
  }

  get bucket(): string {
    return this.options.bucket;
  }

  /** Opens the store, the DB and the launcher; makes a missing folder bucket, refuses a missing S3 bucket (as `caas run` does). */
  static async open(options: WatchOptions): Promise<SubmissionWatcher> {
    // Before the bucket and the DB are created below.
    if (!options.launcher) checkComputeName(options.compute);
    const tooShort = leaseProblem(options.leaseMs, options.statusIntervalMs);
    if (tooShort) throw new WatchRefused(`--lease-seconds: ${tooShort}`);
    const analysis = await analysisOwningBucket(options.bucket, options.roots);
    if (typeof analysis === 'string') throw new WatchRefused(analysis);
    const code = await readCodeVersion(analysis.dir, { allowDirty: options.allowDirty });
    if (code.dirtyFiles.length > 0 && !options.allowDirty) {
      throw new WatchRefused(
        `analysis folder ${analysis.dir} has uncommitted changes: ${code.dirtyFiles.join(', ')}\n` +
          'Commit them (the identity records the commit), or pass --allow-dirty to run with a hash of the diff in the identity.',
      );
    }
    const store = options.store ?? (await openStore(options.storeUrl, { home: options.home, settings: options.storeSettings }));
    let launcher: Launcher | undefined;
    try {
      // The launcher before the bucket and the DB: what it cannot work with (the store, a blueprint
      // setting it needs) is refused before anything is created, as `caas run` does.
      launcher =
        options.launcher ??
        (await openLauncher(options.compute, {
          storeUrl: store.url,
          // From an empty environment: the store's endpoint reaches the machine, never this watcher's credentials.
          storeEnvironment: store.environment({}),
          agent: AGENT_PROGRAM,
        }));
      const refused = launcher.refuse?.(analysis.name, analysis.blueprint);
      if (refused) throw new WatchRefused(refused);
      const refusal = await provideAnalysisBucket(store, options.bucket);
      if (refusal) throw new WatchRefused(refusal);
      const db = await openDatabase(options.dbUrl, { home: options.home });
      if (!store.capabilities.has('atomic-put-if-absent')) {
        // The marker that claims a submission's folder is written put-if-absent; the DB's claim still runs each job once.
        (options.log ?? ((line) => process.stderr.write(`${line}\n`)))(
          `caas: warning: ${store.url} cannot write an object only if it is absent in one step (a server that ignores If-None-Match): two watchers of bucket ${options.bucket} could both take one submission's folder; run one watcher per bucket`,
        );
      }
      return new SubmissionWatcher(analysis, store, db, launcher, options);
    } catch (error) {
      if (launcher && !options.launcher) await launcher.close();
      if (!options.store) await store.close();
      throw error;
    }
  }

  async close(): Promise<void> {
    await this.inputs.close();
    if (!this.options.launcher) await this.launcher.close();
    await this.db.close();
    if (!this.options.store) await this.store.close();
  }

  /** Submit files not settled in this process yet, in key order. */
  async pending(): Promise<ObjectInfo[]> {
    const found: ObjectInfo[] = [];
    const now = Date.now();
    for await (const info of this.store.list(this.bucket, '')) {
      if (!isSubmitKey(info.key) || this.inFlight.has(info.key)) continue;
      if (this.settled.get(info.key) === info.etag || (this.retryAt.get(info.key) ?? 0) > now) continue;
      found.push(info);
    }
    return found;
  }

  /** `--once`: everything pending now, `concurrency` at a time, then return. */
  async pollOnce(): Promise<SubmissionOutcome[]> {
    const queue = await this.pending();
    const outcomes: SubmissionOutcome[] = [];
    const worker = async () => {
      for (let info = queue.shift(); info; info = queue.shift()) outcomes.push(await this.handle(info));
    };
    await Promise.all(Array.from({ length: Math.max(1, this.options.concurrency) }, worker));
    return outcomes;
  }

  /**
   * Polls every `intervalMs` until the signal aborts, starting new submissions as slots free up
   * (a long job never holds back the submissions behind it beyond the concurrency). On abort it
   * stops looking and waits for the submissions in progress.
   */
  async run(intervalMs: number, signal: AbortSignal): Promise<void> {
    const queue: ObjectInfo[] = [];
    const running = new Set<Promise<unknown>>();
    const pump = () => {
      while (!signal.aborted && running.size < this.options.concurrency && queue.length > 0) {
        const task: Promise<unknown> = this.handle(queue.shift()!).finally(() => {
          running.delete(task);
          pump();
        });
        running.add(task);
      }
    };
    while (!signal.aborted) {
      try {
        for (const info of await this.pending()) {
          if (queue.some((q) => q.key === info.key)) continue;
          queue.push(info);
        }
      } catch (error) {
        this.log(`${new Date().toISOString()} listing ${this.bucket} failed (trying again): ${(error as Error).message}`);
      }
      pump();
      await sleep(intervalMs, undefined, { signal }).catch(() => {});
    }
    await Promise.all(running);
  }

  private async handle(info: ObjectInfo): Promise<SubmissionOutcome> {
    this.inFlight.add(info.key);
    try {
      const outcome = await this.process(info.key);
      if (outcome.outcome === 'elsewhere') this.retryAt.set(info.key, outcome.retryAt ?? Date.now() + this.options.leaseMs);
      else if (outcome.outcome === 'error') this.retryAt.set(info.key, Date.now() + (this.options.retryMs ?? 5000));
      else this.settled.set(info.key, info.etag);
      return outcome;
    } finally {
      this.inFlight.delete(info.key);
    }
  }

  /**
   * One submit file, from claim to answer. Also what the S3 event handler calls, with the
   * submitter S3 reported: only then are the group's users applied (a listing says nobody's name).
   */
  async process(key: string, submitter?: Submitter): Promise<SubmissionOutcome> {
    const group = submitGroup(key);
    // A folder name that could not be a group is answered nowhere: writing under it is not safe.
    if (!group) return this.concluded(key, 'ignored', 'the folder above submissions/ is not a valid group name');
    try {
      const read = await readSubmitObject(this.store, this.bucket, key, group);
      if (!read) return this.concluded(key, 'ignored', 'the submit file is gone');
      const folder = folderKeys(this.bucket, group, read.timestamp);
      // Settled submissions are recognised before asking git anything: a restart rereads them all.
      const settled = await settledAnswer(this.store, this.bucket, folder, read);
      if (settled !== undefined) return this.concluded(key, 'done', settled, folder);
      // One preparer per submission: git is asked once, for this check and for the identities.
      const preparer = new JobPreparer({
        storeScheme: this.store.scheme,
        allowDirty: this.options.allowDirty,
        roots: this.options.roots,
        inputs: this.inputs,
      });
      const code = await preparer.codeStateOf(this.analysis.dir);
      if (code.dirtyFiles.length > 0 && !this.options.allowDirty) {
        return this.concluded(
          key,
          'error',
          `analysis folder ${this.analysis.dir} has uncommitted changes (${code.dirtyFiles.join(', ')}): commit them or restart with --allow-dirty`,
        );
      }
      const marker = newMarker(read, this.owner, this.options.leaseMs);
      const claim = await claimJobFolder(this.store, this.bucket, folder, marker, this.options.leaseMs);
      if (claim.kind === 'done') return this.concluded(key, 'done', 'already processed', folder);
      if (claim.kind === 'elsewhere') return this.concluded(key, 'elsewhere', 'another watcher is processing it', folder, claim.until);
      if (claim.kind === 'conflict') {
        await this.store.put(
          this.bucket,
          rejectionNoteKey(key),
          `${new Date().toISOString()} caas watcher: not processed: ${claim.reason}\n`,
        );
        return this.concluded(key, 'conflict', claim.reason, folder);
      }
      const keepalive = keepMarker(this.store, this.bucket, folder, marker, this.options.leaseMs);
      try {
        const answer = await this.answer(read, folder, preparer, submitter);
        return this.concluded(key, answer.outcome, answer.reason, folder);
      } finally {
        keepalive.stop();
      }
    } catch (error) {
      return this.concluded(key, 'error', `could not process (will try again): ${(error as Error).message}`);
    }
  }

  /** What a claimed submission's folder answers: the rejection, or the outcome of its datasets. */
  private async answer(
    read: SubmitRead,
    folder: FolderKeys,
    preparer: JobPreparer,
    submitter?: Submitter,
  ): Promise<{ outcome: SubmissionOutcomeKind; reason: string }> {
    // A submitter the group does not list learns nothing more about the submission.
    const notListed = userRefusal(this.analysis, read.group, submitter, false);
    const validation: Validation =
      notListed === undefined
        ? await validateSubmission(read, { store: this.store, bucket: this.bucket, analysis: this.analysis, preparer })
        : { ok: false, reason: notListed };
    if (!validation.ok) {
      const reason = oneLine(validation.reason);
      await this.note(folder, `submission ${read.key} rejected: ${reason}`);
      await this.store.put(this.bucket, folder.end, `REJECTED\n${reason}\n`);
      return { outcome: 'rejected', reason };
    }
    const submission = validation.submission;
    const result =
      submission.datasets.length === 1
        ? await this.runDataset(submission, submission.datasets[0]!, folder, submitter)
        : await this.runDatasets(submission, read.group, folder, submitter);
    return { outcome: result.outcome, reason: result.results ? `${result.reason}; results at ${result.results}` : result.reason };
  }

  /** The outcome of one submit file, logged unless it needed nothing of this watcher. */
  private concluded(key: string, outcome: SubmissionOutcomeKind, reason: string, folder?: FolderKeys, retryAt?: number): SubmissionOutcome {
    const result: SubmissionOutcome = {
      key,
      outcome,
      reason,
      ...(folder ? { folder: objectUrl(this.store.scheme, this.bucket, folder.prefix) } : {}),
      ...(retryAt ? { retryAt } : {}),
    };
    if (outcome !== 'done' && outcome !== 'elsewhere') this.log(`${new Date().toISOString()} ${key}: ${outcome}: ${reason}`);
    return result;
  }

  /**
   * One dataset through the gate: a succeeded identity is answered from its record; one running
   * elsewhere is waited for; anything else runs in this folder (executeJob claims it atomically).
   */
  private async runDataset(
    submission: ValidSubmission,
    dataset: SubmittedDataset,
    folder: FolderKeys,
    submitter?: Submitter,
  ): Promise<DatasetResult> {
    const placement: JobPlacement = { timestamp: folder.timestamp, submitExists: true, configCopyName: submission.configname };
    const job = dataset.prepared;
    // A failure recorded after this moment is another job's of the same wave, not one to retry now.
    const plannedAt = new Date();
    for (;;) {
      const [entry] = await planChunk([{ ok: true, job }], this.db, {});
      if (entry?.action === 'SKIP' && entry.record) {
        // Our own earlier attempt (a restarted watcher) already answered here.
        if (isFolderOf(entry.record, this.bucket, job.group, folder.timestamp)) {
          return { outcome: 'succeeded', reason: `recorded earlier as ${entry.record._id}`, results: entry.record.job?.results };
        }
        return answerFromRecord(this.answers, folder, dataset, entry.record);
      }
      if (entry?.action === 'RUNNING') {
        await sleep(this.options.retryMs ?? 2000);
        continue;
      }
      const result = await executeJob(job, { ...this.ctx, plannedAt, ...(submitter ? { submitter } : {}) }, placement);
      if (result.outcome === 'skipped') continue;
      if (result.outcome === 'refused') return this.refuseDataset(folder, dataset, result.reason);
      if (result.outcome === 'failed-elsewhere') {
        // The same data and config failed just now in another job: this submission gets that answer,
        // unless an agent already answered in this folder (a watcher before us ran it here).
        if (!(await this.store.head(this.bucket, folder.end))) {
          await this.note(folder, `identical data and config ${result.reason}`);
          await writeWatcherStatus(this.answers, folder, dataset, 'FAILED', result.reason);
          await this.store.put(this.bucket, folder.end, `FAILED\n${oneLine(result.reason)}\n`);
        }
        return { outcome: 'failed', reason: result.reason, results: result.results };
      }
      // 'lost': another runner took the identity over; wait for its answer and link it here.
      if (result.outcome === 'running' || result.outcome === 'lost') {
        await sleep(this.options.retryMs ?? 2000);
        continue;
      }
      const ended = await this.text(folder.end);
      if (result.outcome === 'failed' && (ended === undefined || ended.startsWith('SUCCESS'))) {
        // The agent never finished (or its outputs failed verification): close the folder so clients stop waiting.
        await this.note(folder, `job failed: ${result.reason}`);
        if (ended === undefined) await writeWatcherStatus(this.answers, folder, dataset, 'FAILED', result.reason);
        await this.store.put(this.bucket, folder.end, `FAILED\n${oneLine(result.reason)}\n`);
      }
      if (result.outcome === 'succeeded' && ended === undefined) {
        // Recovered from an earlier attempt's folder elsewhere: answer here from the record.
        const record = await this.db.get(job.identity);
        if (record) return answerFromRecord(this.answers, folder, dataset, record);
      }
      return {
        outcome: result.outcome === 'succeeded' ? 'succeeded' : 'failed',
        reason: `${result.outcome === 'succeeded' ? 'recorded' : result.outcome} as ${job.identity} (attempt ${result.attempt ?? '?'}): ${result.reason}`,
        results: result.results,
      };
    }
  }

  /**
   * A list of datanames: one job per dataset, each in its own folder job__{bucket}_{timestamp}~{n}
   * (the agent's certificate, manifest and end.txt are per job and would collide in one folder;
   * "~" cannot appear in a submitted timestamp (DATASET_FOLDER_MARK), so these folders never belong to another
   * submission). The submission's own folder gets one status file per dataset, a certificate line
   * per dataset, and end.txt when all are over.
   */
  private async runDatasets(submission: ValidSubmission, group: string, folder: FolderKeys, submitter?: Submitter): Promise<DatasetResult> {
    const { datasets } = submission;
    const subs = datasets.map((_, i) => folderKeys(this.bucket, group, `${folder.timestamp}${DATASET_FOLDER_MARK}${i + 1}`));
    await this.note(
      folder,
      `${datasets.length} datasets, one job each: ${subs.map((s, i) => `${datasets[i]!.dataname} in ${s.prefix}`).join(', ')}`,
    );
    const results: DatasetResult[] = new Array(datasets.length);
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < datasets.length; i = next++) {
        const dataset = datasets[i]!;
        const sub = subs[i]!;
        const previous = await this.text(sub.end);
        const result: DatasetResult = previous
          ? { outcome: previous.startsWith('SUCCESS') ? 'succeeded' : 'failed', reason: previous.split('\n')[1] ?? '' }
          : await this.runDataset(submission, dataset, sub, submitter);
        results[i] = result;
        const status = await this.text(statusKey(sub.logs, dataset.key));
        if (status !== undefined) await this.store.put(this.bucket, statusKey(folder.logs, dataset.key), status);
        await this.note(folder, `dataset ${i + 1} ${dataset.dataname}: ${result.outcome}: ${result.reason}; job folder ${sub.prefix}`);
      }
    };
    const limit = Math.min(datasets.length, this.analysis.blueprint.deploy_limit);
    await Promise.all(Array.from({ length: limit }, worker));
    const failed = results.filter((r) => r.outcome === 'failed' || r.outcome === 'rejected').length;
    const summary = failed === 0 ? `all ${datasets.length} datasets succeeded` : `${failed} of ${datasets.length} datasets failed`;
    await this.store.put(this.bucket, folder.end, `${failed === 0 ? 'SUCCESS' : 'FAILED'}\n${summary}\n`);
    return {
      outcome: failed === 0 ? 'succeeded' : 'failed',
      reason: summary,
      results: objectUrl(this.store.scheme, this.bucket, folder.prefix),
    };
  }

  /** The group's budget or instance_limit kept the job from starting: the folder says so and is closed. */
  private async refuseDataset(folder: FolderKeys, dataset: SubmittedDataset, reason: string): Promise<DatasetResult> {
    await this.note(folder, `not started: ${reason}`);
    await writeWatcherStatus(this.answers, folder, dataset, 'FAILED', reason);
    await this.store.put(this.bucket, folder.end, `REJECTED\n${oneLine(reason)}\n`);
    return { outcome: 'rejected', reason };
  }

  /** A line of the folder's certificate: the watcher's account of what it did there. */
  private note(folder: FolderKeys, line: string): Promise<void> {
    return this.answers.notes.append(folder, line);
  }

  private text(key: string): Promise<string | undefined> {
    return getText(this.store, this.bucket, key);
  }
}

function isFolderOf(record: MetadataRecord, bucket: string, group: string, timestamp: string): boolean {
  return record.job?.bucket === bucket && record.job.group === group && record.job.timestamp === timestamp;
}
