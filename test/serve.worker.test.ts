import { readdirSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../backends/storage/index.ts';
import { JobRunner } from '../wrapper/run.ts';
import { removeDir, scratchDir } from './support/workspace.ts';

/** Open file descriptors of this process on files under `dir` (a leaked SQLite handle keeps some). */
function openFilesUnder(dir: string): string[] {
  return readdirSync('/proc/self/fd').flatMap((fd) => {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      return target.startsWith(`${dir}/`) ? [target] : [];
    } catch {
      return [];
    }
  });
}

/** The service's runner shares one DB handle between jobs. */
describe('caas serve: the queue worker', () => {
  let base: string;

  beforeAll(() => {
    base = scratchDir('serve-worker');
  });
  afterAll(() => removeDir(base));

  it("jobs that start together share the runner's one DB handle: none is left open once it closes", async () => {
    const home = path.join(base, 'handles');
    const store = await openStore('file:', { home });
    const runner = await JobRunner.open({ compute: 'inline', home, dbUrl: 'sqlite:', leaseMs: 3000 }, store, () => {});
    await Promise.all([runner.ready([]), runner.ready([]), runner.ready([])]);
    expect(openFilesUnder(home)).toContain(path.join(home, 'metadata.sqlite'));
    await runner.close();
    await store.close();
    expect(openFilesUnder(home)).toEqual([]);
  });
});
