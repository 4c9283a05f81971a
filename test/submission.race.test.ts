import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileStore } from '../backends/storage/fs.ts';
import type { ObjectInfo } from '../backends/storage/index.ts';
import { followJob } from '../wrapper/follow.ts';
import { sha256Hex } from '../wrapper/identity.ts';
import { folderKeys, rejectionNoteKey } from '../wrapper/submission.ts';
import { SubmissionWatcher } from '../wrapper/watch.ts';
import { AnalysisRepo, removeDir, scratchDir } from './support/workspace.ts';

const BUCKET = 'mock-wait';

/** The real file store, running `before` once, just before the first listing under `prefix`. */
class ListingHook extends FileStore {
  hook: { prefix: string; before: () => Promise<void> } | undefined;

  override async *list(bucket: string, prefix: string): AsyncIterable<ObjectInfo> {
    const hook = this.hook;
    if (hook?.prefix === prefix) {
      this.hook = undefined;
      await hook.before();
    }
    yield* super.list(bucket, prefix);
  }
}

/** The real file store, running `onLook` each time the follower reads the job folder's marker (once per look). */
class LookHook extends FileStore {
  looks = 0;
  watched = '';
  onLook: (look: number) => Promise<void> = async () => {};

  override async get(bucket: string, key: string): Promise<Buffer> {
    if (key === this.watched) await this.onLook(++this.looks);
    return super.get(bucket, key);
  }
}

describe('races between watchers and followers', () => {
  let base: string;
  let repo: AnalysisRepo;

  beforeAll(() => {
    base = scratchDir('submission-race');
    repo = new AnalysisRepo(base);
  });
  afterAll(() => removeDir(base));

  it('a watcher whose rival claims the folder between its marker read and its folder listing says "elsewhere", never "conflict"', async () => {
    const home = path.join(base, 'claim');
    const store = new ListingHook('file:', { home });
    await store.createBucket(BUCKET);
    await store.put(BUCKET, 'demo/inputs/d1.json', '{"name": "d1"}\n');
    await store.put(BUCKET, 'demo/configs/ok.json', '{"wait": 0}\n');
    const key = 'demo/submissions/r1_submit.json';
    const body = JSON.stringify({ dataname: 'inputs/d1.json', configname: 'configs/ok.json', timestamp: 'r1' });
    await store.put(BUCKET, key, body);
    const folder = folderKeys(BUCKET, 'demo', 'r1');
    // The rival wins the put-if-absent and starts writing its answer (a certificate line sorts
    // before the marker in a listing) right after this watcher found no marker.
    store.hook = {
      prefix: folder.prefix,
      before: async () => {
        const rival = {
          submit_key: key,
          submit_sha256: sha256Hex(body),
          owner: { host: 'rival', pid: 1, run: 'rival-run' },
          claimed: new Date().toISOString(),
          lease_expires: new Date(Date.now() + 60_000).toISOString(),
        };
        expect(await store.putIfAbsent(BUCKET, folder.marker, JSON.stringify(rival))).toBe(true);
        await store.put(BUCKET, folder.certificate, 'rival: working on it\n');
      },
    };
    const log: string[] = [];
    const watcher = await SubmissionWatcher.open({
      bucket: BUCKET,
      home,
      storeUrl: 'file:',
      dbUrl: 'sqlite:',
      compute: 'local',
      concurrency: 1,
      leaseMs: 20_000,
      allowDirty: false,
      roots: [repo.dir],
      store,
      log: (line) => log.push(line),
    });
    try {
      const [outcome] = await watcher.pollOnce();
      expect(store.hook).toBeUndefined();
      expect(outcome).toMatchObject({ key, outcome: 'elsewhere' });
    } finally {
      await watcher.close();
    }
    expect(log).toEqual([]);
    expect(await store.head(BUCKET, rejectionNoteKey(key))).toBeUndefined();
    expect((await store.get(BUCKET, folder.certificate)).toString()).toBe('rival: working on it\n');
  });

  it('a follower that reads objects while they are being written (as s3rver serves them) waits for whole ones', async () => {
    const home = path.join(base, 'follow');
    const store = new LookHook('file:', { home });
    const folder = folderKeys(BUCKET, 'demo', 'f1');
    const submit = { key: 'demo/submissions/f1_submit.json', sha256: 'a'.repeat(64) };
    const marker = JSON.stringify({
      submit_key: submit.key,
      submit_sha256: submit.sha256,
      owner: { host: 'watcher', pid: 1, run: 'watcher-run' },
      claimed: new Date().toISOString(),
      lease_expires: new Date(Date.now() + 60_000).toISOString(),
    });
    const line = `2025-01-01T12:00:00.000Z caas watcher: identical data and config: answered from record ${'b'.repeat(64)}, results at file://mock-wait/demo/results/job__mock-wait_f0/process_results/`;
    // What a reader sees of objects still being written: a cut marker, a cut line, an empty end.txt.
    await store.put(BUCKET, folder.marker, marker.slice(0, 20));
    await store.put(BUCKET, folder.certificate, line.slice(0, 70));
    await store.put(BUCKET, folder.end, '');
    store.watched = folder.marker;
    store.onLook = async (look) => {
      if (look === 2) await store.put(BUCKET, folder.end, 'SUCC');
      if (look !== 3) return;
      await store.put(BUCKET, folder.marker, marker);
      await store.put(BUCKET, folder.certificate, `${line}\n`);
      await store.put(
        BUCKET,
        folder.end,
        'SUCCESS\nanswered from record b\nresults at file://mock-wait/demo/results/job__mock-wait_f0/process_results/\n',
      );
    };
    const out: string[] = [];
    const result = await followJob({
      store,
      job: { bucket: BUCKET, group: 'demo', timestamp: 'f1' },
      out: (l) => out.push(l),
      intervalMs: 10,
      submit,
    });
    expect(store.looks).toBeGreaterThanOrEqual(3);
    expect(result.exitCode).toBe(0);
    expect(out.filter((l) => l.includes('identical data and config'))).toEqual([line]);
    expect(out.at(-1)).toMatch(/^succeeded: results at /);
  });
});
