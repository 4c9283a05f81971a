import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { finished } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { JOB_TOKEN_VARIABLE, JobProcesses } from '../backends/compute/job-processes.ts';
import { etagOfFile, getText, ObjectLocator, type ObjectStore, objectUrl, openStore } from '../backends/storage/index.ts';
import type { AgentSpec } from '../models/agent-spec.ts';
import { datasetName, type JobKeys, jobKeys } from '../models/bucket-contract.ts';
import type { JobDocument } from '../models/job-document.ts';
import { staleAfterMs } from '../models/liveness.ts';
import type { ManifestEntry } from '../models/record.ts';
import type { StatusFile } from '../models/status.ts';
import { aindMetadataDocument, aindProcessingOf } from './aind-processing.ts';
import { analysisEnvironment } from './analysis-env.ts';
import { CappedLog } from './capped-log.ts';
import { uploadFolder, withObjectsWrittenThere } from './upload.ts';

const STD_LINES = 20;
/** After the analysis' main process exits, how long its output may stay open (a background child holding it). */
const STDIO_GRACE_MS = 2000;
/** After SIGTERM (cancel, timeout), how long the analysis has before everything of the job is killed. */
const STOP_GRACE_MS = 5000;
/** Live log uploads keep to about this rate, so a verbose analysis is not re-uploaded back to back. */
const LOG_UPLOAD_BYTES_PER_S = 4 * 1024 * 1024;

export interface AgentOptions {
  /** Stop the analysis and end the job (with end.txt) when this aborts. */
  cancel?: AbortSignal;
  /** The work folder is a temporary one of this job: remove it even if the agent is killed. */
  removeWorkDirOnDeath?: boolean;
  /** The job's processes and their watchdog, when started ahead of the job (for this work folder). */
  processes?: JobProcesses;
}

/** Aborts when either source does. Not AbortSignal.any: its signal is held only weakly by its sources, and once collected it never aborts. */
function eitherSignal(...sources: (AbortSignal | undefined)[]): AbortSignal {
  const stop = new AbortController();
  for (const source of sources) {
    if (source?.aborted) stop.abort(source.reason);
    else source?.addEventListener('abort', () => stop.abort(source.reason), { once: true });
  }
  return stop.signal;
}

/**
 * The instance side of a job (NeuroCAAS's run_main.sh). The same code runs in a local child
 * process and on an EC2 instance: stage the config and inputs from the store, run the analysis
 * command with the NeuroCAAS variables, keep the status file (the heartbeat) and logs current,
 * upload the outputs, and write end.txt last, on failure too. Returns the exit code the job should
 * be judged by. Every process the analysis starts ends with the job, and nothing is written into
 * the job folder after end.txt.
 */
export async function runAgent(spec: AgentSpec, workDir: string, options: AgentOptions = {}): Promise<number> {
  const processes = options.processes ?? new JobProcesses({ workDir, removeWorkDirOnDeath: options.removeWorkDirOnDeath ?? false });
  try {
    const job = await AgentJob.open(spec, workDir, processes);
    try {
      return await job.run(options.cancel);
    } finally {
      // Whatever went wrong, no loop outlives the job (it would keep the agent's process alive).
      await job.close();
    }
  } finally {
    // However the job ended (a store that failed at the start too): the watchdog is told and exits.
    processes.close();
  }
}

/** The outcome the job will be judged by, as it becomes known. */
interface Outcome {
  exitCode: number;
  reason: string;
}

/** One job on the instance side: its folders, logs, status file, certificate and the loops that keep them current. */
class AgentJob {
  private readonly keys: JobKeys;
  private readonly certificate: string[] = [];
  private readonly recent = new RecentLines(STD_LINES);
  private readonly status: StatusFile;
  private readonly machine: { host: string; pid: number; instance: string };
  private readonly dirs: { input: string; config: string; output: string; tmp: string; work: string };
  /** Each input as the NeuroCAAS guide names it: its key when it is in the analysis bucket, else its URL. */
  private inputPaths: string[] = [];
  private readonly configPath: string;
  /**
   * $CAAS_JOB, once staged (a spec written by hand may come without one), and the document as read
   * then: read once, before the analysis runs in the folder that holds the file.
   */
  private jobDocument: { path: string; job: JobDocument } | undefined;
  private readonly logs: { stdout: CappedLog; stderr: CappedLog };
  private readonly beats: Repeating;
  private readonly liveLogs: Repeating;
  /** Aborted when this agent can no longer show it is alive: it must not run on unseen. */
  private readonly fence = new AbortController();
  private analysisPid: number | undefined;
  /** How many certificate lines are in the job folder. */
  private certificateWritten = 0;
  /** end.txt is written: nothing more goes into the job folder. */
  private ended = false;

