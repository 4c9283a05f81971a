import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { type FileHandle, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileStore } from '../backends/storage/fs.ts';
import { KeyRefused, type ObjectInfo } from '../backends/storage/index.ts';

/**
 * A group member who can write demo/ swaps a folder of it for a link into another group's folder,
 * at the worst moment: right before, or right after, the store opens a path under it. The swap runs
 * inside the store's own open (its openPath seam), so the moment is exact, not a race to win.
 */
class SwappingFileStore extends FileStore {
  readonly hashed: string[] = [];
  private armed: { name: string; when: 'before' | 'after'; swap: () => void } | undefined;

  /** Swaps once, the next time the store opens an existing path named `name` (the file or folder, not the whole path). */
  arm(name: string, when: 'before' | 'after', swap: () => void): void {
    this.armed = { name, when, swap };
  }

  get fired(): boolean {
    return this.armed === undefined;
  }

  protected override async openPath(file: string, flags: number): Promise<FileHandle> {
    // Only a path that is there can be swapped (the store may try to open a folder before it makes it).
    const armed = this.armed?.name === path.basename(file) && existsSync(file) ? this.armed : undefined;
    if (armed?.when === 'before') {
      this.armed = undefined;
      armed.swap();
    }
    const handle = await super.openPath(file, flags);
    if (armed?.when === 'after') {
      this.armed = undefined;
      armed.swap();
    }
    return handle;
  }

  protected override async hashFile(file: string, handle: FileHandle): Promise<string> {
    this.hashed.push(file);
    return super.hashFile(file, handle);
  }
}

const md5 = (body: string) => createHash('md5').update(body).digest('hex');
const SECRET = 'secret of group caas';
/** What a read refused for a link out of demo/ says, as test/storage.links.test.ts has it. */
const refusal = (key: string) => `${key} in bucket b is reached through a symbolic link that leads out of demo/: refused`;
/** Linux: the store checks what it opened through /proc/self/fd. Elsewhere it checks just before, which a swap at the open defeats. */
const procFd = process.platform === 'linux' && existsSync('/proc/self/fd');

