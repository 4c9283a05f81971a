import { isPlainObject } from '../../models/plain-object.ts';
import type { MetadataRecord } from '../../models/record.ts';

/**
 * The paths of a record that provenance questions ask about, indexed by every store. Under
 * `parameters` every path is indexed, whatever the analysis: a record's parameters already passed
 * its analysis' model when it was prepared, and the store stays free of analysis code (an analysis
 * removed or changed since still has its records indexed).
 */
export const INDEXED_PATHS = [
  'status',
  'analysis.name',
  'analysis.version',
  'created',
  'updated',
  'start',
  'end',
  'code.commit',
  'code.url',
  'inputs.asset_id',
  'inputs.name',
  'inputs.location',
  'inputs.files.url',
  'preimage.output',
  'job.results',
] as const;

export const PARAMETERS_ROOT = 'parameters';

const FIXED = new Set<string>(INDEXED_PATHS);

/** Whether a filter's field path is one the index holds: a fixed path, or any path under `parameters` without an array position. */
export function isIndexedPath(path: string): boolean {
  if (FIXED.has(path)) return true;
  if (path !== PARAMETERS_ROOT && !path.startsWith(`${PARAMETERS_ROOT}.`)) return false;
  // "parameters.x.0" can mean position 0 of an array, which entries (keyed by object keys only) do not record.
  return path.split('.').every((segment) => segment !== '' && !/^\d+$/.test(segment));
}

/**
 * Sort keys a store may answer in index order: paths the record schema holds exactly once, as a
 * string (or null), so the index order is MongoDB's order (null first, then strings by code point,
 * which is JavaScript's order for the ISO timestamps and names these hold).
 */
export const SORTABLE_PATHS = new Set(['status', 'analysis.name', 'analysis.version', 'created', 'updated', 'start', 'end', 'code.commit']);

/**
 * The kind of an indexed value, in MongoDB's sort order of kinds: null < numbers < strings <
 * objects and arrays < booleans. A range only ever reads one kind, as MongoDB's comparisons are
 * type-bracketed (`{"$gt": 5}` never matches "6").
 */
export const Kind = { null: 0, number: 1, string: 2, present: 3, boolean: 4, nestedArray: 5 } as const;
export type Kind = (typeof Kind)[keyof typeof Kind];

/**
 * One indexed value: the record has `value` (of `kind`) at `path`. Null, objects and arrays are kept
 * with value 0, as "present". `nestedArray` marks a path whose value holds an array inside an array:
 * mingo (the scan's engine, unlike MongoDB) lets any longer path reach the scalars in there
 * (`{"a.b":1}` matches `{"a":[[1]]}`), so a filter on a longer path must take such records as candidates.
 */
export interface IndexEntry {
  path: string;
  kind: Kind;
  value: string | number;
}

/**
 * Every value a filter on an indexed path could match in this record, more rather than fewer: a
 * path goes through arrays at any depth (MongoDB goes through one level; a superset is harmless,
 * as the store checks each candidate against the whole filter), and an array's scalars at any
 * depth are entries of its path. Whatever the path reaches is also "present", for `$exists`.
 */
export function indexEntries(record: MetadataRecord | Record<string, unknown>): IndexEntry[] {
  const out: IndexEntry[] = [];
  const seen = new Set<string>();
  const add = (path: string, kind: Kind, value: string | number) => {
    const key = `${path}\u0000${kind}\u0000${typeof value}\u0000${value}`;
    if (seen.has(key)) return;
    seen.add(key);
    out.push({ path, kind, value });
  };
  for (const path of INDEXED_PATHS) for (const value of reach(record, path.split('.'), add)) leafEntries(path, value, add);
  const doc = record as Record<string, unknown>;
  if (PARAMETERS_ROOT in doc) walkAll(PARAMETERS_ROOT, doc[PARAMETERS_ROOT], add);
  return out;
}

type Add = (path: string, kind: Kind, value: string | number) => void;

function reach(doc: unknown, segments: string[], add: Add): unknown[] {
  let current: unknown[] = [doc];
  segments.forEach((segment, i) => {
    const next: unknown[] = [];
    const prefix = segments.slice(0, i).join('.');
    const visit = (value: unknown, inArray: boolean) => {
      if (Array.isArray(value)) {
        if (inArray) add(prefix, Kind.nestedArray, 0);
        for (const item of value) visit(item, true);
      } else if (isPlainObject(value) && segment in value) next.push(value[segment]);
    };
    for (const value of current) {
      // A path's parents are present too, for `$exists` (see the SQLite index's exists).
      if (i > 0 && typeof value === 'object' && value !== null) add(prefix, Kind.present, 0);
      visit(value, false);
    }
    current = next;
  });
  return current;
}

function leafEntries(path: string, value: unknown, add: Add): void {
  if (value === null) add(path, Kind.null, 0);
  else if (typeof value === 'number') add(path, Kind.number, value);
  else if (typeof value === 'string') add(path, Kind.string, value);
  else if (typeof value === 'boolean') add(path, Kind.boolean, value ? 1 : 0);
  else if (Array.isArray(value)) {
    add(path, Kind.present, 0);
    for (const item of value) leafEntries(path, item, add);
  } else if (typeof value === 'object') add(path, Kind.present, 0);
}

/** Every path under `path` (object keys; arrays keep their path), with its values. */
function walkAll(path: string, value: unknown, add: Add): void {
  leafEntries(path, value, add);
  const objects: Record<string, unknown>[] = [];
  const collect = (item: unknown, inArray: boolean) => {
    if (Array.isArray(item)) {
      if (inArray) add(path, Kind.nestedArray, 0);
      for (const inner of item) collect(inner, true);
    } else if (isPlainObject(item)) objects.push(item);
  };
  collect(value, false);
  for (const object of objects) for (const [key, inner] of Object.entries(object)) walkAll(`${path}.${key}`, inner, add);
}
