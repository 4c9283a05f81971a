import { Readable } from 'node:stream';
import { z } from 'zod';
import { AnalysisError, analysisRoots, listAnalysisNames, loadAnalysis } from '../analyses/index.ts';
import { type Database, openDatabase } from '../backends/db/index.ts';
import { getText, type ObjectStore, objectUrl, openStore } from '../backends/storage/index.ts';
import { isAindDispatchModel } from '../models/aind-dispatch.ts';
import { jobFolder } from '../models/bucket-contract.ts';
import { CaasError } from '../models/caas-error.ts';
import type { Filter } from '../models/filter.ts';
import { JobInput } from '../models/job-input.ts';
import { isPlainObject } from '../models/plain-object.ts';
import type { QueuedJob } from '../models/queued-job.ts';
import type { MetadataRecord, Submitter } from '../models/record.ts';
import type { AnalysisDetail, AnalysisSummary, Issue, JobAnswer, JobStatusAnswer, JobsAnswer } from '../models/service-api.ts';
import { StatusFile } from '../models/status.ts';
import { readCodeVersion } from '../wrapper/code-version.ts';
import type { PlanEntry } from '../wrapper/gate.ts';
import type { JobEntry } from '../wrapper/job-source.ts';
import { type PlanSettings, planEntries } from '../wrapper/run.ts';
import { loadRunnableAnalysis } from '../wrapper/runnable-analysis.ts';
import type { Workspace } from '../wrapper/workspace.ts';
import { LOOPBACK_ADMIN, type Principal } from './tokens.ts';

/** What the service answers a request with when it is not a 2xx: the status and the error body. */
export class HttpError extends CaasError {
  constructor(
    readonly status: 400 | 401 | 404 | 409 | 413 | 429 | 503,
    message: string,
    readonly issues?: Issue[],
  ) {
    super(message);
  }
}

/**
 * How many of a group's jobs may wait in the queue per job it may run at once (its instance_limit,
 * else the blueprint's deploy_limit): enough to keep its slots busy, not so many that one group's
 * flood holds the queue (and the DB) for hours. Past it, jobs are REFUSED, answered 429.
 */
export const QUEUED_PER_SLOT = 25;

export interface ServiceSettings extends Workspace {
  allowDirty: boolean;
  /** With no tokens, who the jobs run for (--user, CAAS_USER), as with caas run. */
  user?: string;
}

/**
 * The service's view of the workspace: its store and metadata DB, opened once for the server's
 * life, and what every route asks of them. Planning goes through the same planEntries as `caas
 * run`, so the service never tells a job apart from how the CLI would.
 */
export class Service {
  private constructor(
    readonly settings: ServiceSettings,
    readonly store: ObjectStore,
    readonly db: Database,
  ) {}

  static async open(settings: ServiceSettings): Promise<Service> {
    const store = await openStore(settings.storeUrl, { home: settings.home, settings: settings.storeSettings });
    try {
      return new Service(settings, store, await openDatabase(settings.dbUrl, { home: settings.home }));
    } catch (error) {
      await store.close();
      throw error;
    }
  }

  get planSettings(): PlanSettings {
    return {
      home: this.settings.home,
      storeSettings: this.settings.storeSettings,
      allowDirty: this.settings.allowDirty,
      user: this.settings.user,
    };
  }

  async close(): Promise<void> {
    await this.db.close();
    await this.store.close();
  }

  // ---- analyses ----

  async analyses(): Promise<AnalysisSummary[]> {
    const names = listAnalysisNames(analysisRoots());
    const found: AnalysisSummary[] = [];
    for (const name of names) {
      try {
        found.push(await this.summary(await loadAnalysis(name)));
      } catch (error) {
        // One broken analysis folder must not hide the others: it is listed with what is wrong.
        if (!(error instanceof CaasError)) throw error;
        found.push({ name, version: '', description: '', code: { url: null, commit: null, dirty: false, problem: error.message } });
      }
    }
    return found;
  }

