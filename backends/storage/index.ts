import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
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
 * What a store can or cannot do beyond the promises every ObjectStore keeps, asked for by name:
 * - `buckets-on-demand`: a missing bucket is simply made when caas needs it (a folder, a map),
 *   where a cloud bucket is provisioned with its analysis and a typo must not create a stray one.
 * - `atomic-put-if-absent`: putIfAbsent cannot lose a race (S3 with If-None-Match, rename(2));
 *   without it the HEAD-then-PUT fallback can let a writer that slips in between be overwritten.
 */
export type StoreCapability = 'buckets-on-demand' | 'atomic-put-if-absent';

/**
 * The object store the bucket contract lives in. Keys never start with "/"; a "prefix" is a plain
 * string prefix, as in S3. Writes are whole-object and atomic: a reader never sees half an object.
 */
export interface ObjectStore {
  /** The scheme of this store's object URLs (scheme://bucket/key): "file", "s3", ... */
  readonly scheme: string;
  /**
   * The URL this store was opened with, its settings included (s3://?endpoint=...): enough for
   * another process to open the same store.
   */
  readonly url: string;
  /** The local folder holding the buckets, for stores that live on this machine (file://). */
  readonly root?: string;
  readonly capabilities: ReadonlySet<StoreCapability>;
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
  /** The file an object is on this machine, for stores whose objects are files; undefined otherwise. */
  localPath?(bucket: string, key: string): string;
  /** A shell command a person can paste to copy everything under a prefix into the local folder `to`. */
  copyCommand(bucket: string, prefix: string, to: string): string;
  /** How a person creates a bucket here, for messages that ask them to (with the analysis, by hand, ...). */
  createBucketHint(bucket: string): string;
  /**
   * What another program (an analysis calling the aws CLI, a machine's bootstrap) needs in its
   * environment to reach this same store: its endpoint, and the credentials it finds in `from`.
   */
  environment(from: NodeJS.ProcessEnv): Record<string, string>;
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

/**
 * Settings per store kind, by scheme then name ({ s3: { endpoint: 'http://...' } }): what the
 * flags and variables a kind declares (StoreSetting) said. A store URL's own query wins over them.
 */
export type StoreSettings = Readonly<Record<string, Readonly<Record<string, string>>>>;

export interface StoreOptions {
  /** Workspace folder for a store that keeps its buckets there when the URL names no place (file:). */
  home: string;
  /** Settings for the kinds a URL leaves unsaid, e.g. the S3 endpoint from --s3-endpoint. */
  settings?: StoreSettings;
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

/** A setting a store kind reads from its URL's query (?name=value), with the flag and variable that also set it. */
export interface StoreSetting {
  /** The query parameter: s3://?endpoint=... */
  name: string;
  /** The command-line flag, commander style: "--s3-endpoint <url>". */
  flag: string;
  /** The environment variable that gives the flag's default. */
  env?: string;
  description: string;
}

/**
 * A kind of object store: what its URLs look like and how one is opened. Registering a kind is all
 * it takes for every command to accept its URLs (--store, prefixes, inputs, submit files).
 */
export interface StoreKind {
  scheme: string;
  /** How its URLs look, for messages: "s3://bucket/key". */
  example: string;
  /** What --store URLs of this kind mean, for --help. */
  description: string;
  /** Whether scheme:///absolute/path (no bucket) names a plain file on this machine. */
  localPaths?: boolean;
  /**
   * Who can open a store by its URL: only this process (in memory), any process on this machine (a
   * folder), or any machine on the network (a cloud store). Launchers ask before they start an agent elsewhere.
   */
  reach: StoreReach;
  settings?: readonly StoreSetting[];
  /**
   * Opens a store at `url` (its query taken off) with its settings: the URL's query over the
   * options' settings for this kind. Loads the backend (and its SDK) lazily, in here.
   */
  open(url: string, settings: Readonly<Record<string, string>>, options: StoreOptions): Promise<ObjectStore>;
}

export type StoreReach = 'process' | 'machine' | 'network';

const kinds = new Map<string, StoreKind>();

/** Adds a kind of store (or replaces the one with its scheme). */
export function registerStoreKind(kind: StoreKind): void {
  kinds.set(kind.scheme, kind);
}

export function storeKinds(): StoreKind[] {
  return [...kinds.values()];
}

function examples(): string {
  return storeKinds()
    .map((kind) => kind.example)
    .join(', ');
}

export interface ObjectUrl {
  scheme: string;
  bucket: string;
  key: string;
}

/**
 * Object URLs are scheme://bucket/key for every store. For kinds with local paths,
 * `file:///abs/path` (no bucket) names a plain local file and has bucket "".
 */
export function parseObjectUrl(url: string): ObjectUrl {
  // Only store URLs carry a query; an object's key may hold "?" (S3 allows it).
  const match = /^([a-z][a-z0-9+.-]*):\/\/([^/?]*)\/?(.*)$/.exec(url);
  const kind = match && kinds.get(match[1] ?? '');
  if (!match || !kind) throw new Error(`"${url}" is not an object URL: expected ${examples()}`);
  const [, scheme = '', bucket = '', key = ''] = match;
  if (!bucket && !kind.localPaths) throw new Error(`"${url}" names no bucket: expected ${kind.example}`);
  return { scheme, bucket, key: bucket ? key : `/${key}` };
}

export function objectUrl(scheme: string, bucket: string, key: string): string {
  return `${scheme}://${bucket}/${key}`;
}

/**
 * The etag a single-part upload of this local file gets in every store here: the MD5 hex of its
 * bytes. What a file is compared by against an object's etag (a multipart etag, "...-N", is not one).
 */
export async function etagOfFile(file: string): Promise<string> {
  const hash = createHash('md5');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
}

/** Size and sha256 of an object as the store serves it, streamed (the manifest's terms). */
export async function hashObject(store: ObjectStore, bucket: string, key: string): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of await store.getStream(bucket, key)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { size, sha256: hash.digest('hex') };
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

/** The scheme a store URL names ("file:" and "file:///x" both name file), or undefined. */
function schemeOf(url: string): string | undefined {
  return /^([a-z][a-z0-9+.-]*):/.exec(url)?.[1];
}

/**
 * Opens the store a URL names, with the settings its kind was given (--s3-endpoint, ...) merged
 * under the URL's own query: the opened store's url carries them all.
 */
export async function openStore(url: string, options: StoreOptions): Promise<ObjectStore> {
  const scheme = schemeOf(url);
  const kind = scheme === undefined ? undefined : kinds.get(scheme);
  if (!kind || scheme === undefined) {
    throw new StoreUrlError(`--store "${url}" is not supported: use ${storeUrlHelp()}`);
  }
  const { base, query } = splitStoreUrl(url);
  const given = { ...options.settings?.[scheme], ...Object.fromEntries(query) };
  const known = new Set((kind.settings ?? []).map((setting) => setting.name));
  for (const name of Object.keys(given)) {
    if (!known.has(name)) {
      throw new StoreUrlError(`--store "${url}": ${scheme}:// has no setting "${name}" (expected ${[...known].join(', ') || 'none'})`);
    }
  }
  return kind.open(base, given, options);
}

/** A store URL's place and its settings (the query), which are kept apart: "file:" is no WHATWG URL. */
function splitStoreUrl(url: string): { base: string; query: URLSearchParams } {
  const at = url.indexOf('?');
  return at < 0 ? { base: url, query: new URLSearchParams() } : { base: url.slice(0, at), query: new URLSearchParams(url.slice(at + 1)) };
}

/** A store's URL with its settings as the query, in name order so one store always has one URL. */
export function storeUrlWith(base: string, settings: Readonly<Record<string, string>>): string {
  // Readable in messages (?endpoint=http://host:9000): only what would break the query is escaped.
  const encode = (text: string) => encodeURIComponent(text).replace(/%3A/gi, ':').replace(/%2F/gi, '/');
  const query = Object.entries(settings)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, value]) => `${encode(name)}=${encode(value)}`)
    .join('&');
  return query ? `${base}?${query}` : base;
}

