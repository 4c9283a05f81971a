import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ObjectInfo, type ObjectStore, openStore } from '../../backends/storage/index.ts';

export interface Subject {
  store: ObjectStore;
  close(): Promise<void>;
}

const BIG_FILE_BYTES = 20 * 1024 * 1024 + 12_345; // not a multiple of the 8 MiB part size

/** S3 lists in UTF-8 byte order, which differs from JS string order outside the BMP. */
export function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

export async function collect(listing: AsyncIterable<ObjectInfo>): Promise<string[]> {
  const keys: string[] = [];
  for await (const info of listing) keys.push(info.key);
  return keys;
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
}

async function writeRandomFile(file: string, bytes: number): Promise<string> {
  const hash = createHash('sha256');
  const out = createWriteStream(file);
  for (let left = bytes; left > 0; ) {
    const chunk = randomBytes(Math.min(left, 1024 * 1024));
    hash.update(chunk);
    if (!out.write(chunk)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
    left -= chunk.length;
  }
  await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
  return hash.digest('hex');
}

function md5(body: string | Uint8Array): string {
  return createHash('md5').update(body).digest('hex');
}

/** The promises of ObjectStore as the bucket contract relies on them, for any backend. */
export function objectStoreContract(name: string, open: () => Promise<Subject>): void {
  describe(name, () => {
    const bucket = 'caas-conformance';
    let subject: Subject;
    let store: ObjectStore;
    let scratch: string;

    beforeAll(async () => {
      scratch = await mkdtemp(path.join(os.tmpdir(), 'caas-storage-'));
      subject = await open();
      store = subject.store;
      await store.createBucket(bucket);
    });
    afterAll(async () => {
      await subject?.close();
      await rm(scratch, { recursive: true, force: true });
    });

    it('its url opens the same store again, settings included (what an agent elsewhere is given)', async () => {
      await store.put(bucket, 'reopen/seen.txt', 'seen');
      const again = await openStore(store.url, { home: scratch });
      try {
        expect(again.scheme).toBe(store.scheme);
        expect(again.url).toBe(store.url);
        expect((await again.get(bucket, 'reopen/seen.txt')).toString()).toBe('seen');
      } finally {
        await again.close();
      }
    });

    it('answers what it can do, how to copy a prefix and how to make a bucket, without I/O', () => {
      for (const capability of store.capabilities) expect(['buckets-on-demand', 'atomic-put-if-absent']).toContain(capability);
      expect(store.copyCommand(bucket, 'reopen/', './here')).toMatch(/\.\/here$/);
      expect(store.createBucketHint('caas-new-bucket')).toContain('caas-new-bucket');
      expect(typeof store.environment({})).toBe('object');
    });

    it('createBucket makes bucketExists true and is safe to repeat', async () => {
      expect(await store.bucketExists('caas-not-made-yet')).toBe(false);
      await store.createBucket('caas-made-twice');
      await store.createBucket('caas-made-twice');
      expect(await store.bucketExists('caas-made-twice')).toBe(true);
    });

    it('get returns exactly what put wrote, for text and binary bodies', async () => {
      const binary = new Uint8Array(randomBytes(4096));
      binary[0] = 0;
      binary[1] = 0xff;
      await store.put(bucket, 'roundtrip/text.json', '{"status":"SUCCESS","é":"✓"}');
      await store.put(bucket, 'roundtrip/binary.bin', binary);
      expect((await store.get(bucket, 'roundtrip/text.json')).toString('utf8')).toBe('{"status":"SUCCESS","é":"✓"}');
      expect(Buffer.compare(await store.get(bucket, 'roundtrip/binary.bin'), binary)).toBe(0);
    });

    it('put replaces an existing object whole', async () => {
      await store.put(bucket, 'replace/status.json', 'first, and longer than the second');
      await store.put(bucket, 'replace/status.json', 'second');
      expect((await store.get(bucket, 'replace/status.json')).toString()).toBe('second');
    });

    it('head reports the size, the md5 hex etag of a single-part object and a modification time', async () => {
      const body = 'the job is over\n';
      const before = Date.now() - 60_000;
      await store.put(bucket, 'head/end.txt', body);
      const info = await store.head(bucket, 'head/end.txt');
      expect(info).toMatchObject({ key: 'head/end.txt', size: Buffer.byteLength(body), etag: md5(body) });
      expect(info?.modified.getTime()).toBeGreaterThan(before);
    });

    it('head of a missing key is undefined', async () => {
      expect(await store.head(bucket, 'head/never-written.txt')).toBeUndefined();
    });

    it('get and getStream of a missing key reject with code NoSuchKey, naming key and bucket', async () => {
      const missing = { code: 'NoSuchKey', message: `no object missing/x.txt in bucket ${bucket}` };
      await expect(store.get(bucket, 'missing/x.txt')).rejects.toMatchObject(missing);
      await expect(store.getStream(bucket, 'missing/x.txt')).rejects.toMatchObject(missing);
    });

    it('list yields exactly the keys under a folder prefix, nested folders included, in key order', async () => {
      const job = 'grp/results/job__b_ts';
      const inside = [
        `${job}/logs/DATASET_NAME-a.nwb_STATUS.json`,
        `${job}/logs/certificate.txt`,
        `${job}/logs/x.txt`,
        `${job}/process_results/deep/er/out.csv`,
        `${job}/process_results/end.txt`,
      ];
      const outside = [
        'grp/results/job__b_ts2/logs/x.txt',
        'grp/results/job__c_ts/logs/x.txt',
        'grp/configs/c.json',
        'other/grp/results/x',
      ];
      await Promise.all([...inside, ...outside].reverse().map((key) => store.put(bucket, key, key)));

      const listed = [];
      for await (const info of store.list(bucket, `${job}/`)) listed.push(info);
      expect(listed.map((info) => info.key)).toEqual([...inside].sort(byteOrder));
      for (const info of listed) expect(info).toMatchObject({ size: Buffer.byteLength(info.key), etag: md5(info.key) });
      expect(await collect(store.list(bucket, 'grp/results/job__nobody/'))).toEqual([]);
    });

    it('list treats a prefix as a plain string prefix, not only at "/" boundaries', async () => {
      const keys = ['mid/job__a_1/end.txt', 'mid/job__a_2/end.txt', 'mid/job__ab/end.txt', 'mid/job__b/end.txt', 'mid/jo.txt'];
      await Promise.all(keys.map((key) => store.put(bucket, key, 'x')));
      expect(await collect(store.list(bucket, 'mid/job__a'))).toEqual([
        'mid/job__a_1/end.txt',
        'mid/job__a_2/end.txt',
        'mid/job__ab/end.txt',
      ]);
      expect(await collect(store.list(bucket, 'mid/job__a_2/en'))).toEqual(['mid/job__a_2/end.txt']);
      expect(await collect(store.list(bucket, 'mi'))).toEqual([...keys].sort(byteOrder));
    });

    it('putIfAbsent writes a new key, then returns false and leaves the first content in place', async () => {
      expect(await store.putIfAbsent(bucket, 'claims/lease.json', 'first')).toBe(true);
      expect(await store.putIfAbsent(bucket, 'claims/lease.json', 'second')).toBe(false);
      expect((await store.get(bucket, 'claims/lease.json')).toString()).toBe('first');
    });

    it.each([
      ['small', 1000],
      ['1 MiB', 1024 * 1024],
      [`${Math.round(BIG_FILE_BYTES / 2 ** 20)} MiB`, BIG_FILE_BYTES],
    ])('putFile then getToFile round-trips a %s file byte for byte, and putFile measures what it stored', async (label, bytes) => {
      const source = path.join(scratch, `${bytes}.bin`);
      const copy = path.join(scratch, 'copy', 'nested', `${bytes}.bin`);
      const sha = await writeRandomFile(source, bytes);
      const key = `big/inputs/recording-${label.replace(' ', '')}.bin`;
      expect(await store.putFile(bucket, key, source)).toEqual({ size: bytes, sha256: sha });
      expect((await store.head(bucket, key))?.size).toBe(bytes);
      await store.getToFile(bucket, key, copy);
      expect(await sha256File(copy)).toBe(sha);
    });

    it('getStream streams the whole object', async () => {
      const body = randomBytes(300_000);
      await store.put(bucket, 'stream/blob.bin', body);
      const hash = createHash('sha256');
      await pipeline(await store.getStream(bucket, 'stream/blob.bin'), hash);
      expect(hash.digest('hex')).toBe(createHash('sha256').update(body).digest('hex'));
    });

    it('delete removes the object, and deleting a missing key succeeds', async () => {
      await store.put(bucket, 'delete/me.txt', 'bye');
      await store.delete(bucket, 'delete/me.txt');
      expect(await store.head(bucket, 'delete/me.txt')).toBeUndefined();
      expect(await collect(store.list(bucket, 'delete/'))).toEqual([]);
      await expect(store.delete(bucket, 'delete/me.txt')).resolves.toBeUndefined();
      await expect(store.delete(bucket, 'delete/never/was.txt')).resolves.toBeUndefined();
    });

    it('keys with spaces and unicode round-trip through put, head, list and get', async () => {
      const keys = ['names/a b/c d.txt', 'names/naïve.json', 'names/z+plus&amp=eq.txt', 'names/日本語/データ 1.txt', 'names/✓ done.txt'];
      await Promise.all(keys.map((key) => store.put(bucket, key, `body of ${key}`)));
      expect(await collect(store.list(bucket, 'names/'))).toEqual([...keys].sort(byteOrder));
      for (const key of keys) {
        expect((await store.get(bucket, key)).toString()).toBe(`body of ${key}`);
        expect((await store.head(bucket, key))?.etag).toBe(md5(`body of ${key}`));
      }
    });
  });
}
