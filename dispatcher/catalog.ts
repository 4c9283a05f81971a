import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { z } from 'zod';
import { type Filter, openCatalog, openDatabase } from '../backends/db/index.ts';
import { openStore, parseObjectUrl, type StoreSettings } from '../backends/storage/index.ts';
import { describeIssues } from '../models/issues.ts';
import { DispatchError } from './dispatch-error.ts';
import { parseJsonText } from './json-text.ts';
import { generateSampleData, type SampleDataOptions } from './sample-data.ts';

/** What dispatch needs of an AIND data-asset document; every other field is kept as it is. */
export const AssetDocument = z.looseObject({
  _id: z.union([z.string().min(1), z.number()]),
  name: z.string().min(1),
  location: z.string().refine(isObjectUrl, 'an object URL of the asset folder (s3://bucket/key, file://...)'),
});

function isObjectUrl(url: string): boolean {
  try {
    parseObjectUrl(url);
    return true;
  } catch {
    return false;
  }
}

export interface Backends {
  home: string;
  dbUrl: string;
  /** The catalog `caas catalog query` reads (--catalog); defaults to the one in `dbUrl`, which import and generate-sample fill. */
  catalogUrl?: string;
  storeUrl: string;
  storeSettings?: StoreSettings;
}

/**
 * `caas catalog import`: loads JSONL asset documents into the catalog, replacing documents with the
 * same _id. A file is checked in full before the first write, so a bad line imports nothing; stdin
 * can only be read once, so there the lines before a bad one may already be in.
 */
export async function importCatalog(backends: Backends, source: string, stdin: Readable = process.stdin): Promise<number> {
  if (source !== '-') {
    if (!(await stat(source).catch(() => undefined))?.isFile())
      throw new DispatchError(`${source}: no such file (expected JSONL asset documents, or - for stdin)`);
    for await (const _ of readAssetDocuments(createReadStream(source), source)) {
      // Reading is the check.
    }
  }
  const db = await openDatabase(backends.dbUrl, { home: backends.home });
  try {
    return await db.importAssets(
      readAssetDocuments(source === '-' ? stdin : createReadStream(source), source === '-' ? '<stdin>' : source),
    );
  } finally {
    await db.close();
  }
}

async function* readAssetDocuments(input: Readable, name: string): AsyncIterable<Record<string, unknown>> {
  let lineNo = 0;
  for await (const line of createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY })) {
    lineNo++;
    if (line.trim() === '') continue;
    const parsed = AssetDocument.safeParse(parseJsonText(line, name, lineNo));
    if (!parsed.success) throw new DispatchError(`${name}:${lineNo}: ${describeIssues(parsed.error)}`);
    yield parsed.data;
  }
}

/**
 * `caas catalog query`: the catalog documents a filter matches, in catalog order, as `caas dispatch
 * --query` reads them. The store checks the filter before the first document.
 */
export async function* queryCatalog(backends: Backends, filter: Filter, limit?: number): AsyncIterable<Record<string, unknown>> {
  const db = await openCatalog(backends.catalogUrl ?? backends.dbUrl, { home: backends.home });
  try {
    yield* db.findAssets(filter, { limit });
  } finally {
    await db.close();
  }
}

/** `caas catalog generate-sample`: the deterministic demo assets, written to the store and imported into the catalog. */
export async function generateSampleCatalog(
  backends: Backends,
  options: SampleDataOptions,
): Promise<{ count: number; bucket: string; storeUrl: string; dbUrl: string }> {
  const store = await openStore(backends.storeUrl, { home: backends.home, settings: backends.storeSettings });
  try {
    const { assets, bucket } = await generateSampleData(store, options);
    const db = await openDatabase(backends.dbUrl, { home: backends.home });
    try {
      const count = await db.importAssets(assets);
      return { count, bucket, storeUrl: store.url, dbUrl: db.url };
    } finally {
      await db.close();
    }
  } finally {
    await store.close();
  }
}