  private constructor(
    private readonly spec: AgentSpec,
    private readonly store: ObjectStore,
    private readonly locator: ObjectLocator,
    private readonly processes: JobProcesses,
    private readonly workDir: string,
  ) {
    this.keys = jobKeys(spec.bucket, spec.group, spec.timestamp, spec.dataname, spec.configname);
    this.status = {
      status: 'INITIALIZING',
      reason: null,
      input: spec.dataname,
      instance: spec.instance,
      command: spec.command.join(' '),
      job_start: new Date().toISOString(),
      job_finish: null,
      cpu_usage: null,
      memory_usage: null,
      std: [],
      exit_code: null,
    };
    this.machine = { host: hostname(), pid: process.pid, instance: process.env.CAAS_INSTANCE_ID || spec.instance };
    this.dirs = {
      input: path.join(workDir, 'inputs'),
      config: path.join(workDir, 'config'),
      output: path.join(workDir, 'process_results'),
      tmp: path.join(workDir, 'tmp'),
      work: path.join(workDir, 'work'),
    };
    this.configPath = path.join(this.dirs.config, path.posix.basename(spec.configname));
    this.logs = {
      stdout: new CappedLog(path.join(workDir, 'logs', 'stdout.txt'), spec.log_limit_bytes),
      stderr: new CappedLog(path.join(workDir, 'logs', 'stderr.txt'), spec.log_limit_bytes),
    };
    // The heartbeat: from the agent's start until just before end.txt, whatever the analysis does.
    let lastBeat = Date.now();
    this.beats = repeat(spec.status_interval_ms, async () => {
      const usage = this.analysisPid ? processUsage(this.analysisPid) : undefined;
      if (usage) {
        this.status.cpu_usage = usage.cpu;
        this.status.memory_usage = usage.memory;
      }
      try {
        await this.writeStatus();
        lastBeat = Date.now();
      } catch (error) {
        // Unheard for nearly as long as a runner waits before it takes the job for dead: stop before it starts another.
        const silentMs = Date.now() - lastBeat;
        if (silentMs > staleAfterMs(spec.status_interval_ms) - spec.status_interval_ms && !this.fence.signal.aborted) {
          this.fence.abort(
            `the heartbeat could not be written for ${Math.round(silentMs / 1000)} s (${(error as Error).message}): another runner may start this job again, so this one stops`,
          );
        }
      }
    });
    // Live logs: one upload per file at a time, from a snapshot on disk, bounded by the log limit.
    const lastUpload = { stdout: 0, stderr: 0 };
    this.liveLogs = repeat(spec.status_interval_ms, async () => {
      for (const name of ['stdout', 'stderr'] as const) {
        const log = this.logs[name];
        const gapMs = spec.status_interval_ms + (1000 * Math.min(log.bytesWritten, spec.log_limit_bytes)) / LOG_UPLOAD_BYTES_PER_S;
        if (!log.changed || Date.now() - lastUpload[name] < gapMs) continue;
        lastUpload[name] = Date.now();
        await this.store.putFile(spec.bucket, this.keys[name], (await log.snapshot()).path);
      }
    });
  }

  static async open(spec: AgentSpec, workDir: string, processes: JobProcesses): Promise<AgentJob> {
    const store = await openStore(spec.store, { home: workDir, settings: spec.store_settings });
    const locator = new ObjectLocator(store, { home: workDir, settings: spec.store_settings });
    const subfolders = ['inputs', 'config', 'process_results', 'logs', 'tmp', 'work'];
    await Promise.all(subfolders.map((dir) => mkdir(path.join(workDir, dir), { recursive: true })));
    return new AgentJob(spec, store, locator, processes, workDir);
  }