/** The option a setting's flag becomes in a program (commander's attribute name): "--s3-endpoint <url>" → "s3Endpoint". */
export function settingOptionName(setting: StoreSetting): string {
  const long = /--([a-z0-9-]+)/i.exec(setting.flag)?.[1] ?? setting.name;
  return long.replace(/-([a-z0-9])/g, (_, letter: string) => letter.toUpperCase());
}

/** The settings each kind's flags or variables give, read through `value` (commander's options, the environment). */
export function storeSettingsFrom(value: (setting: StoreSetting) => string | undefined): StoreSettings {
  const settings: Record<string, Record<string, string>> = {};
  for (const kind of storeKinds()) {
    for (const setting of kind.settings ?? []) {
      const given = value(setting);
      if (given) settings[kind.scheme] = { ...settings[kind.scheme], [setting.name]: given };
    }
  }
  return settings;
}

/** Who can open the store (or object) a URL names; undefined for a URL of no known kind. */
export function storeReach(url: string): StoreReach | undefined {
  const scheme = schemeOf(url);
  return scheme === undefined ? undefined : kinds.get(scheme)?.reach;
}

/** The URL forms of the stores every machine can reach, for messages of launchers that need one. */
export function networkStoreExamples(): string {
  return storeKinds()
    .filter((kind) => kind.reach === 'network')
    .map((kind) => `${kind.scheme}://`)
    .join(' or ');
}

