import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { chmod, type FileHandle, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ETAG_SETTLE_MS, FileStore } from '../backends/storage/fs.ts';
import { KeyRefused, ObjectLocator, type ObjectStore } from '../backends/storage/index.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const md5 = (body: string | Uint8Array) => createHash('md5').update(body).digest('hex');

async function keys(store: ObjectStore, bucket: string, prefix: string): Promise<string[]> {
  const found: string[] = [];
  for await (const info of store.list(bucket, prefix)) found.push(info.key);
  return found;
}

/** The real file store, counting the files it reads whole to hash them. */
class CountingFileStore extends FileStore {
  readonly hashed: string[] = [];

  protected override async hashFile(file: string, handle: FileHandle): Promise<string> {
    this.hashed.push(file);
    return super.hashFile(file, handle);
  }
}

/** Lists a bucket of a file store as user nobody (uid 65534), in a process of its own: keys and warnings. */
function listAsNobody(root: string, bucket: string, prefix: string): { keys: string[]; warnings: string[] } {
  const fsStore = pathToFileURL(path.join(REPO, 'backends/storage/fs.ts')).href;
  const script = `
    const { FileStore } = await import(${JSON.stringify(fsStore)});
    const warnings = [];
    const store = new FileStore(${JSON.stringify(`file://${root}`)}, { home: ${JSON.stringify(root)}, warn: (m) => warnings.push(m) });
    const keys = [];
    for await (const info of store.list(${JSON.stringify(bucket)}, ${JSON.stringify(prefix)})) keys.push(info.key);
    process.stdout.write(JSON.stringify({ keys, warnings }));`;
  const mode = statSync(root).mode & 0o777;
  chmodSync(root, 0o755);
  try {
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: REPO,
      uid: 65534,
      gid: 65534,
      encoding: 'utf8',
      env: { ...process.env, HOME: os.tmpdir() },
    });
    if (run.status !== 0) throw new Error(`listing as nobody failed: ${run.stderr}`);
    return JSON.parse(run.stdout) as { keys: string[]; warnings: string[] };
  } finally {
    chmodSync(root, mode);
  }
}

describe('FileStore: symbolic links and special files inside a bucket', () => {
  let root: string;
  let bucket: string;
  let store: FileStore;
  let socket: Server;
  const warnings: string[] = [];
  const at = (...parts: string[]) => path.join(bucket, ...parts);

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'caas-links-'));
    bucket = path.join(root, 'b');
    for (const dir of ['demo/inputs', 'demo/configs', 'caas/inputs']) mkdirSync(at(dir), { recursive: true });
    mkdirSync(path.join(root, 'outside'), { recursive: true });
    writeFileSync(at('demo/inputs/own.json'), 'own');
    writeFileSync(at('caas/inputs/secret.json'), 'secret of group caas');
    writeFileSync(path.join(root, 'outside', 'file.txt'), 'outside every bucket');
    symlinkSync('../../caas/inputs/secret.json', at('demo/inputs/link.json'));
    symlinkSync('own.json', at('demo/inputs/alias.json'));
    symlinkSync('/etc', at('demo/inputs/etcdir'));
    symlinkSync('../configs', at('demo/inputs/configs-dir'));
    symlinkSync('loop', at('demo/inputs/loop'));
    symlinkSync('nowhere.json', at('demo/inputs/gone.json'));
    symlinkSync('../outside', at('evil'));
    symlinkSync('../outside/file.txt', at('top.txt'));
    execFileSync('mkfifo', [at('demo/inputs/fifo')]);
    socket = createServer();
    await new Promise<void>((resolve) => socket.listen(at('demo/inputs/sock'), resolve));
    store = new FileStore(`file://${root}`, { home: root, warn: (message) => warnings.push(message) });
  });
  afterAll(async () => {
    await new Promise((resolve) => socket.close(resolve));
    await rm(root, { recursive: true, force: true });
  });

  it('lists regular files and links to files inside their group; skips everything else with one warning each', async () => {
    expect(await keys(store, 'b', 'demo/')).toEqual(['demo/inputs/alias.json', 'demo/inputs/own.json']);
    const listed = [];
    for await (const info of store.list('b', 'demo/inputs/alias')) listed.push(info);
    expect(listed).toEqual([expect.objectContaining({ key: 'demo/inputs/alias.json', size: 3, etag: md5('own') })]);
    // A whole-bucket listing (the watcher's) goes on past all of it, into the other groups.
    expect(await keys(store, 'b', '')).toEqual(['caas/inputs/secret.json', 'demo/inputs/alias.json', 'demo/inputs/own.json']);
    const expected: [string, RegExp][] = [
      ['demo/inputs/link.json', /is a symbolic link that leads out of demo\/: not listed/],
      ['demo/inputs/etcdir', /is a symbolic link that leads out of demo\/: not listed/],
      ['demo/inputs/configs-dir', /is a symbolic link to a folder \(links to folders are never followed\): not listed/],
      ['demo/inputs/loop', /is a symbolic link loop: not listed/],
      ['demo/inputs/gone.json', /is a dangling symbolic link: not listed/],
      ['demo/inputs/fifo', /is not a regular file but a FIFO: not listed/],
      ['demo/inputs/sock', /is not a regular file but a socket: not listed/],
      ['evil', /is a symbolic link that leads out of bucket b: not listed/],
      ['top.txt', /is a symbolic link that leads out of bucket b: not listed/],
    ];
    for (const [key, message] of expected) {
      const about = warnings.filter((w) => w.startsWith(`b/${key} `));
      expect(about, key).toHaveLength(1);
      expect(about[0]).toMatch(message);
    }
    expect(warnings).toHaveLength(expected.length);
  });

  it('reads a link inside the group, and refuses one that leads to another group or out of the bucket', async () => {
    expect((await store.get('b', 'demo/inputs/alias.json')).toString()).toBe('own');
    expect(await store.head('b', 'demo/inputs/alias.json')).toMatchObject({ size: 3, etag: md5('own') });
    for (const key of ['demo/inputs/link.json', 'demo/inputs/etcdir/passwd', 'top.txt', 'evil/file.txt']) {
      await expect(store.get('b', key), key).rejects.toBeInstanceOf(KeyRefused);
      await expect(store.getStream('b', key), key).rejects.toBeInstanceOf(KeyRefused);
      await expect(store.head('b', key), key).rejects.toBeInstanceOf(KeyRefused);
    }
    await expect(store.get('b', 'demo/inputs/link.json')).rejects.toThrow(
      'demo/inputs/link.json in bucket b is reached through a symbolic link that leads out of demo/: refused',
    );
    // Nothing there to read: no object, as on S3.
    expect(await store.head('b', 'demo/inputs/gone.json')).toBeUndefined();
    expect(await store.head('b', 'demo/inputs/loop')).toBeUndefined();
    await expect(store.get('b', 'demo/inputs/gone.json')).rejects.toMatchObject({ code: 'NoSuchKey' });
  });

  it('never lists through a linked folder, whatever the prefix', async () => {
    expect(await keys(store, 'b', 'demo/inputs/etcdir/')).toEqual([]);
    expect(await keys(store, 'b', 'evil/')).toEqual([]);
    expect(warnings.filter((w) => w.startsWith('b/demo/inputs/etcdir/ '))).toEqual([
      'b/demo/inputs/etcdir/ is reached through a symbolic link: not listed (links to folders are never followed)',
    ]);
  });

  it('refuses to write or delete through a link that leads out of the group, and writes nothing there', async () => {
    await expect(store.put('b', 'evil/results/x.txt', 'x')).rejects.toBeInstanceOf(KeyRefused);
    await expect(store.putIfAbsent('b', 'demo/inputs/etcdir/caas-was-here', 'x')).rejects.toBeInstanceOf(KeyRefused);
    await expect(store.delete('b', 'evil/file.txt')).rejects.toBeInstanceOf(KeyRefused);
    expect(existsSync(path.join(root, 'outside', 'results'))).toBe(false);
    expect(existsSync('/etc/caas-was-here')).toBe(false);
    expect(existsSync(path.join(root, 'outside', 'file.txt'))).toBe(true);
    // Inside the group a linked folder may be written through: it stays the group's.
    await store.put('b', 'demo/inputs/configs-dir/through.json', '{}');
    expect((await store.get('b', 'demo/configs/through.json')).toString()).toBe('{}');
  });

  it('an unreadable folder is skipped with a warning', async () => {
    mkdirSync(at('demo/locked'));
    writeFileSync(at('demo/locked/x.json'), 'x');
    await chmod(at('demo/locked'), 0o000);
    try {
      // Root reads any folder: as root, the listing runs in a process of user nobody instead.
      const seen = process.getuid?.() === 0 ? listAsNobody(root, 'b', 'demo/') : { keys: await keys(store, 'b', 'demo/'), warnings };
      expect(seen.keys).toContain('demo/inputs/own.json');
      expect(seen.keys.filter((key) => key.startsWith('demo/locked/'))).toEqual([]);
      expect(seen.warnings.filter((w) => w.startsWith('b/demo/locked/'))).toEqual([
        expect.stringMatching(/^b\/demo\/locked\/ cannot be read \(EACCES\): its objects are not listed$/),
      ]);
    } finally {
      await chmod(at('demo/locked'), 0o755);
    }
  });

  it("file:///abs/path URLs name a user's own files: their links are followed wherever they lead", async () => {
    const locator = new ObjectLocator(store, { home: root, warn: (message) => warnings.push(message) });
    try {
      const found = await locator.locate(`file://${at('demo/inputs/link.json')}`);
      expect((await found.store.get(found.bucket, found.key)).toString()).toBe('secret of group caas');
    } finally {
      await locator.close();
    }
  });
});