  async run(cancel?: AbortSignal): Promise<number> {
    const { spec, keys } = this;
    // The work folder is named so that anyone can see each job had one of its own (the per-job benchmark counts them).
    this.note(`job manager: job ${keys.resultdir} on ${spec.instance} (${hostname()}, pid ${process.pid}, work folder ${this.workDir})`);
    await this.writeStatusAndNotes();
    let staged: string[];
    try {
      staged = await this.stage();
      if (cancel?.aborted) throw new Error(`cancelled: ${String(cancel.reason)}`);
    } catch (error) {
      const message = (error as Error).message;
      return this.finish({ exitCode: 1, reason: `${message.startsWith('cancelled') ? '' : 'staging failed: '}${message}` });
    }

    const env = this.environment(staged, await this.locator.stores());
    const argv = spec.command.map((token) => expandPlaceholders(token, spec.analysis_dir));
    this.status.status = 'IN PROGRESS';
    this.note(`running ${argv.map((a) => JSON.stringify(a)).join(' ')}`);
    await this.writeStatusAndNotes();

    const started = Date.now();
    const stop = eitherSignal(cancel, this.fence.signal);
    const ended = await runAnalysis({
      argv,
      env,
      workDir: this.workDir,
      logs: this.logs,
      recent: this.recent,
      processes: this.processes,
      maxRuntimeS: spec.max_runtime_s,
      cancel: stop,
      onStart: (pid) => {
        this.analysisPid = pid;
      },
    });
    this.analysisPid = undefined;
    this.note(`analysis ended after ${((Date.now() - started) / 1000).toFixed(1)} s: ${ended.reason}`);
    if (ended.swept > 0) this.note(`ended ${ended.swept} process(es) the analysis left running`);
    const outcome = { exitCode: ended.code, reason: ended.reason };
    for (const problem of ended.logErrors) {
      // Output that could not be kept fails the job: its log would be silently incomplete.
      this.note(problem);
      outcome.reason = outcome.exitCode === 0 ? problem : `${outcome.reason}; ${problem}`;
      if (outcome.exitCode === 0) outcome.exitCode = 1;
    }
    // How the analysis ended goes on record now, not with the final status: an agent killed while
    // it uploads (out of memory, a lost host) still leaves the line that says what happened.
    await this.writeNotes();
    return this.finish(outcome);
  }

  /**
   * What the analysis process sees: the explicit environment, with the NeuroCAAS and CAAS_* job
   * variables. The NeuroCAAS ones mean exactly what the developer guide says (keys relative to the
   * bucket, names as basenames), so a script that does `aws s3 cp "s3://$bucketname/$inputpath" .`
   * and `aws s3 sync . "s3://$bucketname/$groupdir/$processdir"` works unchanged.
   */
  private environment(staged: string[], stores: readonly ObjectStore[]): Record<string, string> {
    const { spec, keys } = this;
    return analysisEnvironment({
      from: process.env,
      tmpDir: this.dirs.tmp,
      stores: Object.assign({}, ...stores.map((store) => store.environment(process.env))),
      blueprint: spec.environment,
      job: {
        bucketname: spec.bucket,
        groupdir: spec.group,
        resultdir: keys.resultdir,
        processdir: `${keys.resultdir}/process_results`,
        logdir: `${keys.resultdir}/logs`,
        dataname: datasetName(spec.dataname),
        inputpath: this.inputPaths[0] ?? spec.dataname,
        // Every input, one per line (keys and URLs never hold a newline), for jobs that read several.
        inputpaths: this.inputPaths.join('\n'),
        configname: path.posix.basename(spec.configname),
        configpath: keys.config,
        // NeuroCAAS's checkout folder, where its scripts keep scratch files: here a writable folder of this job.
        neurocaasrootdir: this.dirs.work,
        CAAS_WORK_DIR: this.dirs.work,
        ...(this.jobDocument ? { CAAS_JOB: this.jobDocument.path } : {}),
        CAAS_INPUT_DIR: this.dirs.input,
        CAAS_INPUT: staged[0] ?? this.dirs.input,
        CAAS_CONFIG: this.configPath,
        CAAS_OUTPUT_DIR: this.dirs.output,
        [JOB_TOKEN_VARIABLE]: this.processes.token,
      },
    });
  }

