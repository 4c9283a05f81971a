import { randomUUID } from 'node:crypto';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { analysisRoots, listAnalysisNames, loadAnalysis } from '../analyses/index.ts';
import { checkComputeName, type Launcher, openLauncher } from '../backends/compute/index.ts';
import { type MetadataStore, openDatabase } from '../backends/db/index.ts';
import { getText, type ObjectInfo, type ObjectStore, objectUrl, openStore } from '../backends/storage/index.ts';
import type { Analysis } from '../models/analysis.ts';
import { statusKey } from '../models/bucket-contract.ts';
import { CaasError } from '../models/caas-error.ts';
import type { MetadataRecord, Owner } from '../models/record.ts';
import type { StatusFile } from '../models/status.ts';
import { AGENT_PROGRAM } from './agent-program.ts';
import { provideAnalysisBucket } from './analysis-bucket.ts';
import { readCodeVersion } from './code-version.ts';
import { type ExecuteContext, executeJob, type JobPlacement, leaseProblem } from './execute.ts';
import { planChunk } from './gate.ts';
import { JobPreparer } from './prepare.ts';
import {
  type FolderKeys,
  folderKeys,
  isSubmitKey,
  MAX_SUBMIT_BYTES,
  parseMarker,
  readSubmit,
  rejectionNoteKey,
  type SubmissionMarker,
  type SubmitRead,
  type SubmittedDataset,
  submitGroup,
  type ValidSubmission,
  validateSubmission,
} from './submission.ts';