describe('FileStore: a listing reads only what changed since the last one', () => {
  let root: string;

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'caas-etags-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('hashes an unchanged file once, however often it is listed; a change is hashed again', async () => {
    const store = new CountingFileStore(`file://${root}`, { home: root });
    const big = path.join(root, 'b', 'demo', 'inputs', 'big.bin');
    mkdirSync(path.dirname(big), { recursive: true });
    const body = randomBytes(8 * 1024 * 1024);
    writeFileSync(big, body);
    // A file changed within the clock tick of its hash is hashed again (its timestamps could miss a
    // second change): wait until it is past that, as a data file under a watcher normally is.
    while (Date.now() - statSync(big).ctimeMs <= ETAG_SETTLE_MS + 100) await sleep(100);

    const etags = async () => {
      const found: string[] = [];
      for await (const info of store.list('b', '')) found.push(info.etag);
      return found;
    };
    expect(await etags()).toEqual([md5(body)]);
    expect(await etags()).toEqual([md5(body)]);
    expect((await store.head('b', 'demo/inputs/big.bin'))?.etag).toBe(md5(body));
    expect(store.hashed.filter((file) => file.endsWith('big.bin'))).toHaveLength(1);

    // Rewritten in place with the same size: its ctime moves, so it is read again.
    body[0] = (body[0]! + 1) % 256;
    writeFileSync(big, body);
    expect(await etags()).toEqual([md5(body)]);
    expect(store.hashed.filter((file) => file.endsWith('big.bin'))).toHaveLength(2);
  });
});