  /** A folder input's listing from the job document: the objects the identity holds, by URL. */
  private folderListing(url: string): Map<string, { etag: string; size: number }> {
    if (!this.jobDocument)
      throw new Error(`input folder ${url}: its listing is in the job document ${this.keys.jobDocument}, which is missing`);
    const files = this.jobDocument.job.folder_listings?.[url];
    if (!files) throw new Error(`input folder ${url}: the job document ${this.keys.jobDocument} holds no listing of it`);
    return new Map(files.map((file) => [file.url, { etag: file.etag, size: file.size }]));
  }

  /**
   * Config and inputs into the work folder, each input checked against the identity, and the code
   * checked. The three go on at once (the code check is a git process, the rest waits on the
   * store), and all are over before the analysis starts. Returns the staged paths.
   */
  private async stage(): Promise<string[]> {
    const { spec } = this;
    const [config, inputs, code] = await Promise.allSettled([
      this.store.getToFile(spec.bucket, this.keys.config, this.configPath),
      this.stageInputs(),
      checkCode(spec),
    ]);
    for (const step of [config, inputs, code]) if (step.status === 'rejected') throw step.reason;
    const staged = (inputs as PromiseFulfilledResult<string[]>).value;
    const codeProblem = (code as PromiseFulfilledResult<{ refusal?: string; note?: string }>).value;
    this.note(`staged config ${spec.configname} and ${staged.length} input file(s)`);
    if (codeProblem.note) this.note(codeProblem.note);
    if (codeProblem.refusal) throw new Error(codeProblem.refusal);
    return staged;
  }

  /** The job document, then the inputs (a folder's listing is in the job document). Returns the staged paths. */
  private async stageInputs(): Promise<string[]> {
    const { spec } = this;
    const staged: string[] = [];
    const jobDocument = path.join(this.workDir, 'job.json');
    try {
      await this.store.getToFile(spec.bucket, this.keys.jobDocument, jobDocument);
      this.jobDocument = { path: jobDocument, job: JSON.parse(await readFile(jobDocument, 'utf8')) as JobDocument };
    } catch (error) {
      if ((error as { code?: string }).code !== 'NoSuchKey') throw error;
      this.note(`no job document at ${this.keys.jobDocument}: the analysis runs without CAAS_JOB`);
    }
    for (const url of spec.inputs) {
      const { store: source, bucket, key } = await this.locator.locate(url);
      this.inputPaths.push(source === this.store && bucket === spec.bucket ? key : url);
      if (!url.endsWith('/')) {
        const local = path.join(this.dirs.input, uniqueName(path.posix.basename(key), staged));
        await source.getToFile(bucket, key, local);
        await checkInput(url, local, spec.input_checks[url]);
        staged.push(local);
        continue;
      }
      // A folder URL (an asset with no file list): stage everything under it, keeping its layout.
      const folder = path.join(this.dirs.input, uniqueName(path.posix.basename(key.replace(/\/+$/, '')), staged));
      staged.push(folder);
      // What the folder held when the job was prepared is in the identity: exactly that is staged.
      const listed = (spec.listed_folders ?? []).includes(url);
      const listing = listed ? this.folderListing(url) : new Map<string, { etag: string; size: number }>();
      const expected = new Set(listing.keys());
      for await (const object of source.list(bucket, key)) {
        const file = url + object.key.slice(key.length);
        if (listed && !expected.has(file)) throw new Error(`input folder ${url}: ${file} appeared after the job was planned`);
        const local = path.resolve(folder, ...object.key.slice(key.length).split('/'));
        if (!local.startsWith(folder + path.sep)) throw new Error(`object ${object.key} would be staged outside the input folder`);
        await source.getToFile(bucket, object.key, local);
        if (listed) await checkInput(file, local, listing.get(file));
        expected.delete(file);
      }
      if (expected.size > 0) throw new Error(`input folder ${url}: ${[...expected][0]} was listed when the job was planned and is gone`);
    }
    return staged;
  }

