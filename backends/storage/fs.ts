import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { link, mkdir, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type Body, type ObjectInfo, type ObjectStore, Sha256PassThrough, type StoredFile, type StoreOptions } from './index.ts';

const TMP_DIR = '.caas-tmp';

/** Buckets are folders under one root (default {home}/buckets); objects are files. */
export class FileStore implements ObjectStore {
  readonly scheme = 'file' as const;
  readonly url: string;
  readonly root: string;

  constructor(url: string, options: StoreOptions) {
    const given = url.replace(/^file:(\/\/)?/, '');
    this.root = path.resolve(given === '' ? path.join(options.home, 'buckets') : given);
    this.url = `file://${this.root}`;
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

  private async tempFile(): Promise<string> {
    const dir = path.join(this.root, TMP_DIR);
    await mkdir(dir, { recursive: true });
    return path.join(dir, `${process.pid}-${randomBytes(6).toString('hex')}`);
  }

  /** Write to a temp file and rename it into place, so readers never see half an object. */
  private async place(bucket: string, key: string, fill: (tmp: string) => Promise<void>, exclusive: boolean): Promise<boolean> {
    const target = this.pathOf(bucket, key);
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
      return await readFile(this.pathOf(bucket, key));
    } catch (error) {
      throw notFound(error, bucket, key);
    }
  }

  async getStream(bucket: string, key: string): Promise<Readable> {
    const file = this.pathOf(bucket, key);
    await stat(file).catch((error) => {
      throw notFound(error, bucket, key);
    });
    return createReadStream(file);
  }

  async getToFile(bucket: string, key: string, localPath: string): Promise<void> {
    await mkdir(path.dirname(localPath), { recursive: true });
    await pipeline(await this.getStream(bucket, key), createWriteStream(localPath));
  }

  async head(bucket: string, key: string): Promise<ObjectInfo | undefined> {
    const file = this.pathOf(bucket, key);
    const info = await stat(file).catch(() => undefined);
    if (!info?.isFile()) return undefined;
    return { key, size: info.size, etag: await md5File(file), modified: info.mtime };
  }

  async *list(bucket: string, prefix: string): AsyncIterable<ObjectInfo> {
    const dir = this.bucketDir(bucket);
    // Walk only the folder the prefix reaches into, in key order (S3 lists in UTF-8 byte order).
    const slash = prefix.lastIndexOf('/');
    const start = slash >= 0 ? prefix.slice(0, slash + 1) : '';
    if (start.split('/').includes('..')) throw new Error(`prefix "${prefix}" leaves bucket ${bucket}`);
    yield* this.walk(dir, start, prefix);
  }

  private async *walk(bucketDir: string, relDir: string, prefix: string): AsyncIterable<ObjectInfo> {
    const entries = await readdir(path.join(bucketDir, relDir), { withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return [];
      throw error;
    });
    const names = entries.map((e) => ({ key: relDir + e.name + (e.isDirectory() ? '/' : ''), dir: e.isDirectory() }));
    names.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    for (const entry of names) {
      if (entry.dir) {
        if (entry.key.startsWith(prefix) || prefix.startsWith(entry.key)) yield* this.walk(bucketDir, entry.key, prefix);
      } else if (entry.key.startsWith(prefix)) {
        const file = path.join(bucketDir, entry.key);
        const info = await stat(file);
        yield { key: entry.key, size: info.size, etag: await md5File(file), modified: info.mtime };
      }
    }
  }

  async delete(bucket: string, key: string): Promise<void> {
    await unlink(this.pathOf(bucket, key)).catch((error: NodeJS.ErrnoException) => {
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

/** S3's ETag of a single-part upload is the MD5 of the content; the file store uses the same. */
async function md5File(file: string): Promise<string> {
  const hash = createHash('md5');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
}

function notFound(error: unknown, bucket: string, key: string): Error {
  if ((error as NodeJS.ErrnoException).code === 'ENOENT')
    return Object.assign(new Error(`no object ${key} in bucket ${bucket}`), { code: 'NoSuchKey' });
  return error as Error;
}
