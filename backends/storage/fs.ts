import { createHash, randomBytes } from 'node:crypto';
import { type BigIntStats, createReadStream, createWriteStream, type Dirent } from 'node:fs';
import { link, lstat, mkdir, readdir, readFile, realpath, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  type Body,
  KeyRefused,
  type ObjectInfo,
  type ObjectStore,
  Sha256PassThrough,
  type StoredFile,
  type StoreOptions,
} from './index.ts';

const TMP_DIR = '.caas-tmp';

/**
 * File timestamps are only as fine as the clock tick (a second or two on some file systems), so a
 * file rewritten in place right after it was hashed can keep its size, mtime and ctime: its md5 is
 * remembered only once its last change is this much older than the hash.
 */
export const ETAG_SETTLE_MS = 2000;
/** Bounds the md5 cache of a long-running watcher over a bucket whose files come and go. */
const MAX_CACHED_ETAGS = 100_000;

interface CachedEtag {
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  etag: string;
}

/**
 * Buckets are folders under one root (default {home}/buckets); objects are files.
 *
 * Symbolic links inside a bucket are followed only while they stay inside the key's top-level
 * folder (a group's, under the NeuroCAAS contract): a link may not read or write another group's
 * data, nor anything outside the bucket. Listings show regular files and links to them; linked
 * folders, sockets, FIFOs, dangling links, loops and unreadable folders are skipped with a warning,
 * so that one bad entry never stops a listing (nor a watcher answering every other submission).
 * Links are checked, not locked: whoever can swap folders inside a bucket while caas writes there
 * can already write to that bucket.
 */
export class FileStore implements ObjectStore {
  readonly scheme = 'file' as const;
  readonly url: string;
  readonly root: string;
  private readonly followLinks: boolean;
  private readonly warnLine: (message: string) => void;
  private readonly warned = new Set<string>();
  /** md5 per real path, valid while the file keeps its (dev, inode, size, mtime, ctime): a poll re-reads nothing unchanged. */
  private readonly etags = new Map<string, CachedEtag>();

  constructor(url: string, options: StoreOptions) {
    const given = url.replace(/^file:(\/\/)?/, '');
    this.root = path.resolve(given === '' ? path.join(options.home, 'buckets') : given);
    this.url = `file://${this.root}`;
    this.followLinks = options.followLinks ?? false;
    this.warnLine = options.warn ?? ((message) => process.stderr.write(`caas: warning: ${message}\n`));
  }

  private bucketDir(bucket: string): string {
    if (!/^[A-Za-z0-9._-]+$/.test(bucket) || bucket === TMP_DIR || bucket === '.' || bucket === '..') {
      throw new Error(`"${bucket}" is not a valid bucket name`);
    }
    return path.join(this.root, bucket);
  }

  /** The local path of an object, confined to its bucket folder. */
  pathOf(bucket: string, key: string): string {
    const dir = this.bucketDir(bucket);
    const file = path.resolve(dir, key);
    if (key === '' || key.startsWith('/') || !file.startsWith(dir + path.sep)) throw new Error(`key "${key}" leaves bucket ${bucket}`);
    return file;
  }

  /** Where a key's real path must stay: its top-level folder, or the bucket for a key at the top. */
  private async fence(bucket: string, key: string): Promise<string> {
    // The bucket folder itself may be a link (the operator's choice); what is inside it may not lead out.
    const bucketDir = (await realPathSoFar(this.bucketDir(bucket))) ?? this.bucketDir(bucket);
    return fenceIn(bucketDir, key);
  }

  private refused(bucket: string, key: string): KeyRefused {
    const top = key.includes('/') ? `${key.split('/')[0]}/` : `bucket ${bucket}`;
    return new KeyRefused(`${key} in bucket ${bucket} is reached through a symbolic link that leads out of ${top}: refused`);
  }

  /**
   * The real path of an existing object, once it is known to stay inside its fence. Reading that
   * path, not the key's, leaves no second resolution for a link to change in between.
   */
  private async source(bucket: string, key: string): Promise<string> {
    const file = this.pathOf(bucket, key);
    if (this.followLinks) return file;
    const real = await realpath(file);
    if (!inside(real, await this.fence(bucket, key))) throw this.refused(bucket, key);
    return real;
  }

  /** The path to write (or delete) an object at, once the folder it goes in is known to stay inside its fence. */
  private async destination(bucket: string, key: string): Promise<string> {
    const file = this.pathOf(bucket, key);
    if (this.followLinks) return file;
    const folder = await realPathSoFar(path.dirname(file));
    const fence = await this.fence(bucket, key);
    if (folder === undefined || (folder !== fence && !inside(folder, fence))) throw this.refused(bucket, key);
    return file;
  }

  /** Reports a skipped path once per store, however often it is listed (a watcher lists every few seconds). */
  private warn(where: string, message: string): void {
    if (this.warned.has(where)) return;
    this.warned.add(where);
    this.warnLine(message);
  }

  private async tempFile(): Promise<string> {
    const dir = path.join(this.root, TMP_DIR);
    await mkdir(dir, { recursive: true });
    return path.join(dir, `${process.pid}-${randomBytes(6).toString('hex')}`);
  }

