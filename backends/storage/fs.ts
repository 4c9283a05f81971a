import { createHash, randomBytes } from 'node:crypto';
import { type BigIntStats, constants, createWriteStream, type Dirent, existsSync } from 'node:fs';
import {
  type FileHandle,
  link,
  lstat,
  mkdir,
  open,
  readdir,
  readlink,
  realpath,
  rename,
  rm,
  stat,
  unlink,
  writeFile,
} from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { shellQuote } from '../../models/shell-quote.ts';
import {
  type Body,
  KeyRefused,
  type ObjectInfo,
  type ObjectStore,
  Sha256PassThrough,
  type StoreCapability,
  type StoredFile,
  type StoreOptions,
} from './index.ts';

const TMP_DIR = '.caas-tmp';

/**
 * Linux names the file behind an open descriptor at /proc/self/fd/N: the store checks what it
 * opened, not what a path led to a moment before, and reaches into a checked folder through it.
 */
const PROC_FD = process.platform === 'linux' && existsSync('/proc/self/fd');
/** Non-blocking, so that opening a FIFO never waits for a writer (what is not a regular file is never read). */
const READ_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);
const FOLDER_FLAGS = constants.O_RDONLY | (constants.O_DIRECTORY ?? 0);
/** The codes of a key that names nothing to read: missing, a dangling link or a loop, a path through a file, a socket. */
const NO_OBJECT = new Set(['ENOENT', 'ENOTDIR', 'ELOOP', 'ENAMETOOLONG', 'ENXIO']);
const HASH_CHUNK = 1024 * 1024;
/**
 * Files up to this size are copied in one read and one write: most objects a job moves (configs,
 * logs, manifests, status) are small, and a stream pipeline costs more than the copy itself.
 */