  async analysis(name: string): Promise<AnalysisDetail> {
    let analysis: Awaited<ReturnType<typeof loadAnalysis>>;
    try {
      analysis = await loadAnalysis(name);
    } catch (error) {
      if (error instanceof AnalysisError) throw new HttpError(404, `analysis "${name}": ${error.message}`);
      throw error;
    }
    const blueprint = analysis.blueprint;
    return {
      ...(await this.summary(analysis)),
      parameters: jsonSchemaOf(analysis.parameters as z.ZodType),
      outputs: analysis.outputs ? { file: analysis.outputs.file, schema: jsonSchemaOf(analysis.outputs.model as z.ZodType) } : null,
      blueprint: {
        bucket: blueprint.bucket,
        instance_type: blueprint.instance_type,
        allowed_instance_types: blueprint.allowed_instance_types,
        max_runtime_minutes: blueprint.max_runtime_minutes,
        deploy_limit: blueprint.deploy_limit,
        groups: blueprint.groups.map((g) => ({ name: g.name, instance_limit: g.instance_limit ?? null, budget: g.budget ?? null })),
      },
    };
  }

  private async summary(analysis: Awaited<ReturnType<typeof loadAnalysis>>): Promise<AnalysisSummary> {
    let code: AnalysisSummary['code'];
    try {
      const state = await readCodeVersion(analysis.dir, { allowDirty: false });
      code = { url: state.version.url, commit: state.version.commit, dirty: state.dirtyFiles.length > 0, problem: null };
    } catch (error) {
      if (!(error instanceof CaasError)) throw error;
      code = { url: null, commit: null, dirty: false, problem: error.message };
    }
    return { name: analysis.name, version: analysis.version, description: analysis.description, code };
  }

  // ---- jobs ----

  /**
   * Plans the jobs of a request (and, with execute, queues the RUN ones) and says what became of
   * each. A group token's jobs go into its group: one naming another group is INVALID.
   */
  async submit(
    values: readonly { where: string; value: unknown }[],
    principal: Principal,
    execute: boolean,
  ): Promise<{ status: 200 | 202 | 400 | 404 | 429; body: JobsAnswer }> {
    const submitter = this.submitterOf(principal);
    const entries: JobEntry[] = values.map(({ where, value }) => ({ where, value }));
    // Jobs that name no group go into the token's; the group of each is checked once the job is
    // read, whichever way it names one (a job input's `group`, an AIND model's `caas.group`).
    const plan = await planEntries(
      entries,
      { ...this.planSettings, submitter, defaultGroup: principal.group ?? undefined },
      this.store,
      this.db,
      { plan: () => {}, warn: () => {} },
    );
    const counted = new Map<string, number>();
    const answers: JobAnswer[] = [];
    for (const [i, planned] of plan.entries()) {
      const value = entries[i]?.value;
      const outside = principal.group !== null && planned.job !== undefined && planned.job.group !== principal.group;
      if (outside) {
        const message = `this token submits into group "${principal.group}" only`;
        const path = isAindDispatchModel(value) ? ['caas', 'group'] : ['group'];
        const refused: PlanEntry = { action: 'INVALID', where: planned.where, reason: `${path.join('.')}: ${message}` };
        answers.push(await this.answer(refused, [{ path, message }], execute, counted, submitter));
        continue;
      }
      const issues = planned.action === 'INVALID' ? await issuesOf(value, planned.reason ?? '') : [];
      answers.push(await this.answer(planned, issues, execute, counted, submitter));
    }
    const counts = { RUN: 0, SKIP: 0, RUNNING: 0, INVALID: 0, REFUSED: 0 };
    for (const answer of answers) counts[answer.action]++;
    return { status: statusOf(answers, values), body: { execute, counts, jobs: answers } };
  }

