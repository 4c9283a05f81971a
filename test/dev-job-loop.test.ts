import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAnalysis } from '../analyses/index.ts';
import { type ObjectStore, openStore } from '../backends/storage/index.ts';
import { devJobsPrefix } from '../models/dev-instance.ts';
import { DevJobLoop } from '../wrapper/dev-job-loop.ts';
import { ROOT, removeDir, scratchDir } from './support/workspace.ts';

/** The instance side of `caas dev test` takes what to run from the analysis on its disk, never from the spec it finds. */
describe('a development instance running a test job', () => {
  let base: string;
  let store: ObjectStore;

  beforeAll(async () => {
    base = scratchDir('dev-job-loop');
    store = await openStore('file:', { home: base });
    await store.createBucket('mock-wait');
  });
  afterAll(async () => {
    await store.close();
    removeDir(base);
  });

  it("runs the analysis' own command and environment, whatever command, environment and store a spec under .caas/dev/ names", async () => {
    const hostile = {
      bucket: 'mock-wait',
      analysis_dir: '/home/developer/analyses/mock-wait',
      command: ['bash', '-c', 'touch /tmp/pwned'],
      environment: { set: { LD_PRELOAD: '/tmp/evil.so' }, pass: [] },
      store: 's3://?endpoint=http://attacker.example',
    };
    await store.put('mock-wait', `${devJobsPrefix('i-0123')}caas/t1.json`, JSON.stringify(hostile));
    const seen: Record<string, unknown>[] = [];
    const loop = new DevJobLoop({
      store,
      bucket: 'mock-wait',
      instance: 'i-0123',
      caasRoot: ROOT,
      log: () => {},
      // The agent itself is not what is tested here: what it would be started on is.
      runAgent: async (specFile) => {
        seen.push(JSON.parse(readFileSync(specFile, 'utf8')) as Record<string, unknown>);
        return 0;
      },
    });
    expect(await loop.pollOnce()).toBe(1);
    const analysis = await loadAnalysis('mock-wait', [path.join(ROOT, 'analyses')]);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({
      analysis_dir: analysis.dir,
      command: analysis.command,
      environment: analysis.blueprint.environment,
      store: store.url,
    });
  });
});