/** What --store accepts, for --help. */
export function storeUrlHelp(): string {
  return storeKinds()
    .map((kind) => kind.description)
    .join(', or ');
}

/** The settings the environment gives (AWS_ENDPOINT_URL, ...), for callers without flags. */
export function storeSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): StoreSettings {
  return storeSettingsFrom((setting) => (setting.env ? env[setting.env] : undefined));
}

/** `settings` with a store URL's own query folded in: what another process needs to open the same stores. */
export function settingsWithUrl(settings: StoreSettings | undefined, url: string): StoreSettings {
  const scheme = schemeOf(url);
  const { query } = splitStoreUrl(url);
  if (scheme === undefined || query.size === 0) return settings ?? {};
  return { ...settings, [scheme]: { ...settings?.[scheme], ...Object.fromEntries(query) } };
}

/**
 * Finds the store behind any object URL a job names: the primary store for its own scheme, a
 * store opened on demand for another scheme, and a root-level store for scheme:///abs/paths
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
    if (parsed.bucket === '') {
      const [bucket = '', ...rest] = parsed.key.replace(/^\/+/, '').split('/');
      return { store: await this.open(`${parsed.scheme}:///`, { followLinks: true }), bucket, key: rest.join('/') };
    }
    if (parsed.scheme === this.primary.scheme) return { store: this.primary, bucket: parsed.bucket, key: parsed.key };
    return { store: await this.open(`${parsed.scheme}://`), bucket: parsed.bucket, key: parsed.key };
  }

  private open(url: string, extra: Partial<StoreOptions> = {}): Promise<ObjectStore> {
    let store = this.opened.get(url);
    if (!store) {
      store = openStore(url, { ...this.options, ...extra });
      this.opened.set(url, store);
    }
    return store;
  }

  /** The primary store and every store opened since: the stores a job has touched. */
  async stores(): Promise<ObjectStore[]> {
    return [this.primary, ...(await Promise.all(this.opened.values()))];
  }

  async close(): Promise<void> {
    for (const store of this.opened.values()) await (await store).close();
  }
}

// The built-in kinds. Each loads its backend (and SDK) only when a store of its kind is opened.
registerStoreKind({
  scheme: 'file',
  example: 'file://bucket/key or file:///absolute/path',
  description: 'file: (a folder per bucket under the workspace) or file:///folder',
  localPaths: true,
  reach: 'machine',
  async open(url, _settings, options) {
    const { FileStore } = await import('./fs.ts');
    return new FileStore(url, options);
  },
});
registerStoreKind({
  scheme: 's3',
  example: 's3://bucket/key',
  reach: 'network',
  description: 's3:// (Amazon S3, or s3://?endpoint=URL for an S3-compatible server)',
  settings: [{ name: 'endpoint', flag: '--s3-endpoint <url>', env: 'AWS_ENDPOINT_URL', description: 'S3-compatible endpoint, path-style' }],
  async open(url, settings, options) {
    const { S3Store } = await import('./s3.ts');
    return new S3Store(url, { ...options, endpoint: settings.endpoint });
  },
});
