import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import {
  type Body,
  type ObjectInfo,
  type ObjectStore,
  registerStoreKind,
  type StoreCapability,
  type StoredFile,
} from '../../backends/storage/index.ts';

interface Stored {
  body: Buffer;
  etag: string;
  modified: Date;
}

/** Every mem:// store of this process, by name: reopening mem://name (an inline agent does) sees the same objects. */
const spaces = new Map<string, Map<string, Map<string, Stored>>>();

/**
 * A toy object store that keeps its buckets in this process's memory: mem://name. It exists to
 * show that a new kind of store is one file plus its registration (registerMemStore); it lives
 * only as long as the process, so only launchers that run the agent in-process (inline) can use it.
 */
export class MemStore implements ObjectStore {
  readonly scheme = 'mem';
  readonly url: string;
  readonly capabilities = new Set<StoreCapability>(['buckets-on-demand', 'atomic-put-if-absent']);
  private readonly buckets: Map<string, Map<string, Stored>>;

  constructor(url: string) {
    const name = url.replace(/^mem:(\/\/)?/, '').replace(/\/+$/, '');
    this.url = `mem://${name}`;
    const space = spaces.get(name) ?? new Map<string, Map<string, Stored>>();
    spaces.set(name, space);
    this.buckets = space;
  }

  private bucket(bucket: string): Map<string, Stored> {
    const objects = this.buckets.get(bucket);
    if (!objects) throw Object.assign(new Error(`no bucket ${bucket} in ${this.url}`), { code: 'NoSuchBucket' });
    return objects;
  }

  private stored(bucket: string, key: string): Stored {
    const object = this.bucket(bucket).get(key);
    if (!object) throw Object.assign(new Error(`no object ${key} in bucket ${bucket}`), { code: 'NoSuchKey' });
    return object;
  }

  async put(bucket: string, key: string, body: Body): Promise<void> {
    const bytes = Buffer.from(body);
    this.bucket(bucket).set(key, { body: bytes, etag: createHash('md5').update(bytes).digest('hex'), modified: new Date() });
  }

  async putIfAbsent(bucket: string, key: string, body: Body): Promise<boolean> {
    if (this.bucket(bucket).has(key)) return false;
    await this.put(bucket, key, body);
    return true;
  }

  async putFile(bucket: string, key: string, localPath: string): Promise<StoredFile> {
    const bytes = await readFile(localPath);
    await this.put(bucket, key, bytes);
    return { size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
  }

  async get(bucket: string, key: string): Promise<Buffer> {
    return Buffer.from(this.stored(bucket, key).body);
  }

  async getStream(bucket: string, key: string): Promise<Readable> {
    return Readable.from([await this.get(bucket, key)]);
  }

  async getToFile(bucket: string, key: string, localPath: string): Promise<void> {
    const body = await this.get(bucket, key);
    await mkdir(path.dirname(localPath), { recursive: true });
    await writeFile(localPath, body);
  }

  async head(bucket: string, key: string): Promise<ObjectInfo | undefined> {
    const object = this.buckets.get(bucket)?.get(key);
    return object && { key, size: object.body.length, etag: object.etag, modified: object.modified };
  }

  async *list(bucket: string, prefix: string): AsyncIterable<ObjectInfo> {
    const keys = [...(this.buckets.get(bucket)?.keys() ?? [])].filter((key) => key.startsWith(prefix));
    // S3's order: UTF-8 bytes.
    keys.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const key of keys) {
      const info = await this.head(bucket, key);
      if (info) yield info;
    }
  }

  async delete(bucket: string, key: string): Promise<void> {
    this.buckets.get(bucket)?.delete(key);
  }

  async bucketExists(bucket: string): Promise<boolean> {
    return this.buckets.has(bucket);
  }

  async createBucket(bucket: string): Promise<void> {
    if (!this.buckets.has(bucket)) this.buckets.set(bucket, new Map());
  }

  copyCommand(bucket: string, prefix: string, to: string): string {
    return `# ${this.url}/${bucket}/${prefix} lives in the memory of the process that wrote it; nothing can copy it to ${to}`;
  }

  createBucketHint(bucket: string): string {
    return `caas makes ${bucket} in ${this.url} when it needs it`;
  }

  environment(): Record<string, string> {
    return {};
  }

  async close(): Promise<void> {}
}

/** The registration: after it, every caas command of this process accepts mem:// URLs. */
export function registerMemStore(): void {
  registerStoreKind({
    scheme: 'mem',
    example: 'mem://bucket/key',
    description: 'mem://name (in this process only)',
    reach: 'process',
    async open(url) {
      return new MemStore(url);
    },
  });
}
