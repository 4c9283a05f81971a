import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentOf, processesWithEnv } from '../support/processes.ts';
import { AnalysisRepo, ROOT, readRecords, removeDir, runCli, scratchDir } from '../support/workspace.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Leaves a process behind in the way the config's mode says, then exits 0 at once. */
const ESCAPE = `#!/usr/bin/env bash
set -u
mode=$(node -e 'process.stdout.write(String(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).mode))' "$CAAS_CONFIG")
case "$mode" in
  setsid) setsid bash -c 'sleep 120' </dev/null >/dev/null 2>&1 & ;;
  double-fork) ( ( sleep 120 </dev/null >/dev/null 2>&1 & ) & ) ;;
  holds-stdout) sleep 120 & ;;
  long) sleep 120 ;;
esac
echo "left a $mode process behind"
echo '{}' > "$CAAS_OUTPUT_DIR/done.json"
`;

/** Every process an analysis starts ends with its job, however it tries to get away. */
describe('processes an analysis leaves behind', () => {
  let base: string;
  let repo: AnalysisRepo;
  let home: string;
  /** Set in the analysis' environment by its blueprint: how the test finds the job's processes. */
  const tag = randomBytes(8).toString('hex');
  const env = () => ({ CAAS_ANALYSES: repo.dir, CAAS_STATUS_INTERVAL_MS: '500' });
  const job = (mode: string) =>
    JSON.stringify({
      analysis: 'escape',
      inputs: [{ asset_id: mode, name: mode, location: `file://${base}/data/`, files: [{ url: `file://${base}/data/in.txt` }] }],
      parameters: { mode },
    });

  beforeAll(() => {
    base = scratchDir('escape');
    home = path.join(base, 'home');
    repo = new AnalysisRepo(base, []);
    repo.addScriptAnalysis('escape', ESCAPE, { environment: { set: { CAAS_TEST_TAG: tag } } });
    mkdirSync(path.join(base, 'data'), { recursive: true });
    writeFileSync(path.join(base, 'data', 'in.txt'), 'x\n');
  });
  afterAll(() => removeDir(base));

  it('setsid, double-fork and stdout-holding children: the job ends with its main process and none of them outlives it by 1 s', {
    timeout: 180_000,
  }, async () => {
    const jobs = path.join(base, 'escapes.jsonl');
    writeFileSync(jobs, `${['setsid', 'double-fork', 'holds-stdout'].map(job).join('\n')}\n`);
    const run = await runCli(['--home', home, 'run', jobs, '--execute', '--concurrency', '3'], { env: env() });
    expect(run.code).toBe(0);
    await sleep(1000);
    expect(processesWithEnv('CAAS_TEST_TAG', tag)).toEqual([]);
    const records = await readRecords(home);
    expect(records.map((r) => r.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    // Not held until the 120 s children end: the main process' exit plus a short grace.
    for (const record of records) expect(record.duration_s!).toBeLessThan(60);
    for (const record of records) {
      const certificate = readFileSync(path.join(home, 'buckets', record.job!.logs.replace(/^file:\/\//, ''), 'certificate.txt'), 'utf8');
      expect(certificate).toMatch(/ended [1-9]\d* process\(es\) the analysis left running/);
    }
  });

  it('an agent killed with SIGKILL takes its analysis with it; its runner records the job as failed', { timeout: 180_000 }, async () => {
    const jobs = path.join(base, 'long.jsonl');
    writeFileSync(jobs, `${job('long')}\n`);
    const runner: ChildProcess = spawn(process.execPath, [path.join(ROOT, 'bin/caas.js'), '--home', home, 'run', jobs, '--execute'], {
      env: { ...process.env, NO_COLOR: '1', ...env() },
      stdio: 'ignore',
    });
    const exited = new Promise<number | null>((resolve) => runner.once('close', resolve));
    let analysis: number[] = [];
    for (let i = 0; i < 600 && analysis.length < 2; i++) {
      await sleep(100);
      analysis = processesWithEnv('CAAS_TEST_TAG', tag);
    }
    // bash run.sh and its sleep
    expect(analysis.length).toBeGreaterThanOrEqual(2);
    const agent = agentOf('CAAS_TEST_TAG', tag)!;
    process.kill(agent, 'SIGKILL');
    for (let i = 0; i < 50 && processesWithEnv('CAAS_TEST_TAG', tag).length > 0; i++) await sleep(100);
    expect(processesWithEnv('CAAS_TEST_TAG', tag)).toEqual([]);
    expect(await exited).toBe(1);
    const record = (await readRecords(home)).find((r) => r.parameters.mode === 'long');
    expect(record?.status).toBe('failed');
    expect(record?.reason).toMatch(/agent killed by SIGKILL/);
  });
});
