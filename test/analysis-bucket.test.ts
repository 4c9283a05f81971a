import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ObjectStore, openStore } from '../backends/storage/index.ts';
import { analysisOwningBucket, provideAnalysisBucket } from '../wrapper/analysis-bucket.ts';
import { AnalysisRepo, removeDir, scratchDir } from './support/workspace.ts';

describe('the analysis a bucket belongs to', () => {
  let base: string;
  let repo: AnalysisRepo;

  beforeAll(() => {
    base = scratchDir('analysis-bucket');
    repo = new AnalysisRepo(base);
    repo.addScriptAnalysis('spike-count', 'echo counted\n', { bucket: 'lab-spikes' });
    // An analysis that cannot load names no bucket anyone can read: the lookup passes over it.
    mkdirSync(path.join(repo.dir, 'broken'));
    writeFileSync(path.join(repo.dir, 'broken', 'index.ts'), 'throw new Error("broken on purpose");\n');
  });
  afterAll(() => removeDir(base));

  it('is the one whose blueprint names the bucket, whatever the folder is called', async () => {
    const found = await analysisOwningBucket('lab-spikes', [repo.dir]);
    expect(found).toMatchObject({ name: 'spike-count', dir: path.join(repo.dir, 'spike-count') });
    expect(await analysisOwningBucket('mock-wait', [repo.dir])).toMatchObject({ name: 'mock-wait' });
  });

  it('for a bucket no analysis names, is a refusal listing the buckets they do name, by analysis name', async () => {
    expect(await analysisOwningBucket('typo-bucket', [repo.dir])).toBe(
      'no analysis has bucket "typo-bucket" in its blueprint: expected one of mock-wait, lab-spikes',
    );
    expect(await analysisOwningBucket('typo-bucket', [path.join(base, 'no-analyses-here')])).toBe(
      'no analysis has bucket "typo-bucket" in its blueprint: expected one of (none found)',
    );
  });
});

describe('an analysis bucket that is missing', () => {
  let base: string;
  let store: ObjectStore;

  beforeAll(async () => {
    base = scratchDir('analysis-bucket-store');
    store = await openStore('file:', { home: path.join(base, 'home') });
  });
  afterAll(async () => {
    await store?.close();
    removeDir(base);
  });

  it('is made when it is a folder, and is there the next time', async () => {
    expect(await store.bucketExists('fresh')).toBe(false);
    expect(await provideAnalysisBucket(store, 'fresh')).toBeUndefined();
    expect(await store.bucketExists('fresh')).toBe(true);
    expect(await provideAnalysisBucket(store, 'fresh')).toBeUndefined();
  });
});