  /**
   * Who a request's jobs run for, checked against their group's `users` and kept with the queue
   * entry and the record's attempt: a token's name; with no tokens, the server's --user (declared).
   */
  submitterOf(principal: Principal): Submitter | undefined {
    if (principal !== LOOPBACK_ADMIN) return { user: principal.name, via: 'token' };
    return this.settings.user ? { user: this.settings.user, via: 'declared' } : undefined;
  }

  private async answer(
    entry: PlanEntry,
    issues: Issue[],
    execute: boolean,
    counted: Map<string, number>,
    submitter: Submitter | undefined,
  ): Promise<JobAnswer> {
    const identity = entry.job?.identity ?? null;
    const base: JobAnswer = {
      where: entry.where,
      action: entry.action,
      identity,
      analysis: entry.job?.analysis.name ?? null,
      reason: entry.reason ?? null,
      issues,
      queued: false,
      location: identity ? `/api/jobs/${identity}` : null,
      record: entry.action === 'SKIP' || entry.action === 'RUNNING' ? (entry.record ?? null) : null,
    };
    if (entry.action !== 'RUN' || !entry.job) return base;
    const job = entry.job;
    const waiting = await this.db.queue.queued(job.identity);
    if (waiting && (waiting.state === 'queued' || waiting.state === 'taken')) {
      return {
        ...base,
        queued: execute,
        reason: `in the queue since ${waiting.queued} (${waiting.state === 'taken' ? 'taken by a server' : 'waiting'})`,
      };
    }
    if (!execute) return base;
    const key = `${job.analysis.name}\u0000${job.group}`;
    const limit = queueLimitOf(job.analysis.blueprint, job.group);
    const already = counted.get(key) ?? (await this.db.queue.countWaiting(job.analysis.name, job.group));
    if (already >= limit) {
      return {
        ...base,
        action: 'REFUSED',
        reason: `group "${job.group}" of ${job.analysis.name} has ${already} jobs in the queue, as many as its limits allow (${limit / QUEUED_PER_SLOT} at once × ${QUEUED_PER_SLOT}): submit again when some have run`,
      };
    }
    const now = new Date().toISOString();
    const queued = await this.db.queue.enqueue({
      _id: job.identity,
      analysis: job.analysis.name,
      group: job.group,
      state: 'queued',
      input: job.input,
      where: job.where,
      ...(submitter ? { submitter } : {}),
      queued: now,
      not_before: now,
      taken: null,
      tries: 0,
      cancel: null,
      outcome: null,
      reason: null,
      updated: now,
    });
    if (queued.accepted) counted.set(key, already + 1);
    return { ...base, queued: true, reason: entry.reason ?? (queued.accepted ? 'queued' : `in the queue since ${queued.entry.queued}`) };
  }

  /** A queued job planned again, as `caas run` would plan it now. */
  planFor(entry: QueuedJob): Promise<PlanEntry[]> {
    const settings = { ...this.planSettings, ...(entry.submitter ? { submitter: entry.submitter } : {}) };
    return planEntries([{ where: entry.where, value: entry.input }], settings, this.store, this.db, {
      plan: () => {},
      warn: () => {},
    });
  }

  /** The job's queue entry and record, when the principal may see them; 404 otherwise (no existence leak). */
  async visibleJob(identity: string, principal: Principal): Promise<{ entry?: QueuedJob; record?: MetadataRecord }> {
    const [entry, record] = await Promise.all([this.db.queue.queued(identity), this.db.get(identity)]);
    const group = entry?.group ?? record?.job?.group ?? null;
    if ((!entry && !record) || (principal.group !== null && group !== principal.group)) {
      throw new HttpError(404, `no job ${identity}${principal.group === null ? '' : ` in group "${principal.group}"`}`);
    }
    return { entry, record };
  }

