import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ListObjectsV2Command, type ListObjectsV2CommandInput, type ListObjectsV2CommandOutput, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { FileStore } from '../backends/storage/fs.ts';
import { S3Store } from '../backends/storage/s3.ts';
import { type S3rverHandle, s3Env, startS3rver } from '../fixtures/s3rver.ts';
import { byteOrder, collect, objectStoreContract } from './support/object-store-contract.ts';

const run = promisify(execFile);
let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'caas-storage-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

const hasAwsCli = await run('which', ['aws']).then(
  () => true,
  () => false,
);

objectStoreContract('FileStore', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'caas-filestore-'));
  return { store: new FileStore(`file://${root}`, { home: root }), close: () => rm(root, { recursive: true, force: true }) };
});

describe('what each store says it can do, and what it tells other programs', () => {
  it('a folder makes buckets on demand and claims atomically; it needs nothing in the environment', () => {
    const store = new FileStore('file:///srv/buckets', { home: '/nowhere' });
    expect([...store.capabilities].sort()).toEqual(['atomic-put-if-absent', 'buckets-on-demand']);
    expect(store.environment()).toEqual({});
  });

  it("AWS's S3 claims atomically (If-None-Match) but makes no bucket unasked; a compatible server is not trusted to claim", () => {
    const aws = new S3Store('s3://', { home: '/nowhere' });
    const other = new S3Store('s3://', { home: '/nowhere', endpoint: 'http://127.0.0.1:9000' });
    try {
      expect([...aws.capabilities]).toEqual(['atomic-put-if-absent']);
      expect([...other.capabilities]).toEqual([]);
      expect(other.url).toBe('s3://?endpoint=http://127.0.0.1:9000');
      // Credentials pass from the environment given; the endpoint is the store's own.
      expect(other.environment({ AWS_ACCESS_KEY_ID: 'k', CAAS_DB: 'mongodb://secret', HOME: '/h' })).toEqual({
        AWS_ACCESS_KEY_ID: 'k',
        AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:9000',
      });
      expect(aws.environment({})).toEqual({});
    } finally {
      aws.close();
      other.close();
    }
  });
});

objectStoreContract('S3Store on s3rver', async () => {
  const server = await startS3rver();
  const store = new S3Store('s3://', { home: scratch, endpoint: server.endpoint });
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
    paged = new S3Store('s3://', { home: scratch, endpoint: server.endpoint, listPageSize: PAGE_SIZE });
    whole = new S3Store('s3://', { home: scratch, endpoint: server.endpoint });
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

describe('FileStore under a long-running server', () => {
  it.skipIf(process.platform !== 'linux')(
    'leaves no descriptor open after deletes and heads of keys whose folders do not exist (skipped off Linux: it counts /proc/self/fd)',
    async () => {
      const root = await mkdtemp(path.join(os.tmpdir(), 'caas-filestore-'));
      const store = new FileStore(`file://${root}`, { home: root });
      try {
        await store.put('b', 'there.txt', 'x');
        const openBefore = readdirSync('/proc/self/fd').length;
        for (let i = 0; i < 50; i++) {
          await store.delete('b', `missing-${i}/deeper/x.txt`);
          expect(await store.head('b', `missing-${i}/deeper/x.txt`)).toBeUndefined();
        }
        expect(readdirSync('/proc/self/fd').length).toBeLessThan(openBefore + 5);
      } finally {
        await rm(root, { recursive: true, force: true });
      }
    },
  );

  it('makes its staging folder again when a clean-up removed it, for small and large files alike', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'caas-filestore-'));
    const store = new FileStore(`file://${root}`, { home: root });
    try {
      await store.put('b', 'first.txt', 'staged once');
      for (const [name, bytes] of [
        ['small.bin', 1000],
        ['large.bin', 3 * 1024 * 1024],
      ] as const) {
        await rm(path.join(root, '.caas-tmp'), { recursive: true, force: true });
        const local = path.join(root, name);
        await writeFile(local, Buffer.alloc(bytes, 7));
        expect(await store.putFile('b', `again/${name}`, local)).toMatchObject({ size: bytes });
        expect((await store.get('b', `again/${name}`)).equals(await readFile(local))).toBe(true);
      }
      await rm(path.join(root, '.caas-tmp'), { recursive: true, force: true });
      await store.put('b', 'again/text.txt', 'staged again');
      expect((await store.get('b', 'again/text.txt')).toString()).toBe('staged again');
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
    store = new S3Store('s3://', { home: scratch, endpoint: server.endpoint });
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
