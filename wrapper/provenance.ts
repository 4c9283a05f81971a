import path from 'node:path';
import { type Filter, openDatabase } from '../backends/db/index.ts';
import { openStore, parseObjectUrl } from '../backends/storage/index.ts';
import { CaasError } from '../models/caas-error.ts';
import { checkFilter } from '../models/filter.ts';
import { type JobLocation, type MetadataRecord, RecordStatus } from '../models/record.ts';

/** A filter, sort or shortcut the user wrote that no store could run. */
export class QueryError extends CaasError {}

export interface QueryShortcuts {
  analysis?: string;
  /** Asset id, asset name, asset location or the URL of one of its files. */
  input?: string;
  /** Full or abbreviated commit of the analysis code. */
  commit?: string;
  /** One status or a comma-separated list. */
  status?: string;
  /** ISO date, or a span back from now such as 7d, 12h, 30m, 2w. */
  since?: string;
}

/**
 * Parses a MongoDB filter and checks it (models/filter.ts) before any store is asked, so a mistake
 * fails the same way on SQLite and MongoDB, and in `caas query` as in `caas dispatch`.
 */
export function parseFilter(text: string): Filter {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new QueryError(`the filter is not valid JSON (${(error as Error).message}); example: '{"status":"failed"}'`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new QueryError(`the filter must be a JSON object such as '{"analysis.name":"unit-filter"}', got ${JSON.stringify(value)}`);
  }
  return checkFilter(value);
}

/** The filter and the shortcuts, all of which must hold. */
export function buildFilter(filter: Filter, shortcuts: QueryShortcuts, now = new Date()): Filter {
  const clauses: Filter[] = Object.keys(filter).length > 0 ? [filter] : [];
  if (shortcuts.analysis !== undefined) clauses.push({ 'analysis.name': shortcuts.analysis });
  if (shortcuts.input !== undefined) {
    const input = shortcuts.input;
    clauses.push({
      $or: [{ 'inputs.asset_id': input }, { 'inputs.name': input }, { 'inputs.location': input }, { 'inputs.files.url': input }],
    });
  }
  if (shortcuts.commit !== undefined) clauses.push({ 'code.commit': commitMatcher(shortcuts.commit) });
  if (shortcuts.status !== undefined) clauses.push({ status: statusMatcher(shortcuts.status) });
  if (shortcuts.since !== undefined) clauses.push({ created: { $gte: sinceInstant(shortcuts.since, now) } });
  const combined = clauses.length === 0 ? {} : clauses.length === 1 ? clauses[0]! : { $and: clauses };
  return checkFilter(combined);
}

function commitMatcher(commit: string): unknown {
  const given = commit.trim().toLowerCase();
  if (!/^[0-9a-f]{4,64}$/.test(given)) throw new QueryError(`--commit expects a commit hash (at least 4 hex digits), got "${commit}"`);
  // An abbreviated hash, as git prints it, matches by prefix; a regex anchored at the start means the same on both stores.
  return given.length >= 40 ? given : { $regex: `^${given}` };
}

function statusMatcher(status: string): unknown {
  const wanted = status
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const s of wanted) {
    if (!RecordStatus.safeParse(s).success)
      throw new QueryError(`--status "${s}" is not a status: expected ${RecordStatus.options.join(', ')}`);
  }
  if (wanted.length === 0) throw new QueryError(`--status expects one of ${RecordStatus.options.join(', ')}`);
  return wanted.length === 1 ? wanted[0] : { $in: wanted };
}

const SPAN_UNITS: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** `7d`, `12h`, `30m`, `2w` back from now, or an ISO date; records keep `created` as ISO text, so the bound is ISO text too. */
export function sinceInstant(text: string, now = new Date()): string {
  const span = /^(\d+(?:\.\d+)?)([mhdw])$/.exec(text.trim());
  if (span) return new Date(now.getTime() - Number(span[1]) * SPAN_UNITS[span[2]!]!).toISOString();
  if (/^\d{4}-\d{2}-\d{2}/.test(text.trim())) {
    const at = Date.parse(text.trim());
    if (!Number.isNaN(at)) return new Date(at).toISOString();
  }
  throw new QueryError(
    `--since expects an ISO date (2024-05-01, 2024-05-01T12:00Z) or a span back from now (30m, 12h, 7d, 2w), got "${text}"`,
  );
}

/** `created:-1`, `-created`, `end:1,analysis.name` → a MongoDB sort document. */
export function parseSort(text: string): Record<string, 1 | -1> {
  const sort: Record<string, 1 | -1> = {};
  for (const part of text
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const match = /^(-?)([A-Za-z_][\w.]*)(?::(-1|1|asc|desc))?$/.exec(part);
    if (!match || (match[1] && match[3])) {
      throw new QueryError(`--sort "${part}" is not a sort key: use field, -field, field:1 or field:-1 (e.g. created:-1)`);
    }
    const descending = match[1] === '-' || match[3] === '-1' || match[3] === 'desc';
    sort[match[2]!] = descending ? -1 : 1;
  }
  if (Object.keys(sort).length === 0) throw new QueryError('--sort needs a field, e.g. created:-1 or -created');
  return sort;
}

export function parseFields(text: string): string[] {
  const fields = text
    .split(',')
    .map((f) => f.trim())
    .filter(Boolean);
  for (const field of fields) {
    if (!/^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$/.test(field)) {
      throw new QueryError(`--fields "${field}" is not a dotted field path such as status or code.commit`);
    }
  }
  if (fields.length === 0) throw new QueryError('--fields needs at least one field, e.g. status,code.commit');
  return fields;
}

