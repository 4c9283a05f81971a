import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { CatalogReader } from '../backends/db/index.ts';
import { type ObjectLocator, parseObjectUrl } from '../backends/storage/index.ts';
import { checkFilter, type Filter, InvalidFilterError } from '../models/filter.ts';
import type { InputFile } from '../models/job-input.ts';
import { isPlainObject } from '../models/plain-object.ts';
import { DispatchError } from './dispatch-error.ts';
import { parseJsonText } from './json-text.ts';

/** One asset as a source yields it: its catalog document (or a folder's stand-in) and, from a prefix, its files. */
export interface SourceAsset {
  doc: Record<string, unknown>;
  /** Where it came from, for messages: "assets.csv:7", an asset id or a folder URL. */
  where: string;
  files?: InputFile[];
}

/** Things worth telling the user that do not stop the dispatch (unknown ids, assets without files). */
export type Notice = (kind: string, message: string) => void;

/** The CSV's asset ids go to the catalog this many at a time: one round trip each. */
const CSV_CHUNK = 1000;

/** `--query` is either the filter itself (JSON text starts with "{", or "[" when mistaken) or a file holding it. */
export async function readQuery(argument: string): Promise<{ filter: Filter; text: string }> {
  let text = argument;
  let name = '--query';
  if (!/^\s*[{[]/.test(argument)) {
    try {
      text = await readFile(argument, 'utf8');
    } catch {
      throw new DispatchError(`--query "${argument}" is neither a JSON filter nor a readable file`);
    }
    name = argument;
  }
  const filter = parseJsonText(text, name);
  if (!isPlainObject(filter)) {
    throw new DispatchError(`${name}: a query is a JSON object, a MongoDB filter such as {"subject.subject_id":"774659"}`);
  }
  try {
    checkFilter(filter);
  } catch (error) {
    // Inline, the message is word for word what `caas query` says; a file is named, as a line of it would be.
    if (error instanceof InvalidFilterError) throw new DispatchError(name === '--query' ? error.message : `${name}: ${error.message}`);
    throw error;
  }
  // The compact form is what provenance records: the same filter reads the same however it was typed.
  return { filter, text: JSON.stringify(filter) };
}

/**
 * Catalog documents matching the filter, streamed in catalog order. A bad filter surfaces on the
 * first read (mingo compiles it then; MongoDB rejects it with the first batch), before any job.
 */
export async function* queryAssets(catalog: CatalogReader, filter: Filter): AsyncIterable<SourceAsset> {
  const iterator = catalog.findAssets(filter)[Symbol.asyncIterator]();
  try {
    let next: IteratorResult<Record<string, unknown>>;
    try {
      next = await iterator.next();
    } catch (error) {
      if (error instanceof InvalidFilterError) throw new DispatchError(error.message);
      throw error;
    }
    for (; !next.done; next = await iterator.next()) yield { doc: next.value, where: `asset ${String(next.value._id)}` };
  } finally {
    await iterator.return?.();
  }
}

/**
 * The assets a CSV lists in its asset_id column, in CSV order, fetched from the catalog a chunk at
 * a time. Blank ids are skipped (as AIND's dispatcher does); unknown and repeated ids are noticed
 * with their line and skipped.
 */
export async function* csvAssets(catalog: CatalogReader, file: string, notice: Notice): AsyncIterable<SourceAsset> {
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Number.POSITIVE_INFINITY });
  let lineNo = 0;
  let column = -1;
  const firstLine = new Map<string, number>();
  let chunk: { id: string; line: number }[] = [];
  const flush = async function* () {
    const found = await catalog.getAssets(chunk.map((row) => row.id));
    for (const row of chunk) {
      const doc = found.get(row.id);
      if (doc) yield { doc, where: `${file}:${row.line}` };
      else notice('unknown asset ids', `${file}:${row.line}: asset_id "${row.id}" is not in the catalog; skipped`);
    }
    chunk = [];
  };
  try {
    for await (const line of lines) {
      lineNo++;
      if (line.trim() === '') continue;
      const fields = parseCsvLine(line, `${file}:${lineNo}`);
      if (column < 0) {
        const names = fields.map((name, i) => (i === 0 ? name.replace(/^\uFEFF/, '') : name).trim());
        column = names.indexOf('asset_id');
        if (column < 0) throw new DispatchError(`${file}:${lineNo}: no asset_id column (the header has: ${names.join(', ')})`);
        continue;
      }
      const id = fields[column]?.trim() ?? '';
      if (id === '') continue;
      const earlier = firstLine.get(id);
      if (earlier !== undefined) {
        notice('repeated asset ids', `${file}:${lineNo}: asset_id "${id}" repeats line ${earlier}; skipped`);
        continue;
      }
      firstLine.set(id, lineNo);
      chunk.push({ id, line: lineNo });
      if (chunk.length >= CSV_CHUNK) yield* flush();
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new DispatchError(`--assets-csv ${file}: no such file`);
    throw error;
  }
  if (column < 0) throw new DispatchError(`${file}: empty; expected a header line with an asset_id column`);
  yield* flush();
}

/** One CSV record on one line (RFC 4180 quoting; a quoted field may not span lines). */
function parseCsvLine(line: string, where: string): string[] {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    if (line[i] === '"') {
      let value = '';
      i++;
      for (;;) {
        const close = line.indexOf('"', i);
        if (close < 0) throw new DispatchError(`${where}: unterminated quoted field (a field may not span lines)`);
        value += line.slice(i, close);
        i = close + 1;
        if (line[i] !== '"') break;
        value += '"';
        i++;
      }
      fields.push(value);
      if (i < line.length && line[i] !== ',') throw new DispatchError(`${where}: unexpected text after a quoted field`);
    } else {
      const comma = line.indexOf(',', i);
      fields.push(line.slice(i, comma < 0 ? line.length : comma));
      i = comma < 0 ? line.length : comma;
    }
    if (i >= line.length) return fields;
    i++;
  }
}

