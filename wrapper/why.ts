import { existsSync } from 'node:fs';
import path from 'node:path';
import { claimVerdict, type MetadataStore, openDatabase } from '../backends/db/index.ts';
import { ObjectLocator, openStore } from '../backends/storage/index.ts';
import { CaasError } from '../models/caas-error.ts';
import { isPlainObject } from '../models/plain-object.ts';
import type { MetadataRecord } from '../models/record.ts';
import { shellQuote } from '../models/shell-quote.ts';
import { canonicalJson } from './identity.ts';
import { type JobEntry, readJobEntries } from './job-source.ts';
import { JobPreparer, type PreparedJob } from './prepare.ts';
import type { Workspace } from './workspace.ts';

/** The job named to `caas why` cannot be found or read: invalid input. */
export class WhyError extends CaasError {}

/** One pre-image field whose value differs; `undefined` means the field is absent on that side. */
export interface Difference {
  path: string;
  recorded: unknown;
  job: unknown;
}

export interface NearRecord {
  record: MetadataRecord;
  differences: Difference[];
}

/** What `caas run` would do with the job, as the gate decides it. */
export type GateDecision = 'run' | 'skip' | 'running-elsewhere' | 'retry';

export interface WhyReport {
  where: string;
  job: PreparedJob;
  verdict: GateDecision;
  /** The record with this job's identity, when there is one. */
  match?: MetadataRecord;
  /** Records of the same analysis sharing an input, fewest differences first (only without a match). */
  nearest: NearRecord[];
  /** How many records of the same analysis share an input. */
  candidates: number;
}

export type WhyOutcome = { ok: true; report: WhyReport } | { ok: false; where: string; reason: string };

export interface WhyOptions {
  db: MetadataStore;
  storeScheme: string;
  allowDirty: boolean;
  /** How many nearest records to report. */
  limit: number;
  roots?: string[];
  /** The analysis of an AIND dispatch model, which does not name one (--analysis). */
  analysis?: string;
  now?: Date;
  /** Where folder inputs are listed, as `caas run` lists them (their contents are in the identity). */
  inputs?: ObjectLocator;
}

/** `jobs.jsonl:12` names line 12; a plain path names a file holding a single job. */
export function parseJobLineRef(ref: string): { source: string; line?: number } {
  const match = /^(.+):(\d+)$/.exec(ref);
  if (match && !existsSync(ref)) return { source: match[1]!, line: Number(match[2]) };
  return { source: ref };
}

/** The one job a reference names, read with the same reader `caas run` uses. */
export async function pickJob(ref: string, stdin?: NodeJS.ReadableStream): Promise<JobEntry> {
  const { source, line } = parseJobLineRef(ref);
  let entries: AsyncIterable<JobEntry>;
  try {
    entries = readJobEntries(source, stdin as never);
    const found: JobEntry[] = [];
    for await (const entry of entries) {
      if (line !== undefined) {
        if (entry.where === `${source}:${line}`) return entry;
        continue;
      }
      found.push(entry);
      if (found.length > 1) break;
    }
    if (line !== undefined) throw new WhyError(`${source}: line ${line} holds no job (blank, or past the end of the file)`);
    if (found.length === 0) throw new WhyError(`${source} holds no job`);
    if (found.length > 1) {
      throw new WhyError(`${source} holds several jobs: name one by its line, e.g. \`caas why ${source}:${lineOf(found[0]!.where) ?? 1}\``);
    }
    return found[0]!;
  } catch (error) {
    if (error instanceof WhyError) throw error;
    throw new WhyError((error as Error).message);
  }
}

function lineOf(where: string): number | undefined {
  const match = /:(\d+)$/.exec(where);
  return match ? Number(match[1]) : undefined;
}

/**
 * Answers "why does this run again?": the job's identity as `caas run` computes it, the record with
 * that identity if any, and otherwise the recorded runs of the same analysis on the same inputs with
 * the pre-image fields that separate them from this job.
 */
