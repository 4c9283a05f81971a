import type { Filter } from '../../models/filter.ts';
import { isPlainObject } from '../../models/plain-object.ts';
import { isIndexedPath, Kind, SORTABLE_PATHS } from './record-index.ts';

/**
 * The part of a filter an index can answer, as a set of candidate records that holds every match
 * (and maybe more): the store still checks each candidate against the whole filter, so a clause
 * left out here (`all`) only costs reading more candidates, never a wrong answer. Whatever is not
 * plainly a superset under MongoDB's semantics (null matching a missing field, `$ne`, `$not`,
 * array positions, case-insensitive regexes, ...) is left out.
 */
export type FilterPlan =
  | { op: 'all' }
  | { op: 'and'; parts: FilterPlan[] }
  | { op: 'or'; parts: FilterPlan[] }
  /** Records with one of these values at `path` (an empty list: no record). */
  | { op: 'equals'; path: string; values: { kind: Kind; value: string | number }[] }
  /** Records with a value of `kind` between the bounds at `path`. */
  | { op: 'range'; path: string; kind: Kind; lower?: Bound; upper?: Bound }
  | { op: 'exists'; path: string };

export interface Bound {
  value: string | number;
  inclusive: boolean;
}

const ALL: FilterPlan = { op: 'all' };

/** The plan of a filter that has already passed checkFilter. */
export function planFilter(filter: Filter): FilterPlan {
  const parts: FilterPlan[] = [];
  for (const [key, value] of Object.entries(filter)) {
    if (key === '$and') parts.push(and((value as Filter[]).map(planFilter)));
    else if (key === '$or') parts.push(or((value as Filter[]).map(planFilter)));
    else if (key.startsWith('$')) parts.push(ALL);
    else parts.push(planCondition(key, value));
  }
  return and(parts);
}

function and(parts: FilterPlan[]): FilterPlan {
  const kept = parts.flatMap((part) => (part.op === 'all' ? [] : part.op === 'and' ? part.parts : [part]));
  return kept.length === 0 ? ALL : kept.length === 1 ? kept[0]! : { op: 'and', parts: kept };
}

function or(parts: FilterPlan[]): FilterPlan {
  // One branch the index cannot answer may match any record: the whole $or is then left to the check.
  if (parts.some((part) => part.op === 'all')) return ALL;
  const kept = parts.flatMap((part) => (part.op === 'or' ? part.parts : [part]));
  return kept.length === 1 ? kept[0]! : { op: 'or', parts: kept };
}

function planCondition(path: string, condition: unknown): FilterPlan {
  if (!isIndexedPath(path)) return ALL;
  if (!isPlainObject(condition) || !Object.keys(condition).some((key) => key.startsWith('$'))) return equals(path, [condition]);
  const parts: FilterPlan[] = [];
  const ranges = new Map<Kind, { lower?: Bound; upper?: Bound }>();
  for (const [op, operand] of Object.entries(condition)) {
    if (op === '$eq') parts.push(equals(path, [operand]));
    else if (op === '$in') parts.push(equals(path, operand as unknown[]));
    else if (op === '$exists') parts.push(operand === true ? { op: 'exists', path } : ALL);
    else if (op === '$regex') parts.push(regexPrefix(path, operand as string, condition.$options));
    else if (op === '$gt' || op === '$gte' || op === '$lt' || op === '$lte') {
      const kind = rangeKind(operand);
      if (kind === undefined) continue;
      const bound = { value: operand as string | number, inclusive: op.endsWith('e') };
      const side = op.startsWith('$g') ? 'lower' : 'upper';
      // On an array each bound may hold for another element ({"$gte":1,"$lte":0} matches [2, 0]): one range per bound.
      if (!SORTABLE_PATHS.has(path)) {
        parts.push({ op: 'range', path, kind, [side]: bound });
        continue;
      }
      const range = ranges.get(kind) ?? {};
      range[side] = tighter(range[side], bound, side === 'lower' ? 1 : -1);
      ranges.set(kind, range);
    }
  }
  for (const [kind, range] of ranges) parts.push({ op: 'range', path, kind, ...range });
  return and(parts);
}

