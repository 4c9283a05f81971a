import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Launcher } from '../backends/compute/index.ts';
import { FileStore } from '../backends/storage/fs.ts';
import type { ObjectInfo } from '../backends/storage/index.ts';
import { Blueprint } from '../models/blueprint.ts';
import { jobKeys } from '../models/bucket-contract.ts';
import { lookAtLapsedAttempt } from '../wrapper/liveness.ts';

/** A folder store whose HEAD fails its first `drops` times, as a loaded S3 server drops a read. */
class DroppingStore extends FileStore {
  constructor(
    root: string,
    private drops: number,
  ) {
    super(`file://${root}`, { home: root });
  }

  override async head(bucket: string, key: string): Promise<ObjectInfo | undefined> {
    if (this.drops-- > 0) throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    return super.head(bucket, key);
  }
}

describe("a runner's first look at an attempt it took over", () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'caas-liveness-'));
  });
  afterAll(() => rm(root, { recursive: true, force: true }));

  const subject = async (drops: number) => {
    const store = new DroppingStore(root, drops);
    const keys = jobKeys('b-x', 'caas', 't1', 'data.json', 'c.json');
    await store.createBucket('b-x');
    await store.put('b-x', keys.end, '0\n');
    // A launcher that cannot be asked: liveness then rests on the store alone.
    const launcher = { name: 'none' } as Launcher;
    return { store, bucket: 'b-x', keys, identity: 'ab'.repeat(32), attempt: 1, blueprint: Blueprint.parse({ bucket: 'b-x' }), launcher };
  };

  it('asks the store again when a read is dropped, and sees what is there', async () => {
    expect(await lookAtLapsedAttempt(await subject(2))).toEqual({ state: 'ended' });
  });

  it('is an error only when the store stays silent', async () => {
    await expect(lookAtLapsedAttempt(await subject(5))).rejects.toThrow('socket hang up');
  });
});