  async jobStatus(identity: string, principal: Principal): Promise<JobStatusAnswer> {
    const { entry, record } = await this.visibleJob(identity, principal);
    let statusFile: unknown = null;
    let end: string | null = null;
    let folder: string | null = null;
    if (record?.job) {
      const keys = jobFolder(record.job.bucket, record.job.group, record.job.timestamp);
      folder = objectUrl(this.store.scheme, record.job.bucket, keys.results);
      const [status, ended] = await Promise.all([
        this.statusFileOf(record.job.bucket, keys.logs),
        getText(this.store, record.job.bucket, keys.end),
      ]);
      statusFile = status;
      end = ended ?? null;
    }
    return {
      identity,
      state: stateOf(entry, record),
      analysis: entry?.analysis ?? record?.analysis.name ?? null,
      group: entry?.group ?? record?.job?.group ?? null,
      attempts: record?.attempts.length ?? 0,
      queue: entry ?? null,
      job_folder: folder,
      status_file: statusFile,
      end: end ?? null,
      record: record ?? null,
    };
  }

  private async statusFileOf(bucket: string, logs: string): Promise<unknown> {
    for await (const info of this.store.list(bucket, logs)) {
      if (!/_STATUS\.json$/.test(info.key)) continue;
      const text = await getText(this.store, bucket, info.key);
      try {
        const parsed = StatusFile.safeParse(JSON.parse(text ?? ''));
        return parsed.success ? parsed.data : null;
      } catch {
        // Caught mid-write: the next look reads it whole.
        return null;
      }
    }
    return null;
  }

  /** The stdout lines of a record's current attempt, with that attempt's number. */
  async logLines(record: MetadataRecord | undefined): Promise<{ attempt: number; lines: string[]; end: string | undefined }> {
    if (!record?.job) return { attempt: 0, lines: [], end: undefined };
    const keys = jobFolder(record.job.bucket, record.job.group, record.job.timestamp);
    const [stdout, end] = await Promise.all([
      getText(this.store, record.job.bucket, keys.stdout),
      getText(this.store, record.job.bucket, keys.end),
    ]);
    const all = (stdout ?? '').split('\n');
    // A last line without its newline may be half written: left for the next look, unless the attempt is over.
    if (end === undefined) all.pop();
    return { attempt: record.attempts.length, lines: all.filter((line) => line !== ''), end };
  }

  /** An output of a job, streamed from the store; the path stays inside its process_results/. */
  async output(identity: string, relative: string, principal: Principal): Promise<{ body: ReadableStream; size: number; name: string }> {
    const problem = outputPathProblem(relative);
    if (problem) throw new HttpError(400, `output path "${relative}": ${problem}`);
    const { record } = await this.visibleJob(identity, principal);
    if (!record?.job) throw new HttpError(404, `job ${identity} has no job folder yet`);
    const keys = jobFolder(record.job.bucket, record.job.group, record.job.timestamp);
    const key = `${keys.results}process_results/${relative}`;
    const info = await this.store.head(record.job.bucket, key);
    if (!info) throw new HttpError(404, `job ${identity} has no output ${relative}`);
    const stream = await this.store.getStream(record.job.bucket, key);
    return { body: Readable.toWeb(stream) as ReadableStream, size: info.size, name: relative.split('/').pop() ?? relative };
  }

  /** Records matching a filter, restricted to the principal's group. */
  async records(
    filter: Filter,
    principal: Principal,
    options: { sort?: Record<string, 1 | -1>; limit: number },
  ): Promise<MetadataRecord[]> {
    const scoped = principal.group === null ? filter : { $and: [filter, { 'job.group': principal.group }] };
    const found: MetadataRecord[] = [];
    for await (const record of this.db.find(scoped, options)) found.push(record);
    return found;
  }

  async visibleRecord(identity: string, principal: Principal): Promise<MetadataRecord> {
    const record = await this.db.get(identity);
    if (!record || (principal.group !== null && record.job?.group !== principal.group)) {
      throw new HttpError(404, `no record ${identity}${principal.group === null ? '' : ` in group "${principal.group}"`}`);
    }
    return record;
  }
}