type Tree = Map<string, Tree | true>;

/**
 * A MongoDB-style projection of dotted paths: nested objects keep their shape and a path through an
 * array applies to each of its documents, so `inputs.name` gives `{inputs: [{name}, ...]}`.
 * `_id` (the identity) is always kept, as MongoDB does.
 */
export function project(doc: Record<string, unknown>, fields: readonly string[]): Record<string, unknown> {
  const tree: Tree = new Map([['_id', true]]);
  for (const field of fields) {
    let node = tree;
    const parts = field.split('.');
    parts.forEach((part, i) => {
      const existing = node.get(part);
      if (existing === true) return;
      if (i === parts.length - 1) {
        node.set(part, true);
        return;
      }
      const next: Tree = existing ?? new Map();
      node.set(part, next);
      node = next;
    });
  }
  return projectTree(doc, tree) as Record<string, unknown>;
}

function projectTree(value: unknown, tree: Tree): unknown {
  if (Array.isArray(value)) return value.filter(isPlainObject).map((v) => projectTree(v, tree));
  if (!isPlainObject(value)) return undefined;
  const out: Record<string, unknown> = {};
  for (const [key, sub] of tree) {
    if (!(key in value)) continue;
    if (sub === true) out[key] = value[key];
    else {
      const inner = projectTree(value[key], sub);
      if (inner !== undefined) out[key] = inner;
    }
  }
  return out;
}

/** Every value a dotted path reaches, through arrays, as MongoDB's filter does. */
export function valuesAt(doc: unknown, field: string): unknown[] {
  let current: unknown[] = [doc];
  for (const part of field.split('.')) {
    const next: unknown[] = [];
    for (const value of current) {
      const items = Array.isArray(value) ? value : [value];
      for (const item of items) if (isPlainObject(item) && part in item) next.push(item[part]);
    }
    current = next;
  }
  return current.flatMap((v) => (Array.isArray(v) ? v : [v]));
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

export interface ResultsPlace {
  results: string;
  logs: string;
  /** Local folders, for results in a file store. */
  localResults?: string;
  localLogs?: string;
  /** A shell command that copies the results to ./results. */
  fetch: string;
}

/**
 * Where a job's results and logs are and how to copy them here. A file store's URLs name a bucket
 * and key but not the store's root folder, which only the caller knows (its --store or {home}/buckets).
 */
export function resultsPlace(job: JobLocation, options: { fileRoot?: string; s3Endpoint?: string }): ResultsPlace {
  const results = parseObjectUrl(job.results);
  if (results.scheme === 's3') {
    const endpoint = options.s3Endpoint ? ` --endpoint-url ${shellQuote(options.s3Endpoint)}` : '';
    return { results: job.results, logs: job.logs, fetch: `aws s3 cp --recursive${endpoint} ${shellQuote(job.results)} ./results` };
  }
  const local = (url: string) => {
    const parsed = parseObjectUrl(url);
    return parsed.bucket === '' ? parsed.key : path.join(options.fileRoot ?? '', parsed.bucket, parsed.key);
  };
  const localResults = local(job.results);
  return {
    results: job.results,
    logs: job.logs,
    localResults,
    localLogs: local(job.logs),
    fetch: `cp -R ${shellQuote(localResults.replace(/\/$/, ''))} ./results`,
  };
}

/** Quotes only what a POSIX shell would split or expand, so plain paths stay readable. */
export function shellQuote(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}

/** Where the records and the results live, as the command line named them. */
export interface Workspace {
  home: string;
  storeUrl: string;
  dbUrl: string;
  s3Endpoint?: string;
}

/** No record, or more than one, for what the user typed: invalid input. */
export class RecordLookupError extends CaasError {}

const CANDIDATES = 10;

/**
 * The one record an identity or unique prefix names, and where its results are. An ambiguous prefix
 * lists the identities it starts, so the user can give more digits.
 */
export async function recordByPrefix(given: string, workspace: Workspace): Promise<{ record: MetadataRecord; place?: ResultsPlace }> {
  const prefix = given.trim().toLowerCase();
  if (!/^[0-9a-f]{1,64}$/.test(prefix))
    throw new RecordLookupError(`"${given}" is not an identity: expected hex digits (an identity or its prefix)`);
  const db = await openDatabase(workspace.dbUrl, { home: workspace.home, readOnly: true });
  let record: MetadataRecord | undefined;
  try {
    const ids = await db.idsWithPrefix(prefix, CANDIDATES + 1);
    if (ids.length === 0) throw new RecordLookupError(`no record has an identity starting with ${prefix} (caas query lists the records)`);
    if (ids.length > 1) {
      const listed = ids.slice(0, CANDIDATES).map((id) => `  ${id}`);
      if (ids.length > CANDIDATES) listed.push('  ...');
      throw new RecordLookupError(`${prefix} is ambiguous; it starts these identities, so give more digits:\n${listed.join('\n')}`);
    }
    record = await db.get(ids[0]!);
  } finally {
    await db.close();
  }
  if (!record) throw new RecordLookupError(`record ${prefix} disappeared while reading it`);
  if (!record.job) return { record };
  // file:// results name a bucket and key; the folder holding the buckets is the --store folder, or {home}/buckets.
  const store = await openStore(workspace.storeUrl.startsWith('file:') ? workspace.storeUrl : 'file:', { home: workspace.home });
  try {
    return { record, place: resultsPlace(record.job, { fileRoot: store.root, s3Endpoint: workspace.s3Endpoint }) };
  } finally {
    await store.close();
  }
}
