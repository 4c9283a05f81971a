import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MetadataRecord } from '../models/record.ts';
import { AnalysisRepo, mockJob, ROOT, readRecords, removeDir, runCli, scratchDir, sessionFile } from './support/workspace.ts';

/** Exactly once under concurrent runners and faults, with real processes and short leases. */
describe('exactly once', () => {
  let base: string;
  let repo: AnalysisRepo;
  let data: string;
  const env = (extra: Record<string, string> = {}) => ({ CAAS_ANALYSES: repo.dir, CAAS_STATUS_INTERVAL_MS: '500', ...extra });

  beforeAll(() => {
    base = scratchDir('once');
    repo = new AnalysisRepo(base);
    data = sessionFile(base);
  });
  afterAll(() => removeDir(base));

  function setup(name: string, count: number, parameters: Record<string, unknown>) {
    const home = path.join(base, `home-${name}`);
    const marker = path.join(base, `${name}.marker`);
    const jobs = path.join(base, `${name}.jsonl`);
    writeFileSync(
      jobs,
      `${Array.from({ length: count }, (_, i) => mockJob(`${name}-${i}`, { ...parameters, marker: 'x' }, data)).join('\n')}\n`,
    );
    return { home, marker, jobs };
  }

  function startRunner(home: string, jobs: string, extraEnv: Record<string, string>, ...args: string[]): ChildProcess {
    return spawn(process.execPath, [path.join(ROOT, 'bin/caas.js'), '--home', home, 'run', jobs, '--execute', ...args], {
      env: { ...process.env, ...env(extraEnv) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  }

  const exited = (child: ChildProcess) => new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const markerLines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);

  function endTxtExists(home: string, record: MetadataRecord): boolean {
    const results = record.job!.results.replace(/^file:\/\//, '');
    return existsSync(path.join(home, 'buckets', results, 'end.txt'));
  }

  it('4 runners started together over the same 200 jobs execute every identity exactly once', { timeout: 600_000 }, async () => {
    const { home, marker, jobs } = setup('race', 200, { wait: 0 });
    const runners = Array.from({ length: 4 }, () =>
      startRunner(home, jobs, { CAAS_MOCK_MARKER_FILE: marker }, '--concurrency', '2', '--lease-seconds', '20'),
    );
    const codes = await Promise.all(runners.map(exited));
    expect(codes).toEqual([0, 0, 0, 0]);
    const lines = markerLines(marker);
    expect(lines).toHaveLength(200);
    expect(new Set(lines).size).toBe(200);
    const stored = await readRecords(home);
    expect(stored).toHaveLength(200);
    expect(stored.every((r) => r.status === 'succeeded' && r.attempts.length === 1)).toBe(true);
  });

  it('a runner killed with SIGKILL mid-batch loses nothing: after its lease expires the next run completes every job', {
    timeout: 180_000,
  }, async () => {
    const { home, marker, jobs } = setup('killed', 8, { wait: 1 });
    // A lease long enough that the check below sees it live even on a loaded machine, where a CLI
    // start alone can take several seconds (10 s was not always enough).
    const victim = startRunner(home, jobs, { CAAS_MOCK_MARKER_FILE: marker }, '--concurrency', '2', '--lease-seconds', '30');
    // Kill it once it has recorded something and is busy with more.
    for (let i = 0; i < 200 && (await readRecords(home).catch(() => [])).filter((r) => r.status === 'succeeded').length < 2; i++) {
      await new Promise((r) => setTimeout(r, 200));
    }
    victim.kill('SIGKILL');
    const killedAt = Date.now();
    await exited(victim);
    const meanwhile = await runCli(['--home', home, 'run', jobs], { env: env() });
    expect(meanwhile.stdout).toMatch(/RUNNING .*running elsewhere/);
    for (const record of await readRecords(home)) {
      if (record.status === 'succeeded') expect(endTxtExists(home, record)).toBe(true);
    }
    await new Promise((r) => setTimeout(r, Math.max(0, killedAt + 30_500 - Date.now())));
    const rescue = await runCli(['--home', home, 'run', jobs, '--execute', '--lease-seconds', '3'], {
      env: env({ CAAS_MOCK_MARKER_FILE: marker }),
    });
    expect(rescue.code).toBe(0);
    const stored = await readRecords(home);
    expect(stored).toHaveLength(8);
    for (const record of stored) {
      expect(record.status).toBe('succeeded');
      expect(endTxtExists(home, record)).toBe(true);
    }
    const again = await runCli(['--home', home, 'run', jobs], { env: env() });
    expect(again.stdout).toMatch(/plan: 0 to run, 8 skipped/);
  });

  it('a crash between upload and record is repaired by the next run, without computing the job again', { timeout: 120_000 }, async () => {
    const { home, marker, jobs } = setup('crash', 1, { wait: 0 });
    const crashed = await runCli(['--home', home, 'run', jobs, '--execute', '--lease-seconds', '2'], {
      env: env({ CAAS_MOCK_MARKER_FILE: marker, CAAS_FAULT: 'kill-before-record' }),
    });
    expect(crashed.code).toBeNull();
    let [record] = await readRecords(home);
    expect(record!.status).toBe('running');
    expect(markerLines(marker)).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 2500));
    const repaired = await runCli(['--home', home, 'run', jobs, '--execute'], { env: env({ CAAS_MOCK_MARKER_FILE: marker }) });
    expect(repaired.code).toBe(0);
    [record] = await readRecords(home);
    expect(record!.status).toBe('succeeded');
    expect(record!.reason).toMatch(/recovered: attempt 1 finished but its runner died/);
    // One execution, one attempt: the finished attempt is recorded as what it was, not as a lapsed lease.
    expect(record!.attempts.map((a) => [a.n, a.status])).toEqual([[1, 'succeeded']]);
    expect(markerLines(marker)).toHaveLength(1);
    expect(endTxtExists(home, record!)).toBe(true);
  });

  it('--force needs --reason; with one, the rerun is attempt 2 and attempt 1 stays linked', { timeout: 120_000 }, async () => {
    const { home, marker, jobs } = setup('force', 1, { wait: 0 });
    expect((await runCli(['--home', home, 'run', jobs, '--execute'], { env: env({ CAAS_MOCK_MARKER_FILE: marker }) })).code).toBe(0);
    const refused = await runCli(['--home', home, 'run', jobs, '--execute', '--force'], { env: env() });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/--force needs --reason/);
    const forced = await runCli(['--home', home, 'run', jobs, '--execute', '--force', '--reason', 'spike sorter fixed'], {
      env: env({ CAAS_MOCK_MARKER_FILE: marker }),
    });
    expect(forced.code).toBe(0);
    const [record] = await readRecords(home);
    expect(record!.status).toBe('succeeded');
    expect(record!.attempts).toHaveLength(2);
    expect(record!.attempts[0]).toMatchObject({ n: 1, status: 'succeeded' });
    expect(record!.attempts[1]).toMatchObject({ n: 2, status: 'succeeded', force_reason: 'spike sorter fixed' });
    expect(record!.attempts[0]!.results).not.toBe(record!.attempts[1]!.results);
    expect(endTxtExists(home, record!)).toBe(true);
    expect(markerLines(marker)).toHaveLength(2);
  });
});
