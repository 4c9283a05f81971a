import { CaasError } from '../models/caas-error.ts';
import { checkFilter, type Filter } from '../models/filter.ts';
import { RecordStatus } from '../models/record.ts';

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
