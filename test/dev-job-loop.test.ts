import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAnalysis } from '../analyses/index.ts';
import { type ObjectStore, openStore } from '../backends/storage/index.ts';
import { devJobsPrefix } from '../models/dev-instance.ts';
import { DevJobLoop } from '../wrapper/dev-job-loop.ts';
import { blueprintFileOf } from '../wrapper/dev-save.ts';
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

describe('caas dev save writes the image into the blueprint file the analysis reads', () => {
  let base: string;
  beforeAll(() => {
    base = scratchDir('dev-save-file');
  });
  afterAll(() => removeDir(base));

  const folder = (name: string, files: Record<string, string>) => {
    const dir = path.join(base, name);
    mkdirSync(dir, { recursive: true });
    for (const [file, text] of Object.entries(files)) writeFileSync(path.join(dir, file), text);
    return dir;
  };

  it('blueprint.json beside an index.ts; the file an analysis.json names; an inline blueprint is refused', async () => {
    const typescript = folder('ts', { 'index.ts': '', 'blueprint.json': '{}' });
    expect(await blueprintFileOf(typescript)).toBe(path.join(typescript, 'blueprint.json'));
    const named = folder('named', { 'analysis.json': JSON.stringify({ blueprint: 'deploy/stack.json' }) });
    expect(await blueprintFileOf(named)).toBe(path.join(named, 'deploy/stack.json'));
    const defaulted = folder('defaulted', { 'analysis.json': JSON.stringify({ script: 'run.sh' }) });
    expect(await blueprintFileOf(defaulted)).toBe(path.join(defaulted, 'blueprint.json'));
    const inline = folder('inline', { 'analysis.json': JSON.stringify({ blueprint: { bucket: 'x-y-z' } }) });
    await expect(blueprintFileOf(inline)).rejects.toThrow(
      /holds its blueprint inline: caas dev save writes the image into a blueprint file/,
    );
  });
});
