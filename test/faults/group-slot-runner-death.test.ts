import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AnalysisRepo, mockJob, ROOT, readRecords, removeDir, runCli, scratchDir, sessionFile } from '../support/workspace.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Says when it starts and ends, and stays at work until the test opens the gate. */
const GATED = `#!/usr/bin/env bash
set -eu
echo "start $dataname $(date +%s.%N)" >> "$CAAS_MOCK_MARKER_FILE"
while [[ ! -e "$CAAS_MOCK_GATE_FILE" ]]; do sleep 0.1; done
echo "end $dataname $(date +%s.%N)" >> "$CAAS_MOCK_MARKER_FILE"
echo done > "$CAAS_OUTPUT_DIR/done.txt"
`;

/**
 * A group's instance_limit counts machines, not runners: when a runner dies while its job's
 * machine (here a local agent, which outlives its runner as an EC2 instance does) still runs, the
 * group's slot stays with that job. Another job of the group waits; the runner that takes the job
 * over takes its slot with it, and gives it back when it records the job.
 */
describe("a runner killed while its job holds its group's only slot", () => {
  let base: string;
  let repo: AnalysisRepo;

  beforeAll(() => {
    base = scratchDir('group-slot-runner-death');
    repo = new AnalysisRepo(base, []);
    repo.addScriptAnalysis('limited', GATED, {
      groups: [{ name: 'one-at-a-time', instance_limit: 1 }],
      environment: { pass: ['CAAS_MOCK_MARKER_FILE', 'CAAS_MOCK_GATE_FILE'] },
    });
  });
  afterAll(() => removeDir(base));

  it('another job of the group waits for the orphaned machine; the job taken over keeps the slot; the two never run at once', {
    timeout: 240_000,
  }, async () => {
    const home = path.join(base, 'home');
    const marker = path.join(base, 'marker');
    const gate = path.join(base, 'gate');
    const data = sessionFile(base);
    const jobsFile = (name: string) => {
      const file = path.join(base, `${name}.jsonl`);
      writeFileSync(file, `${mockJob(name, { mode: name }, data, { analysis: 'limited', group: 'one-at-a-time' })}\n`);
      return file;
    };
    const [orphaned, other] = [jobsFile('orphaned'), jobsFile('other')];
    const env = { CAAS_ANALYSES: repo.dir, CAAS_STATUS_INTERVAL_MS: '500', CAAS_MOCK_MARKER_FILE: marker, CAAS_MOCK_GATE_FILE: gate };
    const lines = () => (existsSync(marker) ? readFileSync(marker, 'utf8').split('\n').filter(Boolean) : []);
    const run = (file: string) => ['--home', home, 'run', file, '--execute', '--compute', 'local', '--lease-seconds', '3'];

    const first = spawn(process.execPath, [path.join(ROOT, 'bin/caas.js'), ...run(orphaned)], {
      env: { ...process.env, NO_COLOR: '1', ...env },
      stdio: 'ignore',
    });
    for (let i = 0; i < 600 && lines().length === 0; i++) await sleep(100);
    expect(lines()).toHaveLength(1);
    const exited = new Promise((resolve) => first.once('close', resolve));
    first.kill('SIGKILL');
    await exited;
    // Past the runner's lease: its slot would have lapsed, while its agent still works.
    await sleep(4000);

    const waiting = runCli(run(other), { env });
    await sleep(5000);
    expect(lines(), 'the other job has not started beside the orphaned machine').toHaveLength(1);

    const rescue = runCli(run(orphaned), { env });
    const adopted = async () => (await readRecords(home).catch(() => [])).some((r) => r.attempts[0]?.adopted?.length);
    for (let i = 0; i < 1200 && !(await adopted()); i++) await sleep(100);
    expect(await adopted()).toBe(true);
    writeFileSync(gate, '');
    const [rescued, waited] = await Promise.all([rescue, waiting]);

    expect(rescued.code, rescued.stderr).toBe(0);
    expect(waited.code, waited.stderr).toBe(0);
    expect(waited.stderr).toMatch(/instance_limit 1 of group "one-at-a-time" of limited reached: a job waits for a slot/);
    const events = lines().map((line) => line.split(' '));
    expect(events.map(([kind, name]) => `${kind} ${path.basename(name ?? '')}`)).toEqual([
      'start session.json',
      'end session.json',
      'start session.json',
      'end session.json',
    ]);
    const records = await readRecords(home);
    expect(records.map((r) => [r.status, r.attempts.length]).sort()).toEqual([
      ['succeeded', 1],
      ['succeeded', 1],
    ]);
    expect(records.filter((r) => r.attempts[0]?.adopted?.length)).toHaveLength(1);
  });
});