  /**
   * Outputs, config copy, logs and manifest into the job folder, then the final status and
   * end.txt, the last object written. A failed upload turns a success into a failure. What does
   * not depend on each other goes up at once: the results and the logs, then the metadata document
   * and the manifest.
   */
  private async finish(outcome: Outcome): Promise<number> {
    const { keys } = this;
    const fail = (problem: string) => {
      outcome.reason = outcome.exitCode === 0 ? problem : `${outcome.reason}; ${problem}`;
      if (outcome.exitCode === 0) outcome.exitCode = 1;
    };
    await this.liveLogs.stop();
    const [manifest] = await allSettledOrThrow([
      this.uploadResults(outcome, fail),
      ...(['stdout', 'stderr'] as const).map((name) => this.uploadLog(name, fail)),
    ]);
    const finishedAt = new Date().toISOString();
    const metadata = async () => {
      if (outcome.exitCode !== 0) return;
      try {
        await this.writeProcessingDocument(finishedAt);
      } catch (error) {
        fail(`metadata.nd.json could not be written: ${(error as Error).message}`);
      }
    };
    await allSettledOrThrow([metadata(), this.put(keys.manifest, `${JSON.stringify(manifest, null, 2)}\n`)]);
    await this.beats.stop();
    const { status } = this;
    status.status = outcome.exitCode === 0 ? 'SUCCESS' : 'FAILED';
    status.reason = outcome.reason;
    status.exit_code = outcome.exitCode;
    status.job_finish = finishedAt;
    this.note(`job ${status.status === 'SUCCESS' ? 'succeeded' : `failed (${outcome.reason})`}`);
    await this.writeStatusAndNotes();
    // end.txt is the last object written: once it exists, everything else of the job is in place.
    await this.put(keys.end, `${status.status}\n${outcome.reason}\nfinished ${status.job_finish}\n`);
    this.ended = true;
    return outcome.exitCode;
  }

  /** process_results and the config copy; returns their manifest (empty when the upload failed, which fails the job). */
  private async uploadResults(outcome: Outcome, fail: (problem: string) => void): Promise<ManifestEntry[]> {
    const { spec, keys } = this;
    try {
      let manifest = await uploadFolder(this.store, spec.bucket, keys.process, this.dirs.output, { skip: (rel) => rel === 'end.txt' });
      if (await stat(this.configPath).catch(() => undefined)) {
        const copyKey = spec.config_copy ? keys.process + path.posix.basename(spec.config_copy) : keys.configCopy;
        manifest.push({ key: copyKey, ...(await this.store.putFile(spec.bucket, copyKey, this.configPath)) });
      }
      manifest = await withObjectsWrittenThere(this.store, spec.bucket, keys, manifest);
      if (outcome.exitCode === 0) this.note(`uploaded ${manifest.length} result file(s) to ${keys.process}`);
      return manifest;
    } catch (error) {
      fail(`upload failed: ${(error as Error).message}`);
      return [];
    }
  }

  /** A log's last snapshot into the job folder; a log that cannot be stored fails the job: it is never silently left empty. */
  private async uploadLog(name: 'stdout' | 'stderr', fail: (problem: string) => void): Promise<void> {
    const { spec, keys } = this;
    try {
      const snapshot = await this.logs[name].snapshot();
      await this.store.putFile(spec.bucket, keys[name], snapshot.path);
      if (snapshot.cut) {
        this.status.logs_cut = { ...this.status.logs_cut, [name]: snapshot.cut };
        this.note(
          `${name}.txt: the analysis wrote ${snapshot.cut.written_bytes} bytes, over the log limit of ${spec.log_limit_bytes}; kept the first and last parts (${snapshot.cut.kept_bytes} bytes), cut ${snapshot.cut.cut_bytes} bytes in between`,
        );
      }
    } catch (error) {
      const problem = `${name}.txt could not be uploaded: ${(error as Error).message}`;
      fail(problem);
      this.note(problem);
    }
  }

  /**
   * metadata.nd.json beside process_results: the job in aind-data-schema's words, from the job
   * document and the outputs file. Written before end.txt, like everything of the job folder.
   */
  private async writeProcessingDocument(finishedAt: string): Promise<void> {
    if (!this.jobDocument) return;
    const { spec, keys } = this;
    const { job } = this.jobDocument;
    let outputParameters: Record<string, unknown> | null = null;
    if (job.outputs_file) {
      const text = await getText(this.store, spec.bucket, keys.process + job.outputs_file).catch(() => undefined);
      try {
        const value: unknown = text === undefined ? null : JSON.parse(text);
        if (value && typeof value === 'object' && !Array.isArray(value)) outputParameters = value as Record<string, unknown>;
      } catch {
        // Not JSON: the runner's verification says so; the document carries no output parameters.
      }
    }
    const processing = aindProcessingOf(job, { start: this.status.job_start ?? finishedAt, end: finishedAt, outputParameters });
    const document = aindMetadataDocument(job, objectUrl(this.store.scheme, spec.bucket, keys.results), processing);
    await this.put(`${keys.results}metadata.nd.json`, `${JSON.stringify(document, null, 2)}\n`);
  }

