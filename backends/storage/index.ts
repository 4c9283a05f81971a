import { createHash } from 'node:crypto';
import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { CaasError } from '../../models/caas-error.ts';

export interface ObjectInfo {
  key: string;
  size: number;
  etag: string;
  modified: Date;
}

export type Body = string | Uint8Array;

/** What putFile stored: the bytes it read from the local file, counted and hashed as they were sent. */
export interface StoredFile {
  size: number;
  sha256: string;
}

/**
 * The object store the bucket contract lives in. Keys never start with "/"; a "prefix" is a plain
 * string prefix, as in S3. Writes are whole-object and atomic: a reader never sees half an object.
 */
export interface ObjectStore {
  /** "file" or "s3": the scheme of this store's object URLs (scheme://bucket/key). */
  readonly scheme: 'file' | 's3';
  /** The URL this store was opened with, enough for another process to open the same store. */
  readonly url: string;
  /** The local folder holding the buckets, for stores that live on this machine (file://). */
  readonly root?: string;
  put(bucket: string, key: string, body: Body): Promise<void>;
  /** Writes only if the key does not exist yet; returns false when it already did. */
  putIfAbsent(bucket: string, key: string, body: Body): Promise<boolean>;
  /** Reads the file once; what it returns describes the bytes stored, even if the file changes later. */
  putFile(bucket: string, key: string, localPath: string): Promise<StoredFile>;
  get(bucket: string, key: string): Promise<Buffer>;
  getStream(bucket: string, key: string): Promise<Readable>;
  getToFile(bucket: string, key: string, localPath: string): Promise<void>;
  /** undefined when the object does not exist. */
  head(bucket: string, key: string): Promise<ObjectInfo | undefined>;
  /** Every object under the prefix, in key order, paging as needed. */
  list(bucket: string, prefix: string): AsyncIterable<ObjectInfo>;
  delete(bucket: string, key: string): Promise<void>;
  bucketExists(bucket: string): Promise<boolean>;
  createBucket(bucket: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * A pass-through that measures what flows through it, so a backend can report the size and sha256
 * of the bytes it stored from the same read that sent them (a second read could see other bytes).
 */
export class Sha256PassThrough extends Transform {
  private readonly hash = createHash('sha256');
  // Not "size": lib-storage's Upload takes a body's numeric `size` property for its total length.
  private bytesPassed = 0;
  private sha256: string | undefined;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    this.bytesPassed += chunk.length;
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    this.sha256 = this.hash.digest('hex');
    done();
  }

  /** The measure of everything that passed; only once the stream has ended. */
  stored(): StoredFile {
    if (this.sha256 === undefined) throw new Error('Sha256PassThrough.stored() was called before the stream ended');
    return { size: this.bytesPassed, sha256: this.sha256 };
  }
}

/** --store names a scheme caas has no store for: the user's input, exit 2, nothing touched. */
export class StoreUrlError extends CaasError {}

export interface StoreOptions {
  /** Workspace folder for the file:// store when the URL names no folder. */
  home: string;
  /** S3-compatible endpoint (path-style), e.g. http://127.0.0.1:4569. */
  s3Endpoint?: string;
  /**
   * What the store could not list and skipped (an unreadable folder, a dangling link, ...), once per
   * path. Default: one line `caas: warning: ...` on stderr.
   */
  warn?: (message: string) => void;
  /**
   * file:// only: follow symbolic links wherever they lead. For file:///abs/path URLs, which name a
   * user's own files; a bucket's keys never leave the bucket nor their top-level (group) folder.
   */
  followLinks?: boolean;
}

/**
 * The store will not serve a key: on a file store, its real path leaves the bucket or the key's
 * top-level folder (a symbolic link to another group's data, say).
 */
export class KeyRefused extends CaasError {
  readonly code = 'KeyRefused';
}

export interface ObjectUrl {
  scheme: 'file' | 's3';
  bucket: string;
  key: string;
}

/**
 * Object URLs are scheme://bucket/key for both stores. `file:///abs/path` (no bucket) names a plain
 * local file and has bucket "".
 */
export function parseObjectUrl(url: string): ObjectUrl {
  const match = /^(s3|file):\/\/([^/]*)\/?(.*)$/.exec(url);
  if (!match) throw new Error(`"${url}" is not an object URL: expected s3://bucket/key, file://bucket/key or file:///absolute/path`);
  const [, scheme, bucket = '', key = ''] = match;
  if (scheme === 's3' && !bucket) throw new Error(`"${url}" names no bucket: expected s3://bucket/key`);
  return { scheme: scheme as 'file' | 's3', bucket, key: bucket ? key : `/${key}` };
}

export function objectUrl(scheme: 'file' | 's3', bucket: string, key: string): string {
  return `${scheme}://${bucket}/${key}`;
}

/** An object's text, or undefined when it does not exist (other errors are thrown). */
export async function getText(store: ObjectStore, bucket: string, key: string): Promise<string | undefined> {
  try {
    return (await store.get(bucket, key)).toString('utf8');
  } catch (error) {
    if ((error as { code?: string }).code === 'NoSuchKey') return undefined;
    throw error;
  }
}

/** Opens the store a URL names: file:// (default, under the workspace) or s3://. */
export async function openStore(url: string, options: StoreOptions): Promise<ObjectStore> {
  if (url === 'file:' || url.startsWith('file://')) {
    const { FileStore } = await import('./fs.ts');
    return new FileStore(url, options);
  }
  if (url.startsWith('s3:')) {
    const { S3Store } = await import('./s3.ts');
    return new S3Store(url, options);
  }
  throw new StoreUrlError(
    `--store "${url}" is not supported: use file:///path/to/folder (the default is file: under the workspace) or s3://`,
  );
}

/**
 * Finds the store behind any object URL a job names: the primary store for its own scheme, a
 * store opened on demand for the other scheme, and a root-level file store for file:///abs/paths
 * (whose first path segment then plays the bucket).
 */
export class ObjectLocator {
  private readonly opened = new Map<string, Promise<ObjectStore>>();

  constructor(
    readonly primary: ObjectStore,
    private readonly options: StoreOptions,
  ) {}

  async locate(url: string): Promise<{ store: ObjectStore; bucket: string; key: string }> {
    const parsed = parseObjectUrl(url);
    if (parsed.scheme === 'file' && parsed.bucket === '') {
      const [bucket = '', ...rest] = parsed.key.replace(/^\/+/, '').split('/');
      return { store: await this.open('file:///', { followLinks: true }), bucket, key: rest.join('/') };
    }
    if (parsed.scheme === this.primary.scheme) return { store: this.primary, bucket: parsed.bucket, key: parsed.key };
    return { store: await this.open(parsed.scheme === 's3' ? 's3://' : 'file:'), bucket: parsed.bucket, key: parsed.key };
  }

  private open(url: string, extra: Partial<StoreOptions> = {}): Promise<ObjectStore> {
    let store = this.opened.get(url);
    if (!store) {
      store = openStore(url, { ...this.options, ...extra });
      this.opened.set(url, store);
    }
    return store;
  }

  async close(): Promise<void> {
    for (const store of this.opened.values()) await (await store).close();
  }
}
