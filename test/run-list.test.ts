import { mkdirSync, readdirSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PlanEntry } from '../wrapper/gate.ts';
import { JobPreparer, type PreparedJob } from '../wrapper/prepare.ts';
import { RunList } from '../wrapper/run-list.ts';
import { forEachOfAtMost } from '../wrapper/worker-pool.ts';
import { AnalysisRepo, mockJob, removeDir, scratchDir, sessionFile } from './support/workspace.ts';

/** The files this process holds open that were unlinked: the RUN list's, while it is open. */
const unlinkedOpenFiles = () =>
  readdirSync('/proc/self/fd').flatMap((fd) => {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      return target.includes('caas-run-list-') && target.endsWith(' (deleted)') ? [target] : [];
    } catch {
      return [];
    }
  });

/**
 * `caas run --execute` keeps the jobs its plan says to run until they run. A rerun of 100,000 jobs
 * must not hold 100,000 prepared jobs: past one chunk they wait in a temporary file, and come back
 * exactly as they were planned, in order.
 */
describe('the RUN list of a large batch', () => {
  let base: string;
  let jobs: PreparedJob[];

  beforeAll(async () => {
    base = scratchDir('run-list');
    const repo = new AnalysisRepo(base);
    const data = sessionFile(base);
    const preparer = new JobPreparer({ storeScheme: 'file', allowDirty: false, roots: [repo.dir] });
    jobs = [];
    for (let i = 0; i < 2500; i++) {
      const prepared = await preparer.prepare({ where: `jobs.jsonl:${i + 1}`, value: JSON.parse(mockJob(`job-${i}`, { wait: i }, data)) });
      if (!prepared.ok) throw new Error(prepared.reason);
      jobs.push(prepared.job);
    }
  });
  afterAll(() => removeDir(base));

  it('gives back every RUN entry in plan order, each job as it was prepared; the other actions are not kept', async () => {
    const dir = path.join(base, 'spill-1');
    mkdirSync(dir);
    const list = new RunList(dir);
    try {
      for (let at = 0; at < jobs.length; at += 1000) {
        const chunk: PlanEntry[] = jobs.slice(at, at + 1000).flatMap((job, i): PlanEntry[] => [
          { action: 'RUN', where: job.where, job, ...(i % 2 ? { reason: 'retry of a failed attempt' } : {}) },
          { action: 'SKIP', where: job.where, job, reason: 'succeeded before' },
        ]);
        await list.add(chunk);
      }
      expect(list.inFile, 'past one chunk, the entries wait in a file').toBe(2000);
      expect(unlinkedOpenFiles(), 'open, and already unlinked: nothing is left behind if the process dies').toHaveLength(1);
      expect(readdirSync(dir)).toEqual([]);
      expect(list.size).toBe(2500);
      expect([...list.buckets]).toEqual([jobs[0]!.bucket]);
      expect([...list.analyses.values()].map((a) => a.analysis)).toEqual([jobs[0]!.analysis]);

      const back: PlanEntry[] = [];
      for await (const entry of list.entries()) back.push(entry);

      expect(back.map((e) => e.where)).toEqual(jobs.map((j) => j.where));
      expect(back.every((e) => e.action === 'RUN')).toBe(true);
      expect(back.filter((e) => e.reason === 'retry of a failed attempt')).toHaveLength(1250);
      // The same job, field by field (JSON has no undefined), sharing the one analysis object and code state.
      for (const [i, entry] of back.entries()) {
        const { analysis, code, ...rest } = entry.job!;
        const { analysis: planned, code: plannedCode, ...expected } = jobs[i]!;
        expect(analysis).toBe(planned);
        expect(code).toBe(plannedCode);
        expect(rest).toEqual(JSON.parse(JSON.stringify(expected)));
      }
    } finally {
      await list.close();
    }
    expect(unlinkedOpenFiles(), 'closed: its file is gone').toEqual([]);
  });

  it('is taken by the workers one entry at a time; a stop leaves the rest unread and closes the file', async () => {
    const list = new RunList(path.join(base));
    try {
      await list.add(jobs.map((job): PlanEntry => ({ action: 'RUN', where: job.where, job })));
      let running = 0;
      let most = 0;
      const done: string[] = [];
      await forEachOfAtMost(
        list.entries(),
        4,
        async (entry) => {
          most = Math.max(most, ++running);
          await new Promise((resolve) => setImmediate(resolve));
          done.push(entry.where);
          running--;
        },
        () => done.length >= 1500,
      );
      expect(most).toBe(4);
      expect(done.length).toBeGreaterThanOrEqual(1500);
      expect(done.length).toBeLessThan(1504);
      expect(new Set(done).size).toBe(done.length);
    } finally {
      await list.close();
    }
    expect(unlinkedOpenFiles()).toEqual([]);
  });
});