describe.skipIf(!procFd)('FileStore: a folder swapped for a link at the moment the store opens a path under it', () => {
  let root: string;
  let bucket: string;
  let store: SwappingFileStore;
  const warnings: string[] = [];
  const at = (...parts: string[]) => path.join(bucket, ...parts);
  /** demo/{folder} becomes a link to ../caas/{folder}; the real folder is kept as demo/{folder}.orig. */
  const swapToCaas = (folder: string) => () => {
    renameSync(at('demo', folder), at('demo', `${folder}.orig`));
    symlinkSync(`../caas/${folder}`, at('demo', folder));
  };

  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'caas-swap-'));
    bucket = path.join(root, 'b');
    for (const dir of ['demo/inputs', 'demo/results', 'caas/inputs', 'caas/results', 'caas/new']) mkdirSync(at(dir), { recursive: true });
    writeFileSync(at('demo/inputs/x.json'), 'own');
    writeFileSync(at('caas/inputs/x.json'), SECRET);
    writeFileSync(at('caas/results/out.json'), 'result of group caas');
    warnings.length = 0;
    store = new SwappingFileStore(`file://${root}`, { home: root, warn: (message) => warnings.push(message) });
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  describe('reads check what they opened, and read only from it', () => {
    const reads: [string, (store: FileStore) => Promise<unknown>][] = [
      ['get', (s) => s.get('b', 'demo/inputs/x.json')],
      [
        'getStream',
        async (s) => {
          const chunks: Buffer[] = [];
          for await (const chunk of await s.getStream('b', 'demo/inputs/x.json')) chunks.push(chunk as Buffer);
          return Buffer.concat(chunks).toString();
        },
      ],
      ['getToFile', (s) => s.getToFile('b', 'demo/inputs/x.json', path.join(root, 'local', 'x.json'))],
      ['head', (s) => s.head('b', 'demo/inputs/x.json')],
    ];

    it.each(reads)('%s: swapped right before the open, what was opened is refused', async (_, read) => {
      // Before the swap the key is fine, and serves the group's own file.
      expect((await store.get('b', 'demo/inputs/x.json')).toString()).toBe('own');
      store.arm('x.json', 'before', swapToCaas('inputs'));
      const refused = await read(store).then(
        (value) => value,
        (error: unknown) => error,
      );
      expect(store.fired).toBe(true);
      expect(refused).toBeInstanceOf(KeyRefused);
      expect((refused as Error).message).toBe(refusal('demo/inputs/x.json'));
      expect(store.hashed.filter((file) => file.includes(`${path.sep}caas${path.sep}`))).toEqual([]);
      expect(existsSync(path.join(root, 'local', 'x.json'))).toBe(false);
    });

    it('a read swapped right after its open still reads the file it opened and checked', async () => {
      store.arm('x.json', 'after', swapToCaas('inputs'));
      expect((await store.get('b', 'demo/inputs/x.json')).toString()).toBe('own');
      expect(store.fired).toBe(true);
      // The path now leads to group caas: the next read is refused.
      await expect(store.get('b', 'demo/inputs/x.json')).rejects.toThrow(refusal('demo/inputs/x.json'));
    });

    it('a file replaced by a link after a first good read is checked again: nothing about a key is remembered', async () => {
      expect((await store.get('b', 'demo/inputs/x.json')).toString()).toBe('own');
      expect(await store.head('b', 'demo/inputs/x.json')).toMatchObject({ size: 3, etag: md5('own') });
      unlinkSync(at('demo/inputs/x.json'));
      symlinkSync('../../caas/inputs/x.json', at('demo/inputs/x.json'));
      await expect(store.get('b', 'demo/inputs/x.json')).rejects.toBeInstanceOf(KeyRefused);
      await expect(store.getStream('b', 'demo/inputs/x.json')).rejects.toBeInstanceOf(KeyRefused);
      await expect(store.head('b', 'demo/inputs/x.json')).rejects.toBeInstanceOf(KeyRefused);
    });

    it('a listing hashes only what it opened inside the group: a file reached through a folder swapped since is skipped', async () => {
      store.arm('x.json', 'before', swapToCaas('inputs'));
      const listed: ObjectInfo[] = [];
      for await (const info of store.list('b', 'demo/')) listed.push(info);
      expect(store.fired).toBe(true);
      expect(listed.map((info) => info.etag)).not.toContain(md5(SECRET));
      expect(listed.map((info) => info.key)).not.toContain('demo/inputs/x.json');
      expect(store.hashed.filter((file) => file.includes(`${path.sep}caas${path.sep}`))).toEqual([]);
      expect(warnings).toEqual(['b/demo/inputs/x.json is a symbolic link that leads out of demo/: not listed']);
    });

    it('a FIFO is opened without waiting for a writer, and is no object', async () => {
      execFileSync('mkfifo', [at('demo/inputs/fifo')]);
      expect(await store.head('b', 'demo/inputs/fifo')).toBeUndefined();
      await expect(store.get('b', 'demo/inputs/fifo')).rejects.toMatchObject({ code: 'NoSuchKey' });
    });
  });

  describe('writes land in the folder that was checked, or nowhere', () => {
    it('put: a folder swapped right after it was opened and checked does not redirect the object', async () => {
      store.arm('results', 'after', swapToCaas('results'));
      await store.put('b', 'demo/results/out.json', 'result of group demo');
      expect(store.fired).toBe(true);
      expect(readFileSync(at('caas/results/out.json'), 'utf8')).toBe('result of group caas');
      expect(readFileSync(at('demo/results.orig/out.json'), 'utf8')).toBe('result of group demo');
    });

    it('putIfAbsent: the same, by link', async () => {
      store.arm('results', 'after', swapToCaas('results'));
      expect(await store.putIfAbsent('b', 'demo/results/out.json', 'result of group demo')).toBe(true);
      expect(readFileSync(at('caas/results/out.json'), 'utf8')).toBe('result of group caas');
      expect(readFileSync(at('demo/results.orig/out.json'), 'utf8')).toBe('result of group demo');
    });

    it('put: a folder swapped after the first check but before it is opened is refused, and nothing is written there', async () => {
      store.arm('results', 'before', swapToCaas('results'));
      await expect(store.put('b', 'demo/results/out.json', 'x')).rejects.toThrow(refusal('demo/results/out.json'));
      expect(readFileSync(at('caas/results/out.json'), 'utf8')).toBe('result of group caas');
      expect(await readdir(at('caas/results'))).toEqual(['out.json']);
    });

    it('put: a folder made by the store and swapped before it is opened: no folder is made on the other side', async () => {
      store.arm('new', 'before', swapToCaas('new'));
      await expect(store.put('b', 'demo/new/sub/out.json', 'x')).rejects.toBeInstanceOf(KeyRefused);
      expect(await readdir(at('caas/new'))).toEqual([]);
      expect(lstatSync(at('demo/new')).isSymbolicLink()).toBe(true);
    });

    it('delete: removes the object from the folder that was checked, never the one swapped in', async () => {
      writeFileSync(at('demo/results/out.json'), 'result of group demo');
      store.arm('results', 'after', swapToCaas('results'));
      await store.delete('b', 'demo/results/out.json');
      expect(readFileSync(at('caas/results/out.json'), 'utf8')).toBe('result of group caas');
      expect(existsSync(at('demo/results.orig/out.json'))).toBe(false);

      rmSync(at('demo/results'));
      mkdirSync(at('demo/results'));
      store.arm('results', 'before', swapToCaas('results'));
      await expect(store.delete('b', 'demo/results/out.json')).rejects.toBeInstanceOf(KeyRefused);
      expect(readFileSync(at('caas/results/out.json'), 'utf8')).toBe('result of group caas');
    });
  });
});