  /** Write to a temp file and rename it into place, so readers never see half an object. */
  private async place(bucket: string, key: string, fill: (tmp: string) => Promise<void>, exclusive: boolean): Promise<boolean> {
    const target = await this.destination(bucket, key);
    const tmp = await this.tempFile();
    try {
      await fill(tmp);
      await mkdir(path.dirname(target), { recursive: true });
      if (!exclusive) {
        await rename(tmp, target);
        return true;
      }
      try {
        await link(tmp, target);
        return true;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
        throw error;
      }
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async put(bucket: string, key: string, body: Body): Promise<void> {
    await this.place(bucket, key, (tmp) => writeFile(tmp, body), false);
  }

  putIfAbsent(bucket: string, key: string, body: Body): Promise<boolean> {
    return this.place(bucket, key, (tmp) => writeFile(tmp, body), true);
  }

  async putFile(bucket: string, key: string, localPath: string): Promise<StoredFile> {
    const measure = new Sha256PassThrough();
    await this.place(bucket, key, (tmp) => pipeline(createReadStream(localPath), measure, createWriteStream(tmp)), false);
    return measure.stored();
  }

  async get(bucket: string, key: string): Promise<Buffer> {
    try {
      return await readFile(await this.source(bucket, key));
    } catch (error) {
      throw notFound(error, bucket, key);
    }
  }

  async getStream(bucket: string, key: string): Promise<Readable> {
    try {
      const file = await this.source(bucket, key);
      await stat(file);
      return createReadStream(file);
    } catch (error) {
      throw notFound(error, bucket, key);
    }
  }

  async getToFile(bucket: string, key: string, localPath: string): Promise<void> {
    await mkdir(path.dirname(localPath), { recursive: true });
    await pipeline(await this.getStream(bucket, key), createWriteStream(localPath));
  }

  async head(bucket: string, key: string): Promise<ObjectInfo | undefined> {
    let file: string;
    try {
      file = await this.source(bucket, key);
    } catch (error) {
      // Missing, a dangling link or a loop: no object. A refused link is an answer of its own.
      if (errno(error) !== undefined) return undefined;
      throw error;
    }
    const info = await stat(file, { bigint: true }).catch(() => undefined);
    if (!info?.isFile()) return undefined;
    return { key, size: Number(info.size), etag: await this.etagOf(file, info), modified: info.mtime };
  }

  async *list(bucket: string, prefix: string): AsyncIterable<ObjectInfo> {
    const dir = this.bucketDir(bucket);
    // Walk only the folder the prefix reaches into, in key order (S3 lists in UTF-8 byte order).
    const slash = prefix.lastIndexOf('/');
    const start = slash >= 0 ? prefix.slice(0, slash + 1) : '';
    if (start.split('/').includes('..')) throw new Error(`prefix "${prefix}" leaves bucket ${bucket}`);
    let base: string;
    try {
      base = await realpath(dir);
    } catch (error) {
      if (errno(error) === 'ENOENT') return;
      throw error;
    }
    if (start !== '' && !this.followLinks) {
      // A listing never enters a linked folder (see describe), so neither does a prefix running through one.
      const lexical = path.join(base, start).replace(/\/+$/, '');
      let real: string;
      try {
        real = await realpath(lexical);
      } catch (error) {
        const code = errno(error);
        if (code === undefined) throw error;
        if (code !== 'ENOENT' && code !== 'ENOTDIR')
          this.warn(`${bucket}/${start}`, `${bucket}/${start} cannot be read (${code}): not listed`);
        return;
      }
      if (real !== lexical) {
        this.warn(
          `${bucket}/${start}`,
          `${bucket}/${start} is reached through a symbolic link: not listed (links to folders are never followed)`,
        );
        return;
      }
    }
    yield* this.walk(bucket, base, start, prefix);
  }

  private async *walk(bucket: string, base: string, relDir: string, prefix: string): AsyncIterable<ObjectInfo> {
    let entries: Dirent[];
    try {
      entries = await readdir(path.join(base, relDir), { withFileTypes: true });
    } catch (error) {
      const code = errno(error);
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      // An unreadable bucket is the store's problem; an unreadable folder inside it is one entry.
      if (relDir === '' || code === undefined) throw error;
      this.warn(`${bucket}/${relDir}`, `${bucket}/${relDir} cannot be read (${code}): its objects are not listed`);
      return;
    }
    const names = entries.map((entry) => ({ entry, key: relDir + entry.name + (entry.isDirectory() ? '/' : '') }));
    names.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    for (const { entry, key } of names) {
      if (entry.isDirectory()) {
        if (key.startsWith(prefix) || prefix.startsWith(key)) yield* this.walk(bucket, base, key, prefix);
      } else if (key.startsWith(prefix)) {
        const info = await this.describe(bucket, base, key, entry);
        if (info) yield info;
      }
    }
  }

  /** A listed entry as an object, or undefined (with a warning) when it is not a file this store serves. */
  private async describe(bucket: string, base: string, key: string, entry: Dirent): Promise<ObjectInfo | undefined> {
    const where = `${bucket}/${key}`;
    const skip = (why: string) => {
      this.warn(where, `${where} ${why}: not listed`);
      return undefined;
    };
    if (!entry.isFile() && !entry.isSymbolicLink()) return skip(`is not a regular file but ${kindOf(entry)}`);
    let file = path.join(base, key);
    try {
      if (entry.isSymbolicLink()) {
        file = await realpath(file);
        if (!this.followLinks && !inside(file, fenceIn(base, key))) {
          return skip(`is a symbolic link that leads out of ${key.includes('/') ? `${key.split('/')[0]}/` : `bucket ${bucket}`}`);
        }
      }
      const info = await stat(file, { bigint: true });
      if (info.isDirectory()) return skip('is a symbolic link to a folder (links to folders are never followed)');
      if (!info.isFile()) return skip(`is a symbolic link to ${kindOf(info)}`);
      return { key, size: Number(info.size), etag: await this.etagOf(file, info), modified: info.mtime };
    } catch (error) {
      const code = errno(error);
      if (code === undefined) throw error;
      // Removed between the folder's listing and this look: S3 would not list it either.
      if (code === 'ENOENT' && entry.isFile()) return undefined;
      if (code === 'ENOENT') return skip('is a dangling symbolic link');
      if (code === 'ELOOP') return skip('is a symbolic link loop');
      return skip(`cannot be read (${code})`);
    }
  }

  /** The md5 of a file, read again only when its (dev, inode, size, mtime, ctime) changed since it was last read. */
  private async etagOf(file: string, info: BigIntStats): Promise<string> {
    const cached = this.etags.get(file);
    if (
      cached?.dev === info.dev &&
      cached.ino === info.ino &&
      cached.size === info.size &&
      cached.mtimeNs === info.mtimeNs &&
      cached.ctimeNs === info.ctimeNs
    ) {
      return cached.etag;
    }
    const started = BigInt(Date.now()) * 1_000_000n;
    const etag = await this.hashFile(file);
    this.etags.delete(file);
    if (started - info.ctimeNs >= BigInt(ETAG_SETTLE_MS) * 1_000_000n) {
      if (this.etags.size >= MAX_CACHED_ETAGS) this.etags.delete(this.etags.keys().next().value as string);
      const { dev, ino, size, mtimeNs, ctimeNs } = info;
      this.etags.set(file, { dev, ino, size, mtimeNs, ctimeNs, etag });
    }
    return etag;
  }

  /** S3's ETag of a single-part upload is the MD5 of the content; the file store uses the same. One read of the whole file. */
  protected async hashFile(file: string): Promise<string> {
    const hash = createHash('md5');
    await pipeline(createReadStream(file), hash);
    return hash.digest('hex');
  }

  async delete(bucket: string, key: string): Promise<void> {
    await unlink(await this.destination(bucket, key)).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
    });
  }