  async close(): Promise<void> {
    await this.liveLogs.stop();
    await this.beats.stop();
    // A job that broke off before end.txt still leaves its certificate as far as it got.
    if (!this.ended) await this.writeNotes().catch(() => {});
    for (const log of Object.values(this.logs)) await log.close();
    await this.locator.close();
    await this.store.close();
  }

  private put(key: string, body: string | Uint8Array): Promise<void> {
    return this.store.put(this.spec.bucket, key, body);
  }

  /**
   * A line in the certificate. The certificate is rewritten whole (the store has no append), so
   * lines are written with the status (writeStatusAndNotes), at each of its changes, rather than
   * one object write per line: a job notes some eight lines, most of them in its first and last
   * milliseconds.
   */
  private note(line: string): void {
    this.certificate.push(`${new Date().toISOString()} ${line}`);
  }

  /** The certificate as noted so far, if it has lines not written yet. Called from the job's own steps only, so two writes never race. */
  private async writeNotes(): Promise<void> {
    if (this.certificateWritten === this.certificate.length) return;
    const lines = this.certificate.length;
    await this.put(this.keys.certificate, `${this.certificate.join('\n')}\n`);
    this.certificateWritten = Math.max(this.certificateWritten, lines);
  }

  private async writeStatusAndNotes(): Promise<void> {
    await allSettledOrThrow([this.writeStatus(), this.writeNotes()]);
  }

  private writeStatus(): Promise<void> {
    const heartbeat = { at: new Date().toISOString(), interval_ms: this.spec.status_interval_ms, ...this.machine };
    return this.put(this.keys.status, `${JSON.stringify({ ...this.status, std: this.recent.lines(), heartbeat }, null, 2)}\n`);
  }
}

interface AnalysisRun {
  argv: string[];
  env: Record<string, string>;
  workDir: string;
  logs: { stdout: CappedLog; stderr: CappedLog };
  recent: RecentLines;
  processes: JobProcesses;
  maxRuntimeS: number;
  cancel?: AbortSignal;
  onStart(pid: number | undefined): void;
}

/**
 * Waits for every write, then throws the first failure: a write that fails must not leave the
 * others still going while the agent moves on (to close, or to write the certificate again).
 */
async function allSettledOrThrow<T extends unknown[]>(writes: [...{ [K in keyof T]: Promise<T[K]> }]): Promise<T> {
  const settled = await Promise.allSettled(writes);
  const failed = settled.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((result) => (result as PromiseFulfilledResult<unknown>).value) as T;
}

/**
 * Runs the analysis to its end: the end of its main process. Output held open by a process it
 * left behind is given a short grace, then every process of the job is ended (so is everything
 * still running when the main process ends at all). A cancel or the max runtime sends SIGTERM
 * to the process group, and ends everything of the job a few seconds later.
 */