export interface WatchOptions {
  bucket: string;
  home: string;
  storeUrl: string;
  dbUrl: string;
  compute: string;
  s3Endpoint?: string;
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

type Claim = { kind: 'won' } | { kind: 'done' } | { kind: 'elsewhere'; until: number } | { kind: 'conflict'; reason: string };

interface DatasetResult {
  outcome: 'succeeded' | 'failed' | 'answered';
  reason: string;
  results?: string;
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
  /** The last note queued per certificate: notes to one folder append one after the other. */
  private readonly notes = new Map<string, Promise<void>>();
  private readonly ctx: ExecuteContext;
  private readonly log: (line: string) => void;

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
      s3Endpoint: options.s3Endpoint,
      statusIntervalMs: options.statusIntervalMs,
    };
    this.log = options.log ?? ((line) => process.stdout.write(`${line}\n`));
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
    const analysis = await analysisForBucket(options.bucket, options.roots);
    const code = await readCodeVersion(analysis.dir, { allowDirty: options.allowDirty });
    if (code.dirtyFiles.length > 0 && !options.allowDirty) {
      throw new WatchRefused(
        `analysis folder ${analysis.dir} has uncommitted changes: ${code.dirtyFiles.join(', ')}\n` +
          'Commit them (the identity records the commit), or pass --allow-dirty to run with a hash of the diff in the identity.',
      );
    }
    const store = options.store ?? (await openStore(options.storeUrl, { home: options.home, s3Endpoint: options.s3Endpoint }));
    try {
      const refusal = await provideAnalysisBucket(store, options.bucket);
      if (refusal) throw new WatchRefused(refusal);
      const db = await openDatabase(options.dbUrl, { home: options.home });
      const launcher =
        options.launcher ??
        (await openLauncher(options.compute, { storeUrl: store.url, s3Endpoint: options.s3Endpoint, agent: AGENT_PROGRAM }));
      return new SubmissionWatcher(analysis, store, db, launcher, options);
    } catch (error) {
      if (!options.store) await store.close();
      throw error;
    }
  }

  async close(): Promise<void> {
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

  /** One submit file, from claim to answer. Also what the S3 event handler calls. */
  async process(key: string): Promise<SubmissionOutcome> {
    const done = (outcome: SubmissionOutcomeKind, reason: string, folder?: FolderKeys, retryAt?: number): SubmissionOutcome => {
      const result: SubmissionOutcome = {
        key,
        outcome,
        reason,
        ...(folder ? { folder: objectUrl(this.store.scheme, this.bucket, folder.prefix) } : {}),
        ...(retryAt ? { retryAt } : {}),
      };
      if (outcome !== 'done' && outcome !== 'elsewhere') this.log(`${new Date().toISOString()} ${key}: ${outcome}: ${reason}`);
      return result;
    };
    const group = submitGroup(key);
    // A folder name that could not be a group is answered nowhere: writing under it is not safe.
    if (!group) return done('ignored', 'the folder above submissions/ is not a valid group name');
    try {
      const read = await this.readSubmitObject(key, group);
      if (!read) return done('ignored', 'the submit file is gone');
      const folder = folderKeys(this.bucket, group, read.timestamp);
      // Settled submissions are recognised before asking git anything: a restart rereads them all.
      const existing = parseMarker(await this.text(folder.marker));
      if (existing?.written_by === 'caas run' && existing.submit_key === key)
        return done('done', 'a job of caas run, not a submission', folder);
      if (existing?.submit_key === key && existing.submit_sha256 === read.sha256 && (await this.store.head(this.bucket, folder.end))) {
        return done('done', 'already processed', folder);
      }
      // One preparer per submission: git is asked once, for this check and for the identities.
      const preparer = new JobPreparer({
        storeScheme: this.store.scheme,
        allowDirty: this.options.allowDirty,
        roots: this.options.roots,
      });
      const code = await preparer.codeStateOf(this.analysis.dir);
      if (code.dirtyFiles.length > 0 && !this.options.allowDirty) {
        return done(
          'error',
          `analysis folder ${this.analysis.dir} has uncommitted changes (${code.dirtyFiles.join(', ')}): commit them or restart with --allow-dirty`,
        );
      }
      const marker = this.markerFor(read);
      const claim = await this.claim(folder, marker);
      if (claim.kind === 'done') return done('done', 'already processed', folder);
      if (claim.kind === 'elsewhere') return done('elsewhere', 'another watcher is processing it', folder, claim.until);
      if (claim.kind === 'conflict') {
        await this.store.put(
          this.bucket,
          rejectionNoteKey(key),
          `${new Date().toISOString()} caas watcher: not processed: ${claim.reason}\n`,
        );
        return done('conflict', claim.reason, folder);
      }
      const keepalive = this.keepMarker(folder, marker);
      try {
        const validation = await validateSubmission(read, { store: this.store, bucket: this.bucket, analysis: this.analysis, preparer });
        if (!validation.ok) {
          const reason = oneLine(validation.reason);
          await this.note(folder, `submission ${key} rejected: ${reason}`);
          await this.store.put(this.bucket, folder.end, `REJECTED\n${reason}\n`);
          return done('rejected', reason, folder);
        }
        const submission = validation.submission;
        const result =
          submission.datasets.length === 1
            ? await this.runDataset(submission, submission.datasets[0]!, folder)
            : await this.runDatasets(submission, group, folder);
        return done(result.outcome, result.results ? `${result.reason}; results at ${result.results}` : result.reason, folder);
      } finally {
        keepalive.stop();
      }
    } catch (error) {
      return done('error', `could not process (will try again): ${(error as Error).message}`);
    }
  }

  private async readSubmitObject(key: string, group: string): Promise<SubmitRead | undefined> {
    const info = await this.store.head(this.bucket, key);
    if (!info) return undefined;
    if (info.size > MAX_SUBMIT_BYTES) {
      const read = readSubmit(key, group, new Uint8Array());
      return { ...read, sha256: `etag:${info.etag}`, value: undefined, jsonError: `larger than ${MAX_SUBMIT_BYTES} bytes` };
    }
    return readSubmit(key, group, await this.store.get(this.bucket, key));
  }

  private markerFor(read: SubmitRead): SubmissionMarker {
    const now = Date.now();
    return {
      submit_key: read.key,
      submit_sha256: read.sha256,
      owner: this.owner,
      claimed: new Date(now).toISOString(),
      lease_expires: new Date(now + this.options.leaseMs).toISOString(),
    };
  }

  /**
   * Who answers in this job folder. The marker is written with put-if-absent, so of two watchers
   * (or a watcher and its restarted self) exactly one wins a fresh folder. A marker for the same
   * submit file whose lease ran out belongs to a watcher that died: it is taken over, and the
   * metadata DB's own claim keeps the compute itself exactly-once even if two take it over at once.
   * A folder holding another submission, or files of a job without a marker, is never written to.
   */
  private async claim(folder: FolderKeys, marker: SubmissionMarker): Promise<Claim> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const existing = parseMarker(await this.text(folder.marker));
      if (existing) {
        if (existing.submit_key !== marker.submit_key) {
          return {
            kind: 'conflict',
            reason: `timestamp ${folder.timestamp} is already used by ${existing.submit_key}: submit again with a new timestamp`,
          };
        }
        if (existing.submit_sha256 !== marker.submit_sha256) {
          return {
            kind: 'conflict',
            reason: `timestamp ${folder.timestamp} was already used by an earlier version of this submit file: submit again with a new timestamp`,
          };
        }
        if (await this.store.head(this.bucket, folder.end)) return { kind: 'done' };
        const until = Date.parse(existing.lease_expires);
        if (existing.owner.run !== this.owner.run && until > Date.now()) return { kind: 'elsewhere', until };
        await this.writeMarker(folder, marker);
        return { kind: 'won' };
      }
      const other = await this.firstKey(folder.prefix);
      if (other !== undefined) {
        // Every writer puts the marker first, so objects in the folder may be those of a watcher that
        // claimed it since the marker was read above: only a folder still without one is another job's.
        if ((await this.text(folder.marker)) !== undefined) continue;
        return { kind: 'conflict', reason: `timestamp ${folder.timestamp} is already used by another job (${other} exists)` };
      }
      if (await this.store.putIfAbsent(this.bucket, folder.marker, `${JSON.stringify(marker, null, 2)}\n`)) return { kind: 'won' };
    }
    return { kind: 'elsewhere', until: Date.now() + this.options.leaseMs };
  }

  private async firstKey(prefix: string): Promise<string | undefined> {
    for await (const info of this.store.list(this.bucket, prefix)) return info.key;
    return undefined;
  }

  private writeMarker(folder: FolderKeys, marker: SubmissionMarker): Promise<void> {
    return this.store.put(this.bucket, folder.marker, `${JSON.stringify(marker, null, 2)}\n`);
  }

  /** Renews the marker's lease while this watcher works on the submission. */
  private keepMarker(folder: FolderKeys, marker: SubmissionMarker) {
    const timer = setInterval(
      () => {
        // Once end.txt is there no watcher touches the folder again, and nothing is written after it.
        const renew = async () => {
          if (await this.store.head(this.bucket, folder.end)) return clearInterval(timer);
          await this.writeMarker(folder, { ...marker, lease_expires: new Date(Date.now() + this.options.leaseMs).toISOString() });
        };
        void renew().catch(() => {});
      },
      Math.max(50, Math.floor(this.options.leaseMs / 3)),
    );
    return { stop: () => clearInterval(timer) };
  }

  /**
   * One dataset through the gate: a succeeded identity is answered from its record; one running
   * elsewhere is waited for; anything else runs in this folder (executeJob claims it atomically).
   */
  private async runDataset(submission: ValidSubmission, dataset: SubmittedDataset, folder: FolderKeys): Promise<DatasetResult> {
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
        return this.answerFromRecord(folder, dataset, entry.record);
      }
      if (entry?.action === 'RUNNING') {
        await sleep(this.options.retryMs ?? 2000);
        continue;
      }
      const result = await executeJob(job, { ...this.ctx, plannedAt }, placement);
      if (result.outcome === 'skipped') continue;
      if (result.outcome === 'failed-elsewhere') {
        // The same data and config failed just now in another job: this submission gets that answer,
        // unless an agent already answered in this folder (a watcher before us ran it here).
        if (!(await this.store.head(this.bucket, folder.end))) {
          await this.note(folder, `identical data and config ${result.reason}`);
          await this.writeStatus(folder, dataset, 'FAILED', result.reason);
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
        if (ended === undefined) await this.writeStatus(folder, dataset, 'FAILED', result.reason);
        await this.store.put(this.bucket, folder.end, `FAILED\n${result.reason}\n`);
      }
      if (result.outcome === 'succeeded' && ended === undefined) {
        // Recovered from an earlier attempt's folder elsewhere: answer here from the record.
        const record = await this.db.get(job.identity);
        if (record) return this.answerFromRecord(folder, dataset, record);
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
   * "~" cannot appear in a submitted timestamp, so these folders never belong to another
   * submission). The submission's own folder gets one status file per dataset, a certificate line
   * per dataset, and end.txt when all are over.
   */
  private async runDatasets(submission: ValidSubmission, group: string, folder: FolderKeys): Promise<DatasetResult> {
    const { datasets } = submission;
    const subs = datasets.map((_, i) => folderKeys(this.bucket, group, `${folder.timestamp}~${i + 1}`));
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
          : await this.runDataset(submission, dataset, sub);
        results[i] = result;
        const status = await this.text(statusKey(sub.logs, dataset.key));
        if (status !== undefined) await this.store.put(this.bucket, statusKey(folder.logs, dataset.key), status);
        await this.note(folder, `dataset ${i + 1} ${dataset.dataname}: ${result.outcome}: ${result.reason}; job folder ${sub.prefix}`);
      }
    };
    const limit = Math.min(datasets.length, this.analysis.blueprint.deploy_limit);
    await Promise.all(Array.from({ length: limit }, worker));
    const failed = results.filter((r) => r.outcome === 'failed').length;
    const summary = failed === 0 ? `all ${datasets.length} datasets succeeded` : `${failed} of ${datasets.length} datasets failed`;
    await this.store.put(this.bucket, folder.end, `${failed === 0 ? 'SUCCESS' : 'FAILED'}\n${summary}\n`);
    return {
      outcome: failed === 0 ? 'succeeded' : 'failed',
      reason: summary,
      results: objectUrl(this.store.scheme, this.bucket, folder.prefix),
    };
  }

  /** Identical data and config succeeded before: link its results from this folder instead of running. */
  private async answerFromRecord(folder: FolderKeys, dataset: SubmittedDataset, record: MetadataRecord): Promise<DatasetResult> {
    const results = record.job?.results ?? '(not recorded)';
    const link = {
      answered_from: record._id,
      results: record.job?.results ?? null,
      logs: record.job?.logs ?? null,
      analysis: record.analysis,
      code: record.code,
      recorded: record.end ?? record.updated,
    };
    await this.store.put(this.bucket, folder.link, `${JSON.stringify(link, null, 2)}\n`);
    await this.writeStatus(folder, dataset, 'SUCCESS', `answered from record ${record._id}`);
    await this.note(folder, `identical data and config: answered from record ${record._id}, results at ${results}`);
    await this.store.put(this.bucket, folder.end, `SUCCESS\nanswered from record ${record._id}\nresults at ${results}\n`);
    return { outcome: 'answered', reason: `identical data and config: answered from record ${record._id}`, results };
  }

  private async writeStatus(folder: FolderKeys, dataset: SubmittedDataset, status: 'SUCCESS' | 'FAILED', reason: string): Promise<void> {
    const now = new Date().toISOString();
    const body: StatusFile = {
      status,
      reason,
      input: dataset.dataname,
      instance: 'none: caas watcher',
      command: '',
      job_start: now,
      job_finish: now,
      cpu_usage: null,
      memory_usage: null,
      std: [],
      exit_code: null,
    };
    await this.store.put(this.bucket, statusKey(folder.logs, dataset.key), `${JSON.stringify(body, null, 2)}\n`);
  }

  /**
   * Appends a line to the folder's certificate.txt (only ever while no agent writes it). The store
   * has no append, so this reads and rewrites the whole file: notes to one folder (the workers of
   * runDatasets write them concurrently) are chained so that none is lost.
   */
  private note(folder: FolderKeys, line: string): Promise<void> {
    const entry = `${new Date().toISOString()} caas watcher: ${oneLine(line)}\n`;
    const key = folder.certificate;
    const append = async () => {
      const before = (await this.text(key)) ?? '';
      await this.store.put(this.bucket, key, `${before}${entry}`);
    };
    const next = (this.notes.get(key) ?? Promise.resolve()).then(append, append);
    this.notes.set(key, next);
    const forget = () => {
      if (this.notes.get(key) === next) this.notes.delete(key);
    };
    next.then(forget, forget);
    return next;
  }

  private text(key: string): Promise<string | undefined> {
    return getText(this.store, this.bucket, key);
  }
}

