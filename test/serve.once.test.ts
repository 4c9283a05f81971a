import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../backends/db/index.ts';
import type { QueuedJob } from '../models/queued-job.ts';
import { call, type Json, startServer, until } from './support/service.ts';
import { AnalysisRepo, readRecords, removeDir, runCli, scratchDir, sessionFile } from './support/workspace.ts';

/** The service is one more runner: exactly once against CLI runners, concurrent requests and a killed server. */
describe('caas serve: exactly once', () => {
  let base: string;
  let repo: AnalysisRepo;
  let data: string;
  const env = (marker: string) => ({ CAAS_ANALYSES: repo.dir, CAAS_STATUS_INTERVAL_MS: '500', CAAS_MOCK_MARKER_FILE: marker });
  const job = (asset: string, wait: number) => ({
    analysis: 'mock-wait',
    inputs: [{ asset_id: asset, name: asset, location: `file://${path.dirname(data)}/`, files: [{ url: `file://${data}` }] }],
    parameters: { wait, marker: 'x' },
  });
  const markerLines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);

  async function queueOf(home: string): Promise<QueuedJob[]> {
    const db = await openDatabase('sqlite:', { home, readOnly: true });
    try {
      return await db.queue.listQueued({ limit: 1000 });
    } finally {
      await db.close();
    }
  }

  beforeAll(() => {
    base = scratchDir('serve-once');
    repo = new AnalysisRepo(base);
    data = sessionFile(base);
  });
  afterAll(() => removeDir(base));

  it('200 concurrent POST /api/jobs?execute=true of the same 5 jobs, with caas run --execute of them at once: each runs exactly once, no 5xx', {
    timeout: 300_000,
  }, async () => {
    const home = path.join(base, 'race');
    const marker = path.join(base, 'race.marker');
    const jobs = Array.from({ length: 5 }, (_, i) => job(`race-${i}`, 0.2));
    const file = path.join(base, 'race.jsonl');
    writeFileSync(file, `${jobs.map((j) => JSON.stringify(j)).join('\n')}\n`);
    const server = await startServer(
      ['--home', home, 'serve', '--port', '0', '--compute', 'inline', '--concurrency', '2', '--lease-seconds', '3'],
      env(marker),
    );
    try {
      const cli = runCli(['--home', home, 'run', file, '--execute', '--compute', 'inline', '--lease-seconds', '3'], { env: env(marker) });
      const answers = await Promise.all(
        Array.from({ length: 200 }, () => call(server.url, 'POST', '/api/jobs?execute=true', { body: jobs })),
      );
      const ran = await cli;

      expect(answers.filter((a) => a.status >= 500).map((a) => a.text)).toEqual([]);
      expect(answers.filter((a) => a.status !== 200 && a.status !== 202).map((a) => `${a.status} ${a.text}`)).toEqual([]);
      const identities = new Set<string>();
      for (const answer of answers) {
        expect(answer.body.jobs).toHaveLength(5);
        for (const one of answer.body.jobs as Json[]) {
          expect(one.identity).toMatch(/^[0-9a-f]{64}$/);
          identities.add(one.identity);
        }
      }
      expect(identities.size).toBe(5);
      expect(ran.code, ran.stderr).toBe(0);

      await until(
        'every job to be answered in the queue and recorded',
        async () => {
          const [queue, records] = [await queueOf(home), await readRecords(home)];
          return queue.every((q) => q.state === 'done') && records.length === 5 && records.every((r) => r.status === 'succeeded');
        },
        120_000,
        500,
      );
      const lines = markerLines(marker);
      expect(lines).toHaveLength(5);
      expect(new Set(lines).size).toBe(5);
      const records = await readRecords(home);
      expect(new Set(records.map((r) => r._id))).toEqual(identities);
      expect(records.every((r) => r.attempts.length === 1)).toBe(true);
    } finally {
      server.child.kill('SIGTERM');
    }
  });

  it('a server killed with SIGKILL holding 2 running and 20 queued jobs: started again, all 22 succeed, each executed once', {
    timeout: 300_000,
  }, async () => {
    const home = path.join(base, 'killed');
    const marker = path.join(base, 'killed.marker');
    const args = ['--home', home, 'serve', '--port', '0', '--compute', 'local', '--concurrency', '2', '--lease-seconds', '3'];
    const first = await startServer(args, env(marker));
    const accepted = await call(first.url, 'POST', '/api/jobs?execute=true', {
      body: Array.from({ length: 22 }, (_, i) => job(`killed-${i}`, 1)),
    });
    expect(accepted.status).toBe(202);
    expect(accepted.body.jobs.every((j: Json) => j.queued)).toBe(true);
    await until(
      '2 jobs to run',
      async () => (await readRecords(home).catch(() => [])).filter((r) => r.status === 'running').length === 2,
      60_000,
      100,
    );
    first.child.kill('SIGKILL');
    await new Promise((resolve) => first.child.once('close', resolve));

    // A 1 s job may have finished (and its slot taken the next one) between the look and the kill.
    const left = await queueOf(home);
    const count = (state: QueuedJob['state']) => left.filter((q) => q.state === state).length;
    expect(count('taken')).toBeLessThanOrEqual(2);
    expect(count('taken') + count('queued') + count('done')).toBe(22);

    const second = await startServer(args, env(marker));
    try {
      await until(
        'all 22 jobs to succeed',
        async () => {
          const [queue, records] = [await queueOf(home), await readRecords(home)];
          return queue.every((q) => q.state === 'done') && records.length === 22 && records.every((r) => r.status === 'succeeded');
        },
        240_000,
        500,
      );
      const lines = markerLines(marker);
      expect(lines).toHaveLength(22);
      expect(new Set(lines).size).toBe(22);
      const status = await call(second.url, 'GET', `/api/jobs/${accepted.body.jobs[0].identity}`);
      expect(status.body).toMatchObject({ state: 'succeeded', queue: { state: 'done', outcome: 'succeeded' } });
    } finally {
      second.child.kill('SIGTERM');
    }
  });
});
