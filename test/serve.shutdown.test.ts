import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../backends/db/index.ts';
import type { QueuedJob } from '../models/queued-job.ts';
import { call, startServer, until } from './support/service.ts';
import { AnalysisRepo, readRecords, removeDir, scratchDir, sessionFile } from './support/workspace.ts';

/**
 * SIGTERM is how systemd and every orchestrator stop a service. The server stops accepting, lets
 * running jobs finish for --grace-seconds, and hands the others back through the queue: the next
 * server adopts the attempt whose agent still runs, so nothing is lost and nothing runs twice.
 */
describe('caas serve: SIGTERM', () => {
  let base: string;
  let repo: AnalysisRepo;
  let data: string;
  const lines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);

  async function queueOf(home: string): Promise<QueuedJob[]> {
    const db = await openDatabase('sqlite:', { home, readOnly: true });
    try {
      return await db.queue.listQueued({ limit: 100 });
    } finally {
      await db.close();
    }
  }

  beforeAll(() => {
    base = scratchDir('serve-shutdown');
    repo = new AnalysisRepo(base);
    data = sessionFile(base);
  });
  afterAll(() => removeDir(base));

  it('stops accepting, hands a job still running after the grace back, exits 0; the next server adopts its attempt: run once, recorded once', {
    timeout: 240_000,
  }, async () => {
    const home = path.join(base, 'home');
    const files = { started: path.join(base, 'started'), done: path.join(base, 'done'), gate: path.join(base, 'gate') };
    const env = {
      CAAS_ANALYSES: repo.dir,
      CAAS_STATUS_INTERVAL_MS: '500',
      CAAS_MOCK_START_FILE: files.started,
      CAAS_MOCK_MARKER_FILE: files.done,
      CAAS_MOCK_GATE_FILE: files.gate,
    };
    const args = ['--home', home, 'serve', '--port', '0', '--compute', 'local', '--lease-seconds', '3', '--grace-seconds', '1'];
    const job = {
      analysis: 'mock-wait',
      inputs: [{ asset_id: 'held', name: 'held', location: `file://${path.dirname(data)}/`, files: [{ url: `file://${data}` }] }],
      parameters: { wait: 0, marker: 'x' },
    };

    const first = await startServer(args, env);
    const accepted = await call(first.url, 'POST', '/api/jobs?execute=true', { body: job });
    expect(accepted.status).toBe(202);
    const identity = accepted.body.jobs[0].identity as string;
    // The analysis is at work, held there by the gate.
    await until('the job to start', async () => lines(files.started).length === 1, 60_000, 100);

    const exited = new Promise<number | null>((resolve) => first.child.once('exit', resolve));
    first.child.kill('SIGTERM');
    await until('the server to stop accepting', async () => {
      const after = await call(first.url, 'POST', '/api/jobs?execute=true', { body: job }).catch(() => undefined);
      return after === undefined || after.status === 503;
    });
    expect(await exited).toBe(0);
    expect(first.stderr()).toMatch(/SIGTERM: not accepting; running jobs have 1 s to finish/);
    expect(first.stderr()).toMatch(/stopped \(0 jobs finished, 1 handed back to the next server\)/);
    expect(await queueOf(home)).toMatchObject([{ state: 'queued' }]);
    expect(lines(files.done), 'the agent outlived its server, still at work').toEqual([]);

    const second = await startServer(args, env);
    try {
      await until('the next server to adopt the attempt', async () =>
        (await readRecords(home).catch(() => [])).some((r) => r.attempts[0]?.adopted?.length),
      );
      writeFileSync(files.gate, '');
      const done = await until(
        'the job to be recorded',
        async () => {
          const status = await call(second.url, 'GET', `/api/jobs/${identity}`);
          return status.body?.state === 'succeeded' ? status.body : undefined;
        },
        120_000,
        300,
      );
      expect(done).toMatchObject({ state: 'succeeded', queue: { state: 'done' } });
    } finally {
      second.child.kill('SIGTERM');
    }
    expect(lines(files.started)).toHaveLength(1);
    expect(lines(files.done)).toHaveLength(1);
    const [record] = await readRecords(home);
    expect(record?.attempts).toHaveLength(1);
    expect(record?.attempts[0]?.reason).toMatch(/adopted by /);
  });
});