const WHOLE_FILE_BYTES = 1024 * 1024;

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
 *
 * A group member may swap a folder for a link at any moment, so no check of a path is trusted for
 * a later access through it (on Linux, through /proc/self/fd): a read opens the file first, then
 * checks where what it opened lies, and reads (or hashes) only from that descriptor; a write opens
 * the folders the object goes in one at a time, each looked up inside the one opened and checked
 * before it, and renames the object into the last one through its descriptor (rename replaces
 * whatever has the object's name there, a link included, and never follows it). Where /proc is
 * missing, the checks fall back to resolving the real path just before the open (reads) or the
 * rename (writes), then checking the placed file's real path: a folder swapped in that moment can
 * still mislead one access.
 */
export class FileStore implements ObjectStore {
  readonly scheme = 'file';
  readonly url: string;
  readonly root: string;
  // rename(2) into a folder that holds no such name yet is what makes putIfAbsent atomic here.
  readonly capabilities = new Set<StoreCapability>(['buckets-on-demand', 'atomic-put-if-absent']);
  private readonly followLinks: boolean;
  private readonly warnLine: (message: string) => void;
  private readonly warned = new Set<string>();
  /** md5 per real path, valid while the file keeps its (dev, inode, size, mtime, ctime): a poll re-reads nothing unchanged. */
  private readonly etags = new Map<string, CachedEtag>();
  /** Real paths of bucket folders, once they exist. */
  private readonly bucketReal = new Map<string, string>();
  private tmpReady: Promise<unknown> | undefined;

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
  localPath(bucket: string, key: string): string {
    const dir = this.bucketDir(bucket);
    const file = path.resolve(dir, key);
    if (key === '' || key.startsWith('/') || !file.startsWith(dir + path.sep)) throw new Error(`key "${key}" leaves bucket ${bucket}`);
    return file;
  }

  /** Where a key's real path must stay: its top-level folder, or the bucket for a key at the top. */
  private async fence(bucket: string, key: string): Promise<string> {
    // The bucket folder itself may be a link (the operator's choice, read once per store); what is
    // inside it may not lead out.
    let bucketDir = this.bucketReal.get(bucket);
    if (bucketDir === undefined) {
      const real = await realpath(this.bucketDir(bucket)).catch(() => undefined);
      if (real !== undefined) this.bucketReal.set(bucket, real);
      bucketDir = real ?? (await realPathSoFar(this.bucketDir(bucket))) ?? this.bucketDir(bucket);
    }
    return fenceIn(bucketDir, key);
  }

  private refused(bucket: string, key: string): KeyRefused {
    const top = key.includes('/') ? `${key.split('/')[0]}/` : `bucket ${bucket}`;
    return new KeyRefused(`${key} in bucket ${bucket} is reached through a symbolic link that leads out of ${top}: refused`);
  }

  /**
   * Opens a file or a folder of the store. Every read and write of an object opens what it uses
   * here, then checks what it opened (a seam for tests that change the bucket at that moment).
   */
  protected openPath(file: string, flags: number): Promise<FileHandle> {
    return open(file, flags);
  }

  /**
   * Opens a file to read, and returns it with the real path of what was opened, once that is
   * known to lie inside `fence` (no fence: links are followed anywhere). Undefined, with nothing
   * left open, when it lies outside.
   */
  private async openInside(file: string, fence: string | undefined): Promise<Opened | undefined> {
    if (fence === undefined) return { handle: await this.openPath(file, READ_FLAGS), real: file };
    if (!PROC_FD) {
      // Without /proc: checked just before it is opened, by its real path (which has no link left to swap).
      const real = await realpath(file);
      return inside(real, fence) ? { handle: await this.openPath(real, READ_FLAGS), real } : undefined;
    }
    const handle = await this.openPath(file, READ_FLAGS);
    try {
      const real = await readlink(fdPath(handle));
      if (inside(real, fence)) return { handle, real };
    } catch (error) {
      await handle.close();
      throw error;
    }
    await handle.close();
    return undefined;
  }

  /**
   * An existing object opened to read, once what was opened is known to lie inside its fence;
   * whatever the path leads to later, reads come from this descriptor. Code NoSuchKey when it is
   * not a regular file (a folder, a FIFO): listings never show those either.
   */
  private async source(bucket: string, key: string): Promise<{ handle: FileHandle; real: string; info: BigIntStats }> {
    const file = this.localPath(bucket, key);
    const opened = await this.openInside(file, this.followLinks ? undefined : await this.fence(bucket, key));
    if (opened === undefined) throw this.refused(bucket, key);
    try {
      const info = await opened.handle.stat({ bigint: true });
      if (!info.isFile()) throw noSuchKey(bucket, key);
      return { ...opened, info };
    } catch (error) {
      await opened.handle.close();
      throw error;
    }
  }

  /** source() for a read the caller asked for by key: a missing object is NoSuchKey, as on S3. */
  private async existing(bucket: string, key: string): Promise<{ handle: FileHandle; real: string; info: BigIntStats }> {
    try {
      return await this.source(bucket, key);
    } catch (error) {
      throw notFound(error, bucket, key);
    }
  }

  /**
   * The folder an object goes in, opened, with the object's name in it; undefined when a folder on
   * the way does not exist and `create` is false. Each folder is looked up inside the one opened
   * before it (through /proc/self/fd, so no path is resolved twice) and must lie inside the key's
   * fence once opened; missing ones are made there. Linux only (PROC_FD).
   */
  private async openFolder(bucket: string, key: string, create: boolean): Promise<{ folder: FileHandle; name: string } | undefined> {
    const dir = this.bucketDir(bucket);
    const parts = path.relative(dir, this.localPath(bucket, key)).split(path.sep);
    const name = parts.pop()!;
    let folder: FileHandle;
    try {
      folder = await this.openPath(dir, FOLDER_FLAGS);
    } catch (error) {
      if (errno(error) !== 'ENOENT' || !create) {
        if (errno(error) === 'ENOENT') return undefined;
        throw error;
      }
      await mkdir(dir, { recursive: true });
      folder = await this.openPath(dir, FOLDER_FLAGS);
    }
    try {
      const fence = await this.fence(bucket, key);
      for (const part of parts) {
        const next = `${fdPath(folder)}/${part}`;
        // Opened first: the folders of a job mostly exist already, and a mkdir is one more round trip.
        let opened: FileHandle | undefined = await this.openPath(next, FOLDER_FLAGS).catch((error: unknown) => {
          if (errno(error) !== 'ENOENT') throw error;
          return undefined;
        });
        if (opened === undefined) {
          if (!create) {
            await folder.close();
            return undefined;
          }
          const made = await mkdir(next).then(
            () => true,
            (error: NodeJS.ErrnoException) => {
              if (error.code !== 'EEXIST') throw error;
              return false;
            },
          );
          try {
            opened = await this.openPath(next, FOLDER_FLAGS);
          } catch (error) {
            if (errno(error) !== 'ENOENT') throw error;
            // There (mkdir said so) yet leading nowhere: a dangling link, as destination() refuses it.
            if (!made) throw this.refused(bucket, key);
            throw error;
          }
        }
        await folder.close();
        folder = opened;
        await this.checkFolder(folder, fence, bucket, key);
      }
      if (parts.length === 0) await this.checkFolder(folder, fence, bucket, key);
      return { folder, name };
    } catch (error) {
      await folder.close();
      throw error;
    }
  }

  private async checkFolder(folder: FileHandle, fence: string, bucket: string, key: string): Promise<void> {
    const real = await readlink(fdPath(folder));
    if (real !== fence && !inside(real, fence)) throw this.refused(bucket, key);
  }

  /** The path to write (or delete) an object at, once the folder it goes in is known to stay inside its fence. */
  private async destination(bucket: string, key: string): Promise<string> {
    const file = this.localPath(bucket, key);
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

  /** A fresh name in the store's staging folder, made once per store (again if someone removed it). */
  private async tempFile(again = false): Promise<string> {
    const dir = path.join(this.root, TMP_DIR);
    if (again || !this.tmpReady) this.tmpReady = mkdir(dir, { recursive: true });
    await this.tmpReady;
    return path.join(dir, `${process.pid}-${randomBytes(6).toString('hex')}`);
  }

  /**
   * Write to a temp file and rename it into place, so readers never see half an object. The key is
   * checked first (nothing is written for a refused key), and again where the object is placed.
   */
  private async place(bucket: string, key: string, fill: (tmp: string) => Promise<void>, exclusive: boolean): Promise<boolean> {
    if (!PROC_FD || this.followLinks) {
      const target = await this.destination(bucket, key);
      return this.staged(fill, async (tmp) => {
        if (!this.followLinks) return this.placeByPath(bucket, key, target, tmp, exclusive);
        await mkdir(path.dirname(target), { recursive: true });
        return moveInto(tmp, target, exclusive);
      });
    }
    // The folder is opened and checked first (nothing is written for a refused key), and the object
    // goes into it through its descriptor: a folder swapped since cannot redirect it.
    const { folder, name } = (await this.openFolder(bucket, key, true))!;
    try {
      return await this.staged(fill, (tmp) => moveInto(tmp, `${fdPath(folder)}/${name}`, exclusive));
    } finally {
      await folder.close();
    }
  }

  /** Fills a temp file and moves it into place; the temp file never outlives the call. */
  private async staged<T>(fill: (tmp: string) => Promise<void>, move: (tmp: string) => Promise<T>): Promise<T> {
    let tmp = await this.tempFile();
    try {
      try {
        await fill(tmp);
      } catch (error) {
        // The staging folder was removed under a long-running store (a clean-up): made again, once.
        if (errno(error) !== 'ENOENT' || existsSync(path.dirname(tmp))) throw error;
        tmp = await this.tempFile(true);
        await fill(tmp);
      }
      return await move(tmp);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /**
   * place() without /proc: the folder is checked again right before the rename, and the placed
   * file's real path after it; one that escaped its fence (a folder swapped in between) is removed.
   */
  private async placeByPath(bucket: string, key: string, target: string, tmp: string, exclusive: boolean): Promise<boolean> {
    await mkdir(path.dirname(target), { recursive: true });
    await this.destination(bucket, key);
    if (!(await moveInto(tmp, target, exclusive))) return false;
    const real = await realpath(target).catch(() => undefined);
    if (real === undefined || !inside(real, await this.fence(bucket, key))) {
      await unlink(real ?? target).catch(() => {});
      throw this.refused(bucket, key);
    }
    return true;
  }

  async put(bucket: string, key: string, body: Body): Promise<void> {
    await this.place(bucket, key, (tmp) => writeFile(tmp, body), false);
  }

  putIfAbsent(bucket: string, key: string, body: Body): Promise<boolean> {
    return this.place(bucket, key, (tmp) => writeFile(tmp, body), true);
  }

  async putFile(bucket: string, key: string, localPath: string): Promise<StoredFile> {
    let stored: StoredFile | undefined;
    await this.place(
      bucket,
      key,
      async (tmp) => {
        stored = await copyMeasured(localPath, tmp);
      },
      false,
    );
    return stored!;
  }

  async get(bucket: string, key: string): Promise<Buffer> {
    const { handle } = await this.existing(bucket, key);
    try {
      return await handle.readFile();
    } finally {
      await handle.close();
    }
  }

  async getStream(bucket: string, key: string): Promise<Readable> {
    // The stream reads the descriptor that was checked, and closes it when it ends or is destroyed.
    return (await this.existing(bucket, key)).handle.createReadStream();
  }

  async getToFile(bucket: string, key: string, localPath: string): Promise<void> {
    await mkdir(path.dirname(localPath), { recursive: true });
    // Read from the descriptor that was checked, whatever the path leads to by now.
    const { handle, info } = await this.existing(bucket, key);
    try {
      if (info.size <= WHOLE_FILE_BYTES) await writeFile(localPath, await handle.readFile());
      else await pipeline(handle.createReadStream({ autoClose: false }), createWriteStream(localPath));
    } finally {
      await handle.close();
    }
  }

  async head(bucket: string, key: string): Promise<ObjectInfo | undefined> {
    let opened: Awaited<ReturnType<FileStore['source']>>;
    try {
      opened = await this.source(bucket, key);
    } catch (error) {
      // Missing, a dangling link, a loop or not a regular file: no object. A refused link is an
      // answer of its own, and so is a file that cannot be opened (EACCES, EMFILE): never "absent".
      const code = errno(error) ?? (error as { code?: unknown }).code;
      if (typeof code === 'string' && (NO_OBJECT.has(code) || code === 'NoSuchKey')) return undefined;
      throw error;
    }
    const { handle, real, info } = opened;
    try {
      const etag = this.cachedEtag(real, info) ?? (await this.hashedEtag(real, info, handle));
      return { key, size: Number(info.size), etag, modified: info.mtime };
    } finally {
      await handle.close();
    }
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
    const fence = this.followLinks ? undefined : fenceIn(base, key);
    const leadsOut = `is a symbolic link that leads out of ${key.includes('/') ? `${key.split('/')[0]}/` : `bucket ${bucket}`}`;
    let file = path.join(base, key);
    try {
      if (entry.isSymbolicLink()) {
        file = await realpath(file);
        if (fence !== undefined && !inside(file, fence)) return skip(leadsOut);
      }
      const info = await stat(file, { bigint: true });
      if (info.isDirectory()) return skip('is a symbolic link to a folder (links to folders are never followed)');
      if (!info.isFile()) return skip(`is a symbolic link to ${kindOf(info)}`);
      // A remembered md5 belongs to a file that was opened and checked, and stat found that same file again.
      const cached = this.cachedEtag(file, info);
      if (cached !== undefined) return { key, size: Number(info.size), etag: cached, modified: info.mtime };
      // What is hashed is what is opened, checked once open: a folder on the way may have been swapped since the look above.
      const opened = await this.openInside(file, fence);
      if (opened === undefined) return skip(leadsOut);
      try {
        const now = await opened.handle.stat({ bigint: true });
        // Replaced by something else in the meantime: not an object this time round.
        if (!now.isFile()) return undefined;
        return { key, size: Number(now.size), etag: await this.hashedEtag(opened.real, now, opened.handle), modified: now.mtime };
      } finally {
        await opened.handle.close();
      }
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

  /** The md5 remembered for a file, while its (dev, inode, size, mtime, ctime) are those it had when it was read. */
  private cachedEtag(file: string, info: BigIntStats): string | undefined {
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
    return undefined;
  }

  /** The md5 of an opened file (`info` is its fstat), remembered under its real path once it has settled. */
  private async hashedEtag(file: string, info: BigIntStats, handle: FileHandle): Promise<string> {
    const started = BigInt(Date.now()) * 1_000_000n;
    const etag = await this.hashFile(file, handle);
    this.etags.delete(file);
    if (started - info.ctimeNs >= BigInt(ETAG_SETTLE_MS) * 1_000_000n) {
      if (this.etags.size >= MAX_CACHED_ETAGS) this.etags.delete(this.etags.keys().next().value as string);
      const { dev, ino, size, mtimeNs, ctimeNs } = info;
      this.etags.set(file, { dev, ino, size, mtimeNs, ctimeNs, etag });
    }
    return etag;
  }

  /**
   * S3's ETag of a single-part upload is the MD5 of the content; the file store uses the same. One
   * read of the whole file, from the descriptor that was checked (`file` is its real path).
   */
  protected async hashFile(_file: string, handle: FileHandle): Promise<string> {
    const hash = createHash('md5');
    const buffer = Buffer.allocUnsafe(HASH_CHUNK);
    for (let position = 0; ; ) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      position += bytesRead;
    }
    return hash.digest('hex');
  }

  async delete(bucket: string, key: string): Promise<void> {
    const target = await this.destination(bucket, key);
    const ignoreMissing = (error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
    };
    if (this.followLinks || !PROC_FD) {
      await unlink(target).catch(ignoreMissing);
      return;
    }
    const opened = await this.openFolder(bucket, key, false);
    if (opened === undefined) return;
    try {
      await unlink(`${fdPath(opened.folder)}/${opened.name}`).catch(ignoreMissing);
    } finally {
      await opened.folder.close();
    }
  }

  async bucketExists(bucket: string): Promise<boolean> {
    return (await stat(this.bucketDir(bucket)).catch(() => undefined))?.isDirectory() ?? false;
  }

  async createBucket(bucket: string): Promise<void> {
    await mkdir(this.bucketDir(bucket), { recursive: true });
  }

  copyCommand(bucket: string, prefix: string, to: string): string {
    return `cp -R ${shellQuote(this.localPath(bucket, prefix).replace(/\/$/, ''))} ${shellQuote(to)}`;
  }

  createBucketHint(bucket: string): string {
    return `mkdir -p ${shellQuote(this.bucketDir(bucket))}`;
  }

  environment(): Record<string, string> {
    return {};
  }

  async close(): Promise<void> {}
}

interface Opened {
  handle: FileHandle;
  /** The real path of what was opened (on Linux, as /proc names it: " (deleted)" once it is unlinked). */
  real: string;
}

/** The path that leads to exactly what a descriptor holds open, however the names on the way change. */
function fdPath(handle: FileHandle): string {
  return `/proc/self/fd/${handle.fd}`;
}

/**
 * Copies a local file and measures what was copied: a small regular file in one read, anything else
 * streamed (a FIFO or a /proc file reports size 0 and may hold any amount).
 */
async function copyMeasured(from: string, to: string): Promise<StoredFile> {
  const handle = await open(from, 'r');
  try {
    const info = await handle.stat();
    if (info.isFile() && info.size <= WHOLE_FILE_BYTES) {
      const body = await handle.readFile();
      await writeFile(to, body);
      return { size: body.length, sha256: createHash('sha256').update(body).digest('hex') };
    }
    const measure = new Sha256PassThrough();
    await pipeline(handle.createReadStream({ autoClose: false }), measure, createWriteStream(to));
    return measure.stored();
  } finally {
    await handle.close();
  }
}

/** Renames a finished temp file to `target`; exclusive: links it there instead, false when the key exists. */
async function moveInto(tmp: string, target: string, exclusive: boolean): Promise<boolean> {
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
  if ((error as NodeJS.ErrnoException).code === 'ENOENT') return noSuchKey(bucket, key);
  return error as Error;
}

function noSuchKey(bucket: string, key: string): Error {
  return Object.assign(new Error(`no object ${key} in bucket ${bucket}`), { code: 'NoSuchKey' });
}
