import canonicalize from 'canonicalize';
import { type ObjectLocator, parseObjectUrl } from '../backends/storage/index.ts';
import type { InputFile, JobInputAsset } from '../models/job-input.ts';
import { DispatchError } from './dispatch-error.ts';
import type { Notice, SourceAsset } from './sources.ts';

/** What one job reads before the parameter grid multiplies it: one asset, a group of assets, or one file. */
export interface Unit {
  inputs: JobInputAsset[];
  groupMetadata?: Record<string, unknown>;
}

/** Listings in flight at once when --file-ext lists each asset's location (S3 round trips overlap). */
const LISTING_CONCURRENCY = 8;

/**
 * A field's value by dotted path, the way MongoDB's aggregation reads `$a.b`: through an array the
 * path continues into each element and the result is the array of what it found.
 */
function valueAt(doc: unknown, path: string): unknown {
  let value: unknown = doc;
  for (const part of path.split('.')) {
    if (Array.isArray(value)) {
      value = value.flatMap((item) => {
        const inner = typeof item === 'object' && item !== null ? (item as Record<string, unknown>)[part] : undefined;
        return inner === undefined ? [] : [inner];
      });
    } else if (typeof value === 'object' && value !== null) {
      value = (value as Record<string, unknown>)[part];
    } else {
      return undefined;
    }
  }
  return value;
}

function withValueAt(doc: Record<string, unknown>, path: string, value: unknown): Record<string, unknown> {
  const [head = '', ...rest] = path.split('.');
  if (rest.length === 0) return { ...doc, [head]: value };
  const inner = doc[head];
  const base = typeof inner === 'object' && inner !== null && !Array.isArray(inner) ? (inner as Record<string, unknown>) : {};
  return { ...doc, [head]: withValueAt(base, rest.join('.'), value) };
}

/** A JSON-able catalog id or field value has to be a string to become an asset id or name. */
function assetOf(item: SourceAsset): JobInputAsset {
  const { doc } = item;
  if (doc._id === undefined || doc._id === null || doc._id === '') throw new DispatchError(`${item.where}: catalog document has no _id`);
  const asset_id = String(doc._id);
  const location = doc.location;
  if (typeof location !== 'string') throw new DispatchError(`${item.where}: location ${JSON.stringify(location)} is not an object URL`);
  try {
    parseObjectUrl(location);
  } catch (error) {
    throw new DispatchError(`${item.where}: location ${(error as Error).message}`);
  }
  const name = typeof doc.name === 'string' && doc.name !== '' ? doc.name : asset_id;
  return item.files ? { asset_id, name, location, files: item.files } : { asset_id, name, location };
}

/** AIND's $unwind: one copy of the document per element of an array field; an empty array drops it. */
export async function* unwind(items: AsyncIterable<SourceAsset>, fields: readonly string[]): AsyncIterable<SourceAsset> {
  for await (const item of items) {
    let copies = [item];
    for (const field of fields) {
      copies = copies.flatMap((copy) => {
        const value = valueAt(copy.doc, field);
        if (!Array.isArray(value)) return [copy];
        return value.map((element) => ({ ...copy, doc: withValueAt(copy.doc, field, element) }));
      });
    }
    yield* copies;
  }
}

/** --drop-null-groups: an asset missing any of the fields would otherwise form a group of its own under null. */
export async function* dropNullGroups(items: AsyncIterable<SourceAsset>, fields: readonly string[]): AsyncIterable<SourceAsset> {
  for await (const item of items) {
    if (fields.every((field) => !isNull(valueAt(item.doc, field)))) yield item;
  }
}

function isNull(value: unknown): boolean {
  return value === undefined || value === null || (Array.isArray(value) && value.length === 0);
}

function groupKey(doc: Record<string, unknown>, fields: readonly string[]): string {
  return canonicalize(fields.map((field) => valueAt(doc, field) ?? null)) ?? 'null';
}

/**
 * MongoDB's order between values of different kinds, cut down to what dates and versions are
 * stored as: missing < numbers < strings < anything else (compared as JSON).
 */
function compareValues(a: unknown, b: unknown): number {
  const rank = (v: unknown) => (v === undefined || v === null ? 0 : typeof v === 'number' ? 1 : typeof v === 'string' ? 2 : 3);
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra - rb;
  if (ra === 1) return (a as number) - (b as number);
  const sa = ra === 2 ? (a as string) : JSON.stringify(a);
  const sb = ra === 2 ? (b as string) : JSON.stringify(b);
  return sa < sb ? -1 : sa > sb ? 1 : 0;
}

/**
 * --filter-latest: the asset with the greatest `latest` value in each group of `by` values (the
 * first in catalog order on a tie), emitted in catalog order. Every group's current winner is held
 * until the source ends, cut down to the fields later steps read, so memory grows with the number
 * of groups and not with the size of the documents.
 */