/** Scalars become entries to look up; null (which also matches a missing field), objects and arrays are left to the check. */
function equals(path: string, operands: unknown[]): FilterPlan {
  const values: { kind: Kind; value: string | number }[] = [];
  for (const operand of operands) {
    if (typeof operand === 'string') values.push({ kind: Kind.string, value: operand });
    else if (typeof operand === 'number') values.push({ kind: Kind.number, value: operand });
    else if (typeof operand === 'boolean') values.push({ kind: Kind.boolean, value: operand ? 1 : 0 });
    else return ALL;
  }
  return { op: 'equals', path, values };
}

/**
 * Numbers, and strings whose UTF-16 code units are all below the surrogates: there the index's
 * order (SQLite compares UTF-8 bytes, i.e. code points) and JavaScript's (code units) agree.
 */
function rangeKind(operand: unknown): Kind | undefined {
  if (typeof operand === 'number') return Kind.number;
  if (typeof operand === 'string' && belowSurrogates(operand)) return Kind.string;
  return undefined;
}

function belowSurrogates(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) >= 0xd7ff) return false;
  return true;
}

function tighter(current: Bound | undefined, bound: Bound, direction: 1 | -1): Bound {
  if (!current) return bound;
  if (current.value === bound.value) return current.inclusive ? bound : current;
  return (bound.value > current.value ? 1 : -1) === direction ? bound : current;
}

/**
 * `^literal...` without options is the range of strings that start with the literal (how
 * `caas query --commit` asks for an abbreviated hash). Anything else (flags, alternation, a
 * pattern with no anchored literal) is left to the check.
 */
function regexPrefix(path: string, source: string, options: unknown): FilterPlan {
  if ((options !== undefined && options !== '') || !source.startsWith('^') || source.includes('|')) return ALL;
  let literal = /^[^\\^$.|?*+()[\]{}]*/.exec(source.slice(1))![0];
  // A quantifier after the run may make its last character optional.
  if (/^[?*+{]/.test(source.slice(1 + literal.length))) literal = literal.slice(0, -1);
  if (literal === '' || !belowSurrogates(literal)) return ALL;
  const next = String.fromCharCode(literal.charCodeAt(literal.length - 1) + 1);
  return {
    op: 'range',
    path,
    kind: Kind.string,
    lower: { value: literal, inclusive: true },
    upper: { value: literal.slice(0, -1) + next, inclusive: false },
  };
}

/** The plan in words, for `caas query --explain`. */
export function describePlan(plan: FilterPlan): string {
  switch (plan.op) {
    case 'all':
      return 'every record';
    case 'and':
      return plan.parts.map((part) => (part.op === 'or' ? `(${describePlan(part)})` : describePlan(part))).join(' AND ');
    case 'or':
      return plan.parts.map((part) => (part.op === 'and' ? `(${describePlan(part)})` : describePlan(part))).join(' OR ');
    case 'equals':
      return plan.values.length === 1
        ? `${plan.path} = ${shown(plan.values[0]!)}`
        : `${plan.path} in [${plan.values.map(shown).join(', ')}]`;
    case 'range': {
      const bounds = [
        plan.lower ? `${plan.lower.inclusive ? '>=' : '>'} ${JSON.stringify(plan.lower.value)}` : '',
        plan.upper ? `${plan.upper.inclusive ? '<=' : '<'} ${JSON.stringify(plan.upper.value)}` : '',
      ].filter(Boolean);
      return `${plan.path} ${bounds.join(' and ')}`;
    }
    case 'exists':
      return `${plan.path} exists`;
  }
}

function shown(entry: { kind: Kind; value: string | number }): string {
  return entry.kind === Kind.boolean ? String(entry.value === 1) : JSON.stringify(entry.value);
}

/** The indexed paths a plan reads. */
export function planPaths(plan: FilterPlan): string[] {
  if (plan.op === 'all') return [];
  if (plan.op === 'and' || plan.op === 'or') return [...new Set(plan.parts.flatMap(planPaths))];
  return [plan.path];
}
