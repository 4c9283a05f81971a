import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FolderKeys, folderKeys } from '../wrapper/submission.ts';
import { SubmissionWatcher } from '../wrapper/watch.ts';
import { AnalysisRepo, removeDir, scratchDir } from './support/workspace.ts';

const BUCKET = 'mock-wait';

describe('certificate notes of one folder', () => {
  let base: string;
  let watcher: SubmissionWatcher;

  beforeAll(async () => {
    base = scratchDir('submission-notes');
    const repo = new AnalysisRepo(base);
    watcher = await SubmissionWatcher.open({
      bucket: BUCKET,
      home: path.join(base, 'home'),
      storeUrl: 'file:',
      dbUrl: 'sqlite:',
      compute: 'local',
      concurrency: 1,
      leaseMs: 20_000,
      allowDirty: false,
      roots: [repo.dir],
      log: () => {},
    });
  });
  afterAll(async () => {
    await watcher?.close();
    removeDir(base);
  });

  it('keeps every line when notes are written concurrently (the workers of a dataset list do)', async () => {
    // note() is private: the workers of runDatasets are its concurrent callers.
    const note = (watcher as unknown as { note(folder: FolderKeys, line: string): Promise<void> }).note.bind(watcher);
    const folder = folderKeys(BUCKET, 'demo', 'notes');
    await Promise.all(Array.from({ length: 12 }, (_, i) => note(folder, `line ${i}`)));
    const certificate = (await watcher.store.get(BUCKET, folder.certificate)).toString('utf8');
    const lines = certificate.split('\n').filter(Boolean);
    expect(lines.map((line) => line.replace(/^\S+ caas watcher: /, ''))).toEqual(Array.from({ length: 12 }, (_, i) => `line ${i}`));
  });
});