/**
 * Reasons quote what users wrote (names, field names); a newline in there must not forge a line of
 * the certificate or of end.txt, whose second line clients read as the reason.
 */
function oneLine(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: escaping control characters is the point
  return text.replace(/[\u0000-\u001f\u007f]/g, (c) => JSON.stringify(c).slice(1, -1));
}

function isFolderOf(record: MetadataRecord, bucket: string, group: string, timestamp: string): boolean {
  return record.job?.bucket === bucket && record.job.group === group && record.job.timestamp === timestamp;
}

/** The analysis whose blueprint names this bucket. */
async function analysisForBucket(bucket: string, roots = analysisRoots()): Promise<Analysis> {
  const known: string[] = [];
  for (const name of listAnalysisNames(roots)) {
    const analysis = await loadAnalysis(name, roots).catch(() => undefined);
    if (!analysis) continue;
    if (analysis.blueprint.bucket === bucket) return analysis;
    known.push(analysis.blueprint.bucket);
  }
  throw new WatchRefused(`no analysis has bucket "${bucket}" in its blueprint: expected one of ${known.join(', ') || '(none found)'}`);
}

/** The part of an S3 event notification the handler reads. */
export interface S3EventLike {
  Records?: { eventName?: string; s3?: { bucket?: { name?: string }; object?: { key?: string } } }[];
}

