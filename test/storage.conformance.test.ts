import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { ListObjectsV2Command, type ListObjectsV2CommandInput, type ListObjectsV2CommandOutput, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { FileStore } from '../backends/storage/fs.ts';
import type { ObjectInfo, ObjectStore } from '../backends/storage/index.ts';
import { S3Store } from '../backends/storage/s3.ts';
import { type S3rverHandle, s3Env, startS3rver } from '../fixtures/s3rver.ts';

const run = promisify(execFile);
const hasAwsCli = await run('which', ['aws']).then(
  () => true,
  () => false,
);

interface Subject {
  store: ObjectStore;
  close(): Promise<void>;
}

const BIG_FILE_BYTES = 20 * 1024 * 1024 + 12_345; // not a multiple of the 8 MiB part size

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'caas-storage-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** S3 lists in UTF-8 byte order, which differs from JS string order outside the BMP. */
function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

async function collect(listing: AsyncIterable<ObjectInfo>): Promise<string[]> {
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
function objectStoreContract(name: string, open: () => Promise<Subject>): void {
  describe(name, () => {
    const bucket = 'caas-conformance';
    let subject: Subject;
    let store: ObjectStore;

    beforeAll(async () => {
      subject = await open();
      store = subject.store;
      await store.createBucket(bucket);
    });
    afterAll(async () => {
      await subject?.close();
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

    it(`putFile then getToFile round-trips a ${Math.round(BIG_FILE_BYTES / 2 ** 20)} MiB file byte for byte`, async () => {
      const source = path.join(scratch, `${name}-big.bin`);
      const copy = path.join(scratch, `${name}-copy`, 'nested', 'big.bin');
      const sha = await writeRandomFile(source, BIG_FILE_BYTES);
      await store.putFile(bucket, 'big/inputs/recording.bin', source);
      expect((await store.head(bucket, 'big/inputs/recording.bin'))?.size).toBe(BIG_FILE_BYTES);
      await store.getToFile(bucket, 'big/inputs/recording.bin', copy);
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

objectStoreContract('FileStore', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'caas-filestore-'));
  return { store: new FileStore(`file://${root}`, { home: root }), close: () => rm(root, { recursive: true, force: true }) };
});

objectStoreContract('S3Store on s3rver', async () => {
  const server = await startS3rver();
  const store = new S3Store('s3://', { home: scratch, s3Endpoint: server.endpoint });
  return {
    store,
    close: async () => {
      await store.close();
      await server.stop();
    },
  };
});

describe('S3Store lists a prefix in pages of listPageSize keys (s3rver)', () => {
  const bucket = 'caas-paging';
  const PAGE_SIZE = 3;
  // Seven keys over three folders, written out of order, beside keys the prefix leaves out: pages of 3, 3 and 1.
  const keys = Array.from({ length: 7 }, (_, i) => `paged/${i % 3}/${String(i).padStart(2, '0')}.txt`);
  let server: S3rverHandle;
  let paged: S3Store;
  let whole: S3Store;

  beforeAll(async () => {
    server = await startS3rver();
    paged = new S3Store('s3://', { home: scratch, s3Endpoint: server.endpoint, listPageSize: PAGE_SIZE });
    whole = new S3Store('s3://', { home: scratch, s3Endpoint: server.endpoint });
    await paged.createBucket(bucket);
    await Promise.all([...keys, 'paged-not/x.txt', 'pag.txt'].reverse().map((key) => paged.put(bucket, key, key)));
  });
  afterAll(async () => {
    await paged?.close();
    await whole?.close();
    await server?.stop();
  });

  /** The keys list() yields, with the ListObjectsV2 requests it sent and the pages they returned. */
  async function listWithRequests(store: S3Store, prefix: string) {
    const send = vi.spyOn(S3Client.prototype, 'send');
    const requests: ListObjectsV2CommandInput[] = [];
    const pages: Promise<ListObjectsV2CommandOutput>[] = [];
    let listed: string[];
    try {
      listed = await collect(store.list(bucket, prefix));
      send.mock.calls.forEach(([command], i) => {
        if (!(command instanceof ListObjectsV2Command)) return;
        requests.push(command.input);
        pages.push(send.mock.results[i]!.value as Promise<ListObjectsV2CommandOutput>);
      });
    } finally {
      // This also forgets the calls: they are read above.
      send.mockRestore();
    }
    return { listed, requests, pages: await Promise.all(pages) };
  }

  it('follows the continuation tokens over three pages and yields every key once, in key order', async () => {
    const { listed, requests, pages } = await listWithRequests(paged, 'paged/');
    expect(listed).toEqual([...keys].sort(byteOrder));
    expect(requests.map((r) => r.MaxKeys)).toEqual([PAGE_SIZE, PAGE_SIZE, PAGE_SIZE]);
    expect(pages.map((p) => [p.Contents?.length, p.IsTruncated])).toEqual([
      [3, true],
      [3, true],
      [1, false],
    ]);
    // The first request has no token; each next one carries the token the page before ended with.
    expect(requests[0]!.ContinuationToken).toBeUndefined();
    const tokens = pages.slice(0, -1).map((p) => p.NextContinuationToken);
    expect(tokens.every((token) => typeof token === 'string' && token !== '')).toBe(true);
    expect(requests.slice(1).map((r) => r.ContinuationToken)).toEqual(tokens);
  });

  it("without listPageSize sends no MaxKeys, so the server's page of 1000 keys holds them all", async () => {
    const { listed, requests } = await listWithRequests(whole, 'paged/');
    expect(listed).toEqual([...keys].sort(byteOrder));
    expect(requests).toHaveLength(1);
    expect(requests[0]!.MaxKeys).toBeUndefined();
  });

  it('refuses a page size S3 would not honour', () => {
    for (const listPageSize of [0, 1001, 2.5]) {
      expect(() => new S3Store('s3://', { home: scratch, listPageSize })).toThrow(/expected a whole number from 1 to 1000/);
    }
  });
});

describe('FileStore confinement', () => {
  it('refuses keys whose ".." leaves the bucket folder', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'caas-filestore-'));
    const store = new FileStore(`file://${root}`, { home: root });
    try {
      await store.createBucket('b');
      await store.createBucket('b2');
      await expect(store.put('b', '../b2/escaped.txt', 'x')).rejects.toThrow(/leaves bucket b/);
      await expect(store.put('b', 'grp/../../escaped.txt', 'x')).rejects.toThrow(/leaves bucket b/);
      await expect(store.get('b', '../../etc/passwd')).rejects.toThrow(/leaves bucket b/);
      await expect(store.putIfAbsent('b', 'a/../../b2/x', 'x')).rejects.toThrow(/leaves bucket b/);
      expect(await store.head('b2', 'escaped.txt')).toBeUndefined();
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('what S3Store writes, any standard S3 client reads', () => {
  let server: Awaited<ReturnType<typeof startS3rver>>;
  let store: S3Store;
  const bucket = 'caas-interop';
  const key = 'grp/results/job__caas-interop_1/process_results/end dé.txt';
  const body = 'written by S3Store\n';

  beforeAll(async () => {
    server = await startS3rver();
    store = new S3Store('s3://', { home: scratch, s3Endpoint: server.endpoint });
    await store.createBucket(bucket);
    await store.put(bucket, key, body);
  });
  afterAll(async () => {
    await store?.close();
    await server?.stop();
  });

  it('a plain unsigned HTTP GET of the path-style URL returns the bytes', async () => {
    const url = `${server.endpoint}/${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
    const response = await fetch(url);
    expect(response.status).toBe(200);
    expect(await response.text()).toBe(body);
  });

  const awsTitle = 'the aws CLI reads it with nothing but the standard environment variables';
  if (!hasAwsCli) console.warn('aws CLI test skipped: the aws CLI is not installed (Debian package awscli)');
  it.skipIf(!hasAwsCli)(hasAwsCli ? awsTitle : `${awsTitle} (skipped: the aws CLI is not installed)`, async () => {
    const { stdout } = await run('aws', ['s3', 'cp', `s3://${bucket}/${key}`, '-'], {
      env: { ...process.env, ...s3Env(server.endpoint), AWS_CONFIG_FILE: '/dev/null', AWS_SHARED_CREDENTIALS_FILE: '/dev/null' },
    });
    expect(stdout).toBe(body);
  });
});