export async function explainJob(entry: JobEntry, options: WhyOptions): Promise<WhyOutcome> {
  const preparer = new JobPreparer({
    storeScheme: options.storeScheme,
    allowDirty: options.allowDirty,
    roots: options.roots,
    ...(options.inputs ? { inputs: options.inputs } : {}),
    aindAnalysis: options.analysis,
  });
  const prepared = await preparer.prepare(entry);
  if (!prepared.ok) return { ok: false, where: prepared.where, reason: prepared.reason };
  const job = prepared.job;
  const match = await options.db.get(job.identity);
  if (match) {
    return {
      ok: true,
      report: { where: job.where, job, verdict: verdictOf(match, options.now ?? new Date()), match, nearest: [], candidates: 0 },
    };
  }
  const assetIds = [...new Set(job.preimage.inputs.map((i) => i.asset_id))];
  const near: NearRecord[] = [];
  for await (const record of options.db.find({ 'analysis.name': job.analysis.name, 'inputs.asset_id': { $in: assetIds } })) {
    near.push({ record, differences: preimageDiff(record.preimage, job.preimage) });
  }
  near.sort(
    (a, b) =>
      a.differences.length - b.differences.length ||
      (a.record.created < b.record.created ? 1 : a.record.created > b.record.created ? -1 : 0),
  );
  return { ok: true, report: { where: job.where, job, verdict: 'run', nearest: near.slice(0, options.limit), candidates: near.length } };
}

function verdictOf(record: MetadataRecord, now: Date): GateDecision {
  const verdict = claimVerdict(record, now, undefined);
  return verdict === 'succeeded' ? 'skip' : verdict === 'running' ? 'running-elsewhere' : 'retry';
}

/**
 * The fields where two pre-images differ, as paths like `parameters.cutoff` or
 * `inputs[0].files[1].etag`. A subtree present on one side only is one difference, not one per leaf,
 * so the count ranks records by how many separate things changed.
 */
export function preimageDiff(recorded: unknown, job: unknown, at = ''): Difference[] {
  if (recorded !== undefined && job !== undefined && canonicalJson(recorded) === canonicalJson(job)) return [];
  if (isPlainObject(recorded) && isPlainObject(job)) {
    const keys = [...new Set([...Object.keys(recorded), ...Object.keys(job)])].sort();
    return keys.flatMap((key) => preimageDiff(recorded[key], job[key], at ? `${at}.${key}` : key));
  }
  if (Array.isArray(recorded) && Array.isArray(job)) {
    return Array.from({ length: Math.max(recorded.length, job.length) }, (_, i) => preimageDiff(recorded[i], job[i], `${at}[${i}]`)).flat();
  }
  return [{ path: at || '(pre-image)', recorded, job }];
}

/** A line of advice per kind of change, so the diff reads as an answer rather than a puzzle. */
export function hintsFor(differences: readonly Difference[], job: PreparedJob): string[] {
  const hints: string[] = [];
  const commit = differences.find((d) => d.path === 'code.commit');
  if (commit && typeof commit.recorded === 'string' && typeof commit.job === 'string') {
    const folder = path.relative(job.code.repoRoot, job.analysis.dir) || '.';
    hints.push(
      `the analysis code changed: git -C ${shellQuote(job.code.repoRoot)} log --oneline ${commit.recorded.slice(0, 12)}..${commit.job.slice(0, 12)} -- ${shellQuote(folder)}`,
    );
  }
  if (differences.some((d) => d.path === 'code.dirty')) hints.push('one side ran with uncommitted changes (--allow-dirty hashes the diff)');
  if (differences.some((d) => /^inputs\[\d+\]\.files\[\d+\]\.(etag|size)$/.test(d.path))) {
    hints.push('an input file changed since the recorded run (new etag or size): its content is not the same data');
  }
  if (differences.some((d) => d.path === 'output')) hints.push('the results go somewhere else (store scheme, bucket or group)');
  if (differences.some((d) => d.path.startsWith('analysis.'))) hints.push('the analysis version changed');
  return hints;
}

/**
 * `caas why <ref>`: reads the job first (a bad reference never touches the DB), then explains it
 * against the workspace's records. The store is opened only for its scheme, which is part of the
 * output location and so of the identity.
 */
export async function explainJobRef(
  ref: string,
  workspace: Workspace,
  options: Omit<WhyOptions, 'db' | 'storeScheme'>,
): Promise<WhyOutcome> {
  const entry = await pickJob(ref);
  const store = await openStore(workspace.storeUrl, { home: workspace.home, settings: workspace.storeSettings });
  const db = await openDatabase(workspace.dbUrl, { home: workspace.home, readOnly: true });
  const inputs = new ObjectLocator(store, { home: workspace.home, settings: workspace.storeSettings });
  try {
    return await explainJob(entry, { ...options, db, storeScheme: store.scheme, inputs });
  } finally {
    await inputs.close();
    await db.close();
    await store.close();
  }
}