/**
 * The cloud path: S3 ObjectCreated events (suffix submit.json) for one object each, answered
 * exactly as the poller answers it. Keys arrive URL-encoded with "+" for spaces, as S3 sends them.
 */
export async function handleS3Event(event: S3EventLike, watcher: SubmissionWatcher): Promise<SubmissionOutcome[]> {
  const outcomes: SubmissionOutcome[] = [];
  for (const record of event.Records ?? []) {
    if (!record.eventName?.startsWith('ObjectCreated') || record.s3?.bucket?.name !== watcher.bucket) continue;
    let key: string;
    try {
      key = decodeURIComponent((record.s3.object?.key ?? '').replace(/\+/g, ' '));
    } catch {
      continue;
    }
    if (isSubmitKey(key)) outcomes.push(await watcher.process(key));
  }
  return outcomes;
}

/**
 * Entry point for a function runtime: settings from the environment (CAAS_STORE default s3://,
 * CAAS_DB required, CAAS_COMPUTE default ec2, CAAS_HOME default /tmp/caas). The bucket is the event's.
 * The call returns when the job is over, so the function's timeout must cover the analysis'
 * max runtime; if it is cut off, the submission's lease runs out and a polling watcher takes over.
 */
export async function handler(event: S3EventLike): Promise<SubmissionOutcome[]> {
  const dbUrl = durableDbUrl(process.env.CAAS_DB);
  const bucket = event.Records?.find((r) => r.s3?.bucket?.name)?.s3?.bucket?.name;
  if (!bucket) return [];
  const watcher = await SubmissionWatcher.open({
    bucket,
    home: process.env.CAAS_HOME ?? '/tmp/caas',
    storeUrl: process.env.CAAS_STORE ?? 's3://',
    dbUrl,
    compute: process.env.CAAS_COMPUTE ?? 'ec2',
    s3Endpoint: process.env.AWS_ENDPOINT_URL,
    concurrency: 1,
    leaseMs: Number(process.env.CAAS_LEASE_SECONDS ?? 60) * 1000,
    allowDirty: false,
  });
  try {
    return await handleS3Event(event, watcher);
  } finally {
    await watcher.close();
  }
}

