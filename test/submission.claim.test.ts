import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getText, type ObjectStore, openStore } from '../backends/storage/index.ts';
import { owner } from '../fixtures/records.ts';
import { folderKeys, parseMarker, readSubmit, type SubmissionMarker } from '../wrapper/submission.ts';
import { claimJobFolder, keepMarker, newMarker, settledAnswer } from '../wrapper/submission-claim.ts';
import { removeDir, scratchDir } from './support/workspace.ts';

const BUCKET = 'mock-wait';
const LEASE = 60_000;

describe('the claim on a submission job folder', () => {
  let base: string;
  let store: ObjectStore;
  let n = 0;
  /** A fresh folder and the submit file that names it, so no case sees another's objects. */
  const submission = (body = '{"timestamp":"x"}') => {
    const timestamp = `t${++n}`;
    const key = `demo/submissions/${timestamp}_submit.json`;
    return { folder: folderKeys(BUCKET, 'demo', timestamp), read: readSubmit(key, 'demo', Buffer.from(body)) };
  };
  const markerIn = async (folder: { marker: string }) => parseMarker(await getText(store, BUCKET, folder.marker));

  beforeAll(async () => {
    base = scratchDir('submission-claim');
    store = await openStore('file:', { home: path.join(base, 'home') });
    await store.createBucket(BUCKET);
  });
  afterAll(async () => {
    await store?.close();
    removeDir(base);
  });

  it('a marker names the submit file, its content and the owner, with the lease running from now', () => {
    const { read } = submission();
    const marker = newMarker(read, owner('run-a'), LEASE, Date.parse('2024-05-01T00:00:00.000Z'));
    expect(marker).toEqual({
      submit_key: read.key,
      submit_sha256: read.sha256,
      owner: owner('run-a'),
      claimed: '2024-05-01T00:00:00.000Z',
      lease_expires: '2024-05-01T00:01:00.000Z',
    });
  });

  it('the first claim of a fresh folder wins and writes the marker; a second owner finds it held', async () => {
    const { folder, read } = submission();
    const mine = newMarker(read, owner('run-a'), LEASE);
    expect(await claimJobFolder(store, BUCKET, folder, mine, LEASE)).toEqual({ kind: 'won' });
    expect(await markerIn(folder)).toEqual(mine);
    const theirs = newMarker(read, owner('run-b'), LEASE);
    const claim = await claimJobFolder(store, BUCKET, folder, theirs, LEASE);
    expect(claim).toEqual({ kind: 'elsewhere', until: Date.parse(mine.lease_expires) });
    expect(await markerIn(folder)).toEqual(mine);
  });

  it('the same run claims again (a restart of its own work); a lapsed lease of another run is taken over', async () => {
    const { folder, read } = submission();
    const lapsed: SubmissionMarker = {
      ...newMarker(read, owner('run-a'), LEASE),
      lease_expires: new Date(Date.now() - 1000).toISOString(),
    };
    await store.put(BUCKET, folder.marker, JSON.stringify(lapsed));
    expect(await claimJobFolder(store, BUCKET, folder, newMarker(read, owner('run-a'), LEASE), LEASE)).toEqual({ kind: 'won' });
    const taker = newMarker(read, owner('run-b'), LEASE);
    await store.put(BUCKET, folder.marker, JSON.stringify(lapsed));
    expect(await claimJobFolder(store, BUCKET, folder, taker, LEASE)).toEqual({ kind: 'won' });
    expect((await markerIn(folder))?.owner.run).toBe('run-b');
  });

  it('a folder with end.txt is done, whoever holds the lease', async () => {
    const { folder, read } = submission();
    await store.put(BUCKET, folder.marker, JSON.stringify(newMarker(read, owner('run-a'), LEASE)));
    await store.put(BUCKET, folder.end, 'SUCCESS\n');
    expect(await claimJobFolder(store, BUCKET, folder, newMarker(read, owner('run-b'), LEASE), LEASE)).toEqual({ kind: 'done' });
  });

  it('a folder of another submit file, of an earlier version of this one, or of a job without a marker is never taken', async () => {
    const { folder, read } = submission('{"v":1}');
    await store.put(
      BUCKET,
      folder.marker,
      JSON.stringify({ ...newMarker(read, owner('run-a'), LEASE), submit_key: 'demo/submissions/other_submit.json' }),
    );
    expect(await claimJobFolder(store, BUCKET, folder, newMarker(read, owner('run-b'), LEASE), LEASE)).toEqual({
      kind: 'conflict',
      reason: `timestamp ${folder.timestamp} is already used by demo/submissions/other_submit.json: submit again with a new timestamp`,
    });

    const edited = readSubmit(read.key, 'demo', Buffer.from('{"v":2}'));
    await store.put(BUCKET, folder.marker, JSON.stringify(newMarker(read, owner('run-a'), LEASE)));
    const claim = await claimJobFolder(store, BUCKET, folder, newMarker(edited, owner('run-b'), LEASE), LEASE);
    expect(claim).toMatchObject({ kind: 'conflict', reason: expect.stringMatching(/earlier version of this submit file/) });

    const bare = submission();
    await store.put(BUCKET, `${bare.folder.prefix}logs/certificate.txt`, 'a job of its own\n');
    expect(await claimJobFolder(store, BUCKET, bare.folder, newMarker(bare.read, owner('run-a'), LEASE), LEASE)).toEqual({
      kind: 'conflict',
      reason: `timestamp ${bare.folder.timestamp} is already used by another job (${bare.folder.prefix}logs/certificate.txt exists)`,
    });
    expect(await getText(store, BUCKET, bare.folder.marker)).toBeUndefined();
  });

  it('an unreadable marker holds the folder for nobody a watcher can name', async () => {
    const { folder, read } = submission();
    await store.put(BUCKET, folder.marker, 'not json');
    const claim = await claimJobFolder(store, BUCKET, folder, newMarker(read, owner('run-a'), LEASE), LEASE);
    expect(claim).toEqual({
      kind: 'conflict',
      reason: `timestamp ${folder.timestamp} is already used by (unreadable marker): submit again with a new timestamp`,
    });
  });

  it('is settled, without a claim, once end.txt answers this very submit file, or when caas run wrote the folder', async () => {
    const { folder, read } = submission();
    expect(await settledAnswer(store, BUCKET, folder, read)).toBeUndefined();
    await store.put(BUCKET, folder.marker, JSON.stringify(newMarker(read, owner('run-a'), LEASE)));
    expect(await settledAnswer(store, BUCKET, folder, read)).toBeUndefined();
    await store.put(BUCKET, folder.end, 'SUCCESS\n');
    expect(await settledAnswer(store, BUCKET, folder, read)).toBe('already processed');
    const edited = readSubmit(read.key, 'demo', Buffer.from('{"timestamp":"x","edited":true}'));
    expect(await settledAnswer(store, BUCKET, folder, edited)).toBeUndefined();

    const run = submission();
    await store.put(BUCKET, run.folder.marker, JSON.stringify({ ...newMarker(run.read, owner('run-a'), LEASE), written_by: 'caas run' }));
    expect(await settledAnswer(store, BUCKET, run.folder, run.read)).toBe('a job of caas run, not a submission');
  });

  it('the lease is renewed while the work goes on, and no longer once end.txt is written', async () => {
    const { folder, read } = submission();
    const lease = 150;
    const marker = newMarker(read, owner('run-a'), lease);
    expect(await claimJobFolder(store, BUCKET, folder, marker, lease)).toEqual({ kind: 'won' });
    const keepalive = keepMarker(store, BUCKET, folder, marker, lease);
    try {
      await sleep(lease * 2);
      const renewed = await markerIn(folder);
      expect(Date.parse(renewed!.lease_expires)).toBeGreaterThan(Date.parse(marker.lease_expires));
      expect(renewed).toEqual({ ...marker, lease_expires: renewed!.lease_expires });
      await store.put(BUCKET, folder.end, 'SUCCESS\n');
      await sleep(lease * 2);
      const last = await getText(store, BUCKET, folder.marker);
      await sleep(lease * 2);
      expect(await getText(store, BUCKET, folder.marker)).toBe(last);
    } finally {
      keepalive.stop();
    }
  });
});