// biome-ignore lint/complexity/noExcessiveLinesPerFunction: one closure on purpose: the child's events, the timers and the sweeps share the state (stopping, exit, settled) that decides, exactly once, how the analysis ended.
function runAnalysis(run: AnalysisRun): Promise<{ code: number; reason: string; swept: number; logErrors: string[] }> {
  return new Promise((resolve) => {
    let child: ChildProcess;
    try {
      // An argv, never a shell line: parameters reach the analysis as files and environment only.
      child = spawn(run.argv[0]!, run.argv.slice(1), { cwd: run.workDir, env: run.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    } catch (error) {
      resolve({ code: 127, reason: `could not start ${run.argv[0]}: ${(error as Error).message}`, swept: 0, logErrors: [] });
      return;
    }
    run.processes.started(child.pid);
    run.onStart(child.pid);
    const logErrors = pipeLogs(child, run);
    const timers: NodeJS.Timeout[] = [];
    let stopping: string | undefined;
    let timedOut = false;
    const stop = (why: string) => {
      stopping ??= why;
      run.processes.signalGroup('SIGTERM');
      timers.push(setTimeout(() => void sweep(0), STOP_GRACE_MS));
    };
    const onCancel = () => stop(`cancelled: ${String(run.cancel?.reason ?? 'cancelled')}`);
    run.cancel?.addEventListener('abort', onCancel, { once: true });
    // Told to stop between the status saying IN PROGRESS and here: a listener added now would never hear it.
    if (run.cancel?.aborted) onCancel();
    timers.push(
      setTimeout(() => {
        timedOut = true;
        stop('timeout');
      }, run.maxRuntimeS * 1000),
    );
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let settled = false;
    let swept = 0;
    const sweeps: Promise<void>[] = [];
    const sweep = (graceMs?: number) => {
      const done = run.processes.sweep(graceMs).then((count) => {
        swept += count;
      });
      sweeps.push(done);
      return done;
    };
    const settle = async (result: { code: number; reason: string }) => {
      if (settled) return;
      settled = true;
      for (const timer of timers) clearTimeout(timer);
      run.cancel?.removeEventListener('abort', onCancel);
      await sweep();
      await Promise.all(sweeps);
      run.processes.ended();
      await Promise.all(Object.values(run.logs).map(endLog));
      resolve({ ...result, swept, logErrors });
    };
    child.on('error', (error) => void settle({ code: 127, reason: `could not start ${run.argv[0]}: ${error.message}` }));
    child.on('exit', (code, signal) => {
      exit = { code, signal };
      // A background process holding stdout or stderr open does not keep the job going.
      timers.push(
        setTimeout(() => {
          void sweep(0).then(() => {
            timers.push(
              setTimeout(() => {
                child.stdout?.destroy();
                child.stderr?.destroy();
              }, 1000),
            );
          });
        }, STDIO_GRACE_MS),
      );
    });
    child.on('close', () => {
      const { code, signal } = exit ?? { code: null, signal: null };
      if (stopping && !timedOut) void settle({ code: 130, reason: stopping });
      else if (timedOut) void settle({ code: 124, reason: `timeout: still running after max runtime of ${run.maxRuntimeS} s` });
      else if (signal) void settle({ code: 128, reason: `killed by ${signal}` });
      else void settle({ code: code ?? 1, reason: `exit code ${code}` });
    });
  });
}

/** The analysis' stdout and stderr into their capped logs; returns the list the logs' write errors land in. */
function pipeLogs(child: ChildProcess, run: AnalysisRun): string[] {
  const remember = (chunk: Buffer) => run.recent.add(chunk);
  const logErrors: string[] = [];
  for (const name of ['stdout', 'stderr'] as const) {
    const source = child[name];
    const log = run.logs[name];
    if (!source) continue;
    source.on('data', remember).pipe(log);
    // A full or failing disk: the analysis goes on (its output is drained, not kept), the job will fail.
    log.on('error', (error) => {
      logErrors.push(`${name}.txt could not be written: ${error.message}`);
      source.unpipe(log);
      source.resume();
    });
  }
  return logErrors;
}

/** Ends a log whose source may have been destroyed rather than ended, and waits until it is on disk. */
async function endLog(log: CappedLog): Promise<void> {
  if (!log.writableEnded) log.end();
  await finished(log).catch(() => {});
}

/**
 * The last lines of the analysis' output, for the status file. Only the end of each chunk is
 * looked at, so a verbose analysis costs nothing here.
 */
class RecentLines {
  private readonly kept: string[] = [];

  constructor(private readonly count: number) {}

  add(chunk: Buffer): void {
    const text = chunk.subarray(Math.max(0, chunk.length - 4096)).toString('utf8');
    for (const line of text.split('\n')) if (line.trim()) this.kept.push(line.slice(0, 1000));
    if (this.kept.length > this.count * 4) this.kept.splice(0, this.kept.length - this.count);
  }

  lines(): string[] {
    return this.kept.slice(-this.count);
  }
}

/**
 * Runs `work` every `intervalMs`, one run at a time (a slow store never piles runs up). `stop`
 * waits for the run in progress, so nothing it writes lands after the caller moves on.
 */
interface Repeating {
  stop(): Promise<void>;
}

function repeat(intervalMs: number, work: () => Promise<void>): Repeating {
  const stopped = new AbortController();
  const loop = (async () => {
    while (!stopped.signal.aborted) {
      await sleep(intervalMs, undefined, { signal: stopped.signal }).catch(() => {});
      if (stopped.signal.aborted) return;
      await work().catch(() => {});
    }
  })();
  return {
    async stop() {
      stopped.abort();
      await loop;
    },
  };
}

/** An input must still be the file whose etag and size went into the identity. */
async function checkInput(url: string, local: string, expected: { etag?: string; size?: number } | undefined): Promise<void> {
  if (!expected) return;
  const size = (await stat(local)).size;
  if (expected.size !== undefined && size !== expected.size) {
    throw new Error(`input ${url} changed since it was dispatched: ${size} bytes, expected ${expected.size}; dispatch again`);
  }
  // Multipart ETags ("...-N") are not an MD5 of the content; size is all that can be compared then.
  if (expected.etag && !expected.etag.includes('-')) {
    const etag = await etagOfFile(local);
    if (etag !== expected.etag.replace(/"/g, ''))
      throw new Error(`input ${url} changed since it was dispatched: etag ${etag}, expected ${expected.etag}; dispatch again`);
  }
}

/**
 * The code that runs must be the code in the identity. Where the analysis folder is a git checkout
 * (local runs, an image built from git) its commit must match, and it must be clean unless the
 * identity itself records a dirty state. Elsewhere the certificate says it was not checked.
 */
async function checkCode(spec: AgentSpec): Promise<{ refusal?: string; note?: string }> {
  // `caas dev test` sends none: a development instance runs what is on its disk, by design.
  if (!spec.code) return { note: 'code version not checked: the job names none (a test job of caas dev, or a spec written by hand)' };
  const git = (...args: string[]) =>
    new Promise<string>((resolve, reject) =>
      execFile('git', ['-C', spec.analysis_dir, '--no-optional-locks', ...args], (error, stdout) =>
        error ? reject(error) : resolve(stdout.trim()),
      ),
    );
  // One git call for both questions: the header names the commit, any other line is a change.
  let status: string[];
  try {
    status = (await git('status', '--porcelain=v2', '--branch', '--', '.')).split('\n');
  } catch {
    return { note: `code version not checked: ${spec.analysis_dir} is not a git checkout` };
  }
  const head = status.find((line) => line.startsWith('# branch.oid '))?.slice('# branch.oid '.length) ?? '(no commit)';
  if (head !== spec.code.commit) {
    return {
      refusal: `the analysis code at ${spec.analysis_dir} is at commit ${head}, but the job's identity records ${spec.code.commit}`,
    };
  }
  if (!spec.code.dirty && status.some((line) => line !== '' && !line.startsWith('# '))) {
    return { refusal: `the analysis folder ${spec.analysis_dir} has uncommitted changes that the job's identity does not record` };
  }
  return { note: `code version checked: commit ${head}${spec.code.dirty ? ' (with the recorded uncommitted diff)' : ''}` };
}

const TYPESCRIPT_LOADER = new URL('../analyses/typescript-loader.mjs', import.meta.url).href;

/** Placeholders name caas's own tools and folders, never user data. */
export function expandPlaceholders(token: string, analysisDir: string): string {
  return (
    token
      // biome-ignore lint/suspicious/noTemplateCurlyInString: literal placeholders, expanded here on purpose
      .replaceAll('${analysis_dir}', analysisDir)
      // biome-ignore lint/suspicious/noTemplateCurlyInString: literal placeholder
      .replaceAll('${node}', process.execPath)
      // biome-ignore lint/suspicious/noTemplateCurlyInString: literal placeholder
      .replaceAll('${tsx}', TYPESCRIPT_LOADER)
  );
}

function uniqueName(name: string, taken: string[]): string {
  const base = name || 'input';
  let candidate = base;
  for (let n = 2; taken.some((t) => path.basename(t) === candidate); n++) candidate = `${n}_${base}`;
  return candidate;
}

/** CPU seconds and resident memory of the analysis process, from /proc (Linux; elsewhere none). */
function processUsage(pid: number): { cpu: string; memory: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
    const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return { cpu: `${(ticks / 100).toFixed(2)} s`, memory: rss ? `${(Number(rss) / 1024).toFixed(1)} MiB` : 'unknown' };
  } catch {
    return undefined;
  }
}