/**
 * Folders under a prefix as assets, without a catalog: every object under `{prefix}{folder}/` is one
 * of the folder's files (only those ending in `fileExt` when it is given), listed with etag and
 * size. The listing is in key order, so a folder's objects arrive together and stream out as one
 * asset. Objects directly under the prefix belong to no folder and are noticed, not used.
 * `prefixUrl` ends in "/" (the dispatch plan adds it).
 */
export async function* prefixAssets(
  locator: ObjectLocator,
  prefixUrl: string,
  fileExt: string | undefined,
  notice: Notice,
): AsyncIterable<SourceAsset> {
  const listing = await openListing(locator, prefixUrl);
  let folder: string | undefined;
  let files: InputFile[] = [];
  /** The folder just finished as an asset, or a notice that none of its files matched. */
  const finish = function* (): Iterable<SourceAsset> {
    const location = `${prefixUrl}${folder}/`;
    if (files.length > 0) yield { doc: { _id: folder, name: folder, location }, where: location, files };
    else notice('assets without matching files', `${location}: no files ending in ${fileExt}`);
  };
  try {
    for await (const object of listing.objects) {
      const rel = object.key.slice(listing.key.length);
      const slash = rel.indexOf('/');
      if (slash <= 0) {
        notice('objects outside asset folders', `${prefixUrl}${rel}: not inside a folder under the prefix; ignored`);
        continue;
      }
      const name = rel.slice(0, slash);
      if (name !== folder) {
        if (folder !== undefined) yield* finish();
        folder = name;
        files = [];
      }
      if (fileExt === undefined || object.key.endsWith(fileExt))
        files.push({ url: `${prefixUrl}${rel}`, etag: object.etag, size: object.size });
    }
  } catch (error) {
    if (error instanceof DispatchError) throw error;
    throw new DispatchError(`--s3-prefix ${prefixUrl}: cannot list: ${(error as Error).message}`);
  }
  if (folder !== undefined) yield* finish();
}

/** Refuses a prefix that cannot be read (no such bucket or folder) before anything is emitted. */
async function openListing(locator: ObjectLocator, prefixUrl: string) {
  let parsed: ReturnType<typeof parseObjectUrl>;
  try {
    parsed = parseObjectUrl(prefixUrl);
  } catch (error) {
    throw new DispatchError(`--s3-prefix: ${(error as Error).message}`);
  }
  try {
    const { store, bucket, key } = await locator.locate(prefixUrl);
    if (parsed.bucket === '') {
      // A local path (file:///abs): its folder must exist, not only its first segment.
      const folder = await stat(parsed.key).catch(() => undefined);
      if (!folder?.isDirectory()) throw new DispatchError(`--s3-prefix ${prefixUrl}: no such folder`);
    } else if (!(await store.bucketExists(bucket))) {
      throw new DispatchError(`--s3-prefix ${prefixUrl}: bucket "${bucket}" does not exist or cannot be read`);
    }
    return { key, objects: store.list(bucket, key) };
  } catch (error) {
    if (error instanceof DispatchError) throw error;
    throw new DispatchError(`--s3-prefix ${prefixUrl}: cannot list: ${(error as Error).message}`);
  }
}