/**
 * The event handler's metadata DB, which must be named and durable. A function runtime's /tmp
 * (where CAAS_HOME points by default) lives as long as one execution environment: records written
 * there are lost, and every environment would gate on its own file, so nothing would stop two
 * invocations from running the same identity twice.
 */
export function durableDbUrl(value: string | undefined): string {
  const how =
    'set CAAS_DB to mongodb://user:pass@host/caas (the DB every watcher and `caas run` of this analysis share), ' +
    'or to sqlite:<file> on durable storage such as an EFS mount';
  if (value === undefined || value.trim() === '') {
    throw new WatchRefused(`CAAS_DB is not set: the S3 event handler keeps no records in a throwaway SQLite file under /tmp; ${how}`);
  }
  if (!value.startsWith('sqlite:')) return value;
  const given = value.replace(/^sqlite:(\/\/)?/, '');
  if (given === '') throw new WatchRefused(`CAAS_DB=${value} names no file (it would be under CAAS_HOME, /tmp/caas by default); ${how}`);
  const file = path.resolve(given);
  const temporary = [...new Set(['/tmp', tmpdir()])].find((dir) => file.startsWith(`${dir}${path.sep}`));
  if (temporary) throw new WatchRefused(`CAAS_DB=${value}: ${file} is under ${temporary}, which a function runtime discards; ${how}`);
  return value;
}