  async bucketExists(bucket: string): Promise<boolean> {
    return (await stat(this.bucketDir(bucket)).catch(() => undefined))?.isDirectory() ?? false;
  }

  async createBucket(bucket: string): Promise<void> {
    await mkdir(this.bucketDir(bucket), { recursive: true });
  }

  async close(): Promise<void> {}
}

/** The folder a key's real path must stay in, given the bucket folder's real path. */
function fenceIn(bucketDir: string, key: string): string {
  return key.includes('/') ? path.join(bucketDir, key.split('/')[0]!) : bucketDir;
}

function inside(file: string, folder: string): boolean {
  return file.startsWith(folder + path.sep);
}

/** The code of a file system error (ENOENT, ELOOP, ...), or undefined for anything else. */
function errno(error: unknown): string | undefined {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
}

function kindOf(entry: Dirent | BigIntStats): string {
  if (entry.isSocket()) return 'a socket';
  if (entry.isFIFO()) return 'a FIFO';
  if (entry.isCharacterDevice() || entry.isBlockDevice()) return 'a device';
  if (entry.isDirectory()) return 'a folder';
  return 'a special file';
}

/**
 * The real path of `file` as far as it exists, with the part that does not exist yet appended as
 * named (where a write will create it). Undefined when the path runs into a dangling link, which
 * leads nowhere that can be checked.
 */
async function realPathSoFar(file: string): Promise<string | undefined> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await realpath(file);
    } catch (error) {
      if (errno(error) !== 'ENOENT') throw error;
      const info = await lstat(file).catch(() => undefined);
      if (info === undefined) {
        const parent = path.dirname(file);
        if (parent === file) throw error;
        const above = await realPathSoFar(parent);
        return above === undefined ? undefined : path.join(above, path.basename(file));
      }
      // It is there after all: made since realpath looked (another writer's mkdir of the same job
      // folder), so it is resolved again. A link that still leads nowhere is dangling.
      if (attempt >= 2) {
        if (info.isSymbolicLink()) return undefined;
        throw error;
      }
    }
  }
}

function notFound(error: unknown, bucket: string, key: string): Error {
  if ((error as NodeJS.ErrnoException).code === 'ENOENT')
    return Object.assign(new Error(`no object ${key} in bucket ${bucket}`), { code: 'NoSuchKey' });
  return error as Error;
}