/** Why an output path is refused: it must stay inside process_results/, so no "..", no absolute path, no odd characters. */
export function outputPathProblem(relative: string): string | undefined {
  if (relative === '') return 'empty: name a file under process_results/';
  if (relative.startsWith('/') || relative.includes('\\')) return 'must be relative to process_results/, with "/" between folders';
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(relative)) return 'holds a control character';
  if (relative.split('/').some((part) => part === '' || part === '.' || part === '..')) return 'may not hold "..", "." or empty segments';
  return undefined;
}

/** How many of a group's jobs may wait in the queue (QUEUED_PER_SLOT per job it may run at once). */
function queueLimitOf(blueprint: { deploy_limit: number; groups: { name: string; instance_limit?: number }[] }, group: string): number {
  const limit = blueprint.groups.find((g) => g.name === group)?.instance_limit ?? blueprint.deploy_limit;
  return limit * QUEUED_PER_SLOT;
}

/**
 * 202 when a job is in the queue for this request; otherwise 400 for invalid input (404 when every
 * invalid job names an analysis that does not exist), 429 when a group's limits refused jobs, and
 * 200 when everything was answered already (or this was a dry run of valid jobs).
 */
function statusOf(answers: readonly JobAnswer[], values: readonly { where: string; value: unknown }[]): 200 | 202 | 400 | 404 | 429 {
  if (answers.some((a) => a.queued)) return 202;
  const invalid = answers.filter((a) => a.action === 'INVALID');
  if (invalid.length > 0) {
    const known = new Set(listAnalysisNames(analysisRoots()));
    const unknown = invalid.every((a) => {
      const value = values.find((v) => v.where === a.where)?.value;
      const name = isPlainObject(value) ? value.analysis : undefined;
      return typeof name === 'string' && !known.has(name);
    });
    return unknown ? 404 : 400;
  }
  return answers.some((a) => a.action === 'REFUSED') ? 429 : 200;
}

function stateOf(entry: QueuedJob | undefined, record: MetadataRecord | undefined): JobStatusAnswer['state'] {
  if (record?.status === 'running' || record?.status === 'claimed') return 'running';
  if (entry?.state === 'queued') return 'queued';
  if (entry?.state === 'taken') return 'running';
  if (record) return record.status;
  if (entry?.state === 'cancelled') return 'cancelled';
  return entry?.outcome === 'refused' ? 'refused' : 'failed';
}

/**
 * The issues of an invalid job with their field paths, from the same zod models the preparer
 * checked it with: the job input, then the analysis' parameters. A reason from elsewhere (an
 * unreadable input, a refused group) becomes one issue at the path its message leads with.
 */
export async function issuesOf(value: unknown, reason: string): Promise<Issue[]> {
  const asJob = JobInput.safeParse(value);
  if (!asJob.success) return asJob.error.issues.map((issue) => ({ path: issue.path.map(pathPart), message: issue.message }));
  try {
    const analysis = await loadRunnableAnalysis(asJob.data.analysis);
    const parameters = (analysis.parameters as z.ZodType).safeParse(asJob.data.parameters);
    if (!parameters.success) {
      return parameters.error.issues.map((issue) => ({ path: ['parameters', ...issue.path.map(pathPart)], message: issue.message }));
    }
  } catch (error) {
    if (!(error instanceof CaasError)) throw error;
  }
  const lead = /^([A-Za-z_][\w.[\]]*): (.*)$/s.exec(reason);
  if (!lead) return [{ path: [], message: reason }];
  const path = lead[1]!
    .split(/[.[\]]+/)
    .filter(Boolean)
    .map((part) => (/^\d+$/.test(part) ? Number(part) : part));
  return [{ path, message: lead[2]! }];
}

function pathPart(part: PropertyKey): string | number {
  return typeof part === 'number' ? part : String(part);
}

/** A zod model as JSON Schema, for forms: the input side (defaults make fields optional). */
function jsonSchemaOf(model: z.ZodType): Record<string, unknown> {
  try {
    return z.toJSONSchema(model, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  } catch {
    return {};
  }
}