export async function* keepLatest(
  items: AsyncIterable<SourceAsset>,
  latest: string,
  by: readonly string[],
  keep: readonly string[],
): AsyncIterable<SourceAsset> {
  const winners = new Map<string, { index: number; value: unknown; item: SourceAsset }>();
  const topFields = new Set(['_id', 'name', 'location', ...keep.map((field) => field.split('.')[0]!)]);
  let index = 0;
  for await (const item of items) {
    const key = groupKey(item.doc, by);
    const value = valueAt(item.doc, latest);
    const current = winners.get(key);
    if (!current || compareValues(value, current.value) > 0) {
      const doc = Object.fromEntries(Object.entries(item.doc).filter(([field]) => topFields.has(field)));
      winners.set(key, { index, value, item: { ...item, doc } });
    }
    index++;
  }
  const ordered = [...winners.values()].sort((a, b) => a.index - b.index);
  winners.clear();
  for (const winner of ordered) yield winner.item;
}

/** Field paths become group_metadata keys as AIND names them: dots turn into "__". */
function metadataKey(field: string): string {
  return field.replaceAll('.', '__');
}

/**
 * --group-by: one unit per distinct combination of the fields' values, holding its assets in
 * catalog order; groups come out in the order their first asset appeared. Only each asset's id,
 * name, location (and files) are held, never its document.
 */
export async function* groupAssets(items: AsyncIterable<SourceAsset>, fields: readonly string[]): AsyncIterable<Unit> {
  const groups = new Map<string, Unit & { seen: Set<string> }>();
  for await (const item of items) {
    const key = groupKey(item.doc, fields);
    let group = groups.get(key);
    if (!group) {
      const groupMetadata = Object.fromEntries(fields.map((field) => [metadataKey(field), valueAt(item.doc, field) ?? null]));
      group = { inputs: [], groupMetadata, seen: new Set() };
      groups.set(key, group);
    }
    const asset = assetOf(item);
    // An unwound asset can reach the same group twice; it is one input of the group all the same.
    if (group.seen.has(asset.asset_id)) continue;
    group.seen.add(asset.asset_id);
    group.inputs.push(asset);
  }
  for (const { inputs, groupMetadata } of groups.values()) yield { inputs, groupMetadata };
}

export async function* singleAssets(items: AsyncIterable<SourceAsset>): AsyncIterable<Unit> {
  for await (const item of items) yield { inputs: [assetOf(item)] };
}

/**
 * --file-ext over catalog assets: lists each asset's location and keeps the files ending in the
 * extension, with etag and size. Assets without a match are noticed and dropped (a group keeps
 * its other assets). Several listings run at once; units still come out in order.
 */
export async function* withListedFiles(
  units: AsyncIterable<Unit>,
  locator: ObjectLocator,
  fileExt: string,
  notice: Notice,
): AsyncIterable<Unit> {
  const listUnit = async (unit: Unit): Promise<Unit> => {
    const inputs: JobInputAsset[] = [];
    for (const input of unit.inputs) {
      const files = await listFiles(locator, input, fileExt);
      if (files.length === 0)
        notice(
          'assets without matching files',
          `asset ${input.asset_id} (${input.name}): no files ending in ${fileExt} under ${input.location}`,
        );
      else inputs.push({ ...input, files });
    }
    return { ...unit, inputs };
  };
  for await (const unit of inOrder(units, LISTING_CONCURRENCY, listUnit)) if (unit.inputs.length > 0) yield unit;
}

async function listFiles(locator: ObjectLocator, input: JobInputAsset, fileExt: string): Promise<InputFile[]> {
  const base = input.location.endsWith('/') ? input.location : `${input.location}/`;
  try {
    const { store, bucket, key } = await locator.locate(base);
    const files: InputFile[] = [];
    for await (const object of store.list(bucket, key)) {
      if (object.key.endsWith(fileExt)) files.push({ url: `${base}${object.key.slice(key.length)}`, etag: object.etag, size: object.size });
    }
    return files;
  } catch (error) {
    throw new DispatchError(`asset ${input.asset_id}: cannot list ${base}: ${(error as Error).message}`);
  }
}

/** Maps with up to `limit` calls in flight, yielding results in input order. */
async function* inOrder<T, R>(items: AsyncIterable<T>, limit: number, work: (item: T) => Promise<R>): AsyncIterable<R> {
  const pending: Promise<R>[] = [];
  const start = (item: T) => {
    const promise = work(item);
    // Awaited in turn below; until then a rejection must not count as unhandled.
    promise.catch(() => {});
    pending.push(promise);
  };
  for await (const item of items) {
    start(item);
    if (pending.length >= limit) yield await pending.shift()!;
  }
  while (pending.length > 0) yield await pending.shift()!;
}

/** --split-files: one unit per listed file of a single-asset unit. */
export function* splitByFile(unit: Unit): Iterable<Unit> {
  const [input] = unit.inputs;
  if (unit.inputs.length !== 1 || !input?.files) {
    yield unit;
    return;
  }
  for (const file of input.files) yield { ...unit, inputs: [{ ...input, files: [file] }] };
}
