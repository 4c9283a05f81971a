import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processesWithEnv } from '../support/processes.ts';
import { AnalysisRepo, mockJob, ROOT, readRecords, removeDir, runCli, scratchDir, sessionFile } from '../support/workspace.ts';

/** Job folders the launchers made under TMPDIR (tsx keeps its own cache there too). */
const jobFolders = (tmp: string) => readdirSync(tmp).filter((name) => name.startsWith('caas-job-'));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A runner that dies while its jobs run (SIGKILL, a closed laptop) must not make the next run
 * execute them again: local agents finish on their own and are adopted; under inline compute the
 * agent dies with the runner, takes its analysis with it, and the job runs once more, once.
 */
describe('a runner killed while its jobs run', () => {
  let base: string;
  let repo: AnalysisRepo;
  let data: string;

  beforeAll(() => {
    base = scratchDir('runner-death');
    repo = new AnalysisRepo(base);
    data = sessionFile(base);
  });
  afterAll(() => removeDir(base));

  function scenario(name: string) {
    const dir = path.join(base, name);
    const tmp = path.join(dir, 'tmp');
    mkdirSync(tmp, { recursive: true });
    const files = {
      home: path.join(dir, 'home'),
      jobs: path.join(dir, 'jobs.jsonl'),
      started: path.join(dir, 'started'),
      done: path.join(dir, 'done'),
      // The analyses wait for this file: the test opens it when it has seen what it came to see.
      gate: path.join(dir, 'gate'),
    };
    writeFileSync(files.jobs, `${[1, 2, 3].map((i) => mockJob(`${name}-${i}`, { wait: 0, marker: 'x' }, data)).join('\n')}\n`);
    const env = {
      CAAS_ANALYSES: repo.dir,
      CAAS_STATUS_INTERVAL_MS: '500',
      CAAS_MOCK_START_FILE: files.started,
      CAAS_MOCK_MARKER_FILE: files.done,
      CAAS_MOCK_GATE_FILE: files.gate,
      // The job folders of this scenario only, so "nothing left behind" is checked on them alone.
      TMPDIR: tmp,
    };
    const lines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);
    const runner = (compute: string): ChildProcess =>
      spawn(
        process.execPath,
        [
          path.join(ROOT, 'bin/caas.js'),
          '--home',
          files.home,
          'run',
          files.jobs,
          '--execute',
          '--compute',
          compute,
          '--concurrency',
          '2',
          '--lease-seconds',
          '5',
        ],
        { env: { ...process.env, NO_COLOR: '1', ...env }, stdio: 'ignore' },
      );
    return { ...files, tmp, env, lines, runner };
  }

  async function killWhenStarted(child: ChildProcess, startedFile: string, lines: (file: string) => string[]) {
    // Both first jobs are in their analysis, held there by the gate.
    for (let i = 0; i < 600 && lines(startedFile).length < 2; i++) await sleep(100);
    expect(lines(startedFile)).toHaveLength(2);
    const exited = new Promise((resolve) => child.once('close', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  it('(local) its agents finish on their own; the next run adopts them: every job started once and finished once', {
    timeout: 240_000,
  }, async () => {
    const s = scenario('local');
    await killWhenStarted(s.runner('local'), s.started, s.lines);
    // The two analyses go on without their runner.
    expect(processesWithEnv('CAAS_MOCK_START_FILE', s.started).length).toBeGreaterThanOrEqual(2);
    // Past the 5 s lease, while the orphaned agents still work (held by the gate).
    await sleep(6000);
    const rescuing = runCli(['--home', s.home, 'run', s.jobs, '--execute', '--lease-seconds', '5', '--concurrency', '3'], {
      env: s.env,
    });
    const adoptedSoFar = async () => (await readRecords(s.home).catch(() => [])).filter((r) => r.attempts[0]?.adopted?.length).length;
    for (let i = 0; i < 1200 && (await adoptedSoFar()) < 2; i++) await sleep(100);
    writeFileSync(s.gate, '');
    const rescue = await rescuing;
    expect(rescue.stderr).not.toMatch(/\n\s+at /);
    expect(rescue.code).toBe(0);

    expect(s.lines(s.started)).toHaveLength(3);
    expect(new Set(s.lines(s.started)).size).toBe(3);
    expect(s.lines(s.done)).toHaveLength(3);
    const records = await readRecords(s.home);
    expect(records).toHaveLength(3);
    expect(records.every((r) => r.status === 'succeeded' && r.attempts.length === 1)).toBe(true);
    const adopted = records.filter((r) => r.attempts[0]!.adopted?.length);
    expect(adopted).toHaveLength(2);
    for (const record of adopted) {
      expect(record.attempts[0]!.reason).toMatch(/adopted by .* its runner had stopped renewing its lease/);
      expect(record.attempts[0]!.status).toBe('succeeded');
    }
    expect(jobFolders(s.tmp)).toEqual([]);
  });

  it('(local) a runner that adopted jobs and is told to stop stops their agents too, and records them', { timeout: 240_000 }, async () => {
    const s = scenario('adopt-stop');
    await killWhenStarted(s.runner('local'), s.started, s.lines);
    await sleep(6000);
    const rescue = s.runner('local');
    const exited = new Promise<number | null>((resolve) => rescue.once('close', resolve));
    const adoptedSoFar = async () => (await readRecords(s.home).catch(() => [])).filter((r) => r.attempts[0]?.adopted?.length).length;
    for (let i = 0; i < 1200 && (await adoptedSoFar()) < 2; i++) await sleep(100);
    expect(await adoptedSoFar()).toBe(2);
    rescue.kill('SIGTERM');
    expect(await exited).toBe(1);

    // The adopted agents were not the rescuer's children; it stopped them all the same.
    expect(processesWithEnv('CAAS_MOCK_START_FILE', s.started)).toEqual([]);
    expect(s.lines(s.done)).toEqual([]);
    const adopted = (await readRecords(s.home)).filter((r) => r.attempts[0]?.adopted?.length);
    expect(adopted).toHaveLength(2);
    for (const record of adopted) {
      expect(record.status).toBe('failed');
      expect(record.attempts).toHaveLength(1);
      expect(record.reason).toMatch(/cancelled: received SIGTERM.*; adopted by /);
    }
    expect(jobFolders(s.tmp)).toEqual([]);
  });

  it('a lease shorter than three heartbeats is refused (exit 2) before anything is written', async () => {
    const s = scenario('short-lease');
    for (const lease of ['0.001', '1']) {
      const refused = await runCli(['--home', s.home, 'run', s.jobs, '--execute', '--lease-seconds', lease], { env: s.env });
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/--lease-seconds: a lease of .* s is too short: it must span at least 3 status intervals \(1\.5 s\)/);
    }
    expect(existsSync(s.home)).toBe(false);
  });

  it('(inline) the agent dies with its runner and takes its analysis along; the next run runs those jobs once more, once', {
    timeout: 240_000,
  }, async () => {
    const s = scenario('inline');
    await killWhenStarted(s.runner('inline'), s.started, s.lines);
    // The analyses died with the agent: nothing of the first run finishes, and no process is left.
    await sleep(1000);
    expect(processesWithEnv('CAAS_MOCK_START_FILE', s.started)).toEqual([]);
    writeFileSync(s.gate, '');
    // Past the 5 s lease.
    await sleep(5000);
    expect(s.lines(s.done)).toEqual([]);
    expect(jobFolders(s.tmp)).toEqual([]);
    const rescue = await runCli(
      ['--home', s.home, 'run', s.jobs, '--execute', '--compute', 'inline', '--lease-seconds', '5', '--concurrency', '3'],
      {
        env: s.env,
      },
    );
    expect(rescue.code).toBe(0);

    // Each identity finished exactly once; the two interrupted ones started a second time.
    expect(s.lines(s.done)).toHaveLength(3);
    expect(new Set(s.lines(s.done)).size).toBe(3);
    expect(s.lines(s.started)).toHaveLength(5);
    const records = await readRecords(s.home);
    expect(records.every((r) => r.status === 'succeeded')).toBe(true);
    const retried = records.filter((r) => r.attempts.length === 2);
    expect(retried).toHaveLength(2);
    for (const record of retried) {
      expect(record.attempts[0]).toMatchObject({ status: 'failed' });
      expect(record.attempts[0]!.reason).toMatch(/lease expired|its agent stopped/);
      // Never recorded by its runner, the dead attempt is still charged: from its start to its agent's
      // last heartbeat, not to when the next run found it dead (6 s and more later, past the lease).
      const charged = record.attempts[0]!.cost;
      const gapS = (Date.parse(record.attempts[1]!.started) - Date.parse(record.attempts[0]!.started)) / 1000;
      expect(charged?.runtime_s).toBeGreaterThan(0);
      expect(charged?.runtime_s).toBeLessThan(gapS - 4);
      expect(record.attempts[1]).toMatchObject({ status: 'succeeded' });
    }
    expect(jobFolders(s.tmp)).toEqual([]);
  });
});
