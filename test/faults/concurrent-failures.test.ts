import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AnalysisRepo, mockJob, ROOT, readRecords, removeDir, runCli, scratchDir, sessionFile } from '../support/workspace.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Retries are for the next run, not for a runner of the same wave that sees the failure appear. */
describe('concurrent runners over failing jobs', () => {
  let base: string;
  let repo: AnalysisRepo;

  beforeAll(() => {
    base = scratchDir('failing-wave');
    repo = new AnalysisRepo(base);
  });
  afterAll(() => removeDir(base));

  it('4 runners started within a second over 8 failing jobs run each identity once; the next run retries each once', {
    timeout: 300_000,
  }, async () => {
    const data = sessionFile(base);
    const home = path.join(base, 'home');
    const marker = path.join(base, 'ran');
    const jobs = path.join(base, 'jobs.jsonl');
    writeFileSync(
      jobs,
      `${Array.from({ length: 8 }, (_, i) => mockJob(`fail-${i}`, { wait: 0, fail: true, marker: 'x' }, data)).join('\n')}\n`,
    );
    // The jobs fail only once all four runners have planned, so every failure lands in their wave.
    const gate = path.join(base, 'gate');
    const env = {
      ...process.env,
      NO_COLOR: '1',
      CAAS_ANALYSES: repo.dir,
      CAAS_STATUS_INTERVAL_MS: '500',
      CAAS_MOCK_MARKER_FILE: marker,
      CAAS_MOCK_GATE_FILE: gate,
    };
    const ran = () => (existsSync(marker) ? readFileSync(marker, 'utf8').split('\n').filter(Boolean) : []);

    const outputs: string[] = [];
    const runners: Promise<number | null>[] = [];
    // Started 0.25 s apart: within one second.
    for (let i = 0; i < 4; i++) {
      if (i > 0) await sleep(250);
      const child = spawn(
        process.execPath,
        [path.join(ROOT, 'bin/caas.js'), '--home', home, 'run', jobs, '--execute', '--concurrency', '1'],
        {
          env,
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      outputs[i] = '';
      child.stdout.on('data', (chunk: Buffer) => {
        outputs[i] += chunk.toString();
      });
      runners.push(new Promise((resolve) => child.on('close', resolve)));
    }
    // One job at a time each: after the first failures every runner moves on to jobs that failed just now.
    // Each runner prints its plan before it runs anything.
    const planned = () => outputs.every((out) => /^ACTION\s/m.test(out));
    for (let i = 0; i < 1200 && !planned(); i++) await sleep(100);
    expect(planned()).toBe(true);
    writeFileSync(gate, '');
    const codes = await Promise.all(runners);

    expect(ran()).toHaveLength(8);
    expect(new Set(ran()).size).toBe(8);
    // Whoever ran a job saw it fail (exit 1); the others were told it failed elsewhere, not run again.
    expect(codes.some((code) => code === 1)).toBe(true);
    expect(outputs.join('')).not.toMatch(/attempt 2/);
    let records = await readRecords(home);
    expect(records).toHaveLength(8);
    expect(records.every((r) => r.status === 'failed' && r.attempts.length === 1)).toBe(true);

    const retry = await runCli(['--home', home, 'run', jobs, '--execute', '--concurrency', '4'], { env });
    expect(retry.code).toBe(1);
    expect(retry.stdout).toMatch(/plan: 8 to run/);
    expect(ran()).toHaveLength(16);
    records = await readRecords(home);
    expect(records.every((r) => r.attempts.length === 2)).toBe(true);
  });
});
