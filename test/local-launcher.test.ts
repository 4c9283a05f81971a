import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AnalysisRepo, mockJob, ROOT, readRecords, removeDir, runCli, scratchDir, sessionFile } from './support/workspace.ts';

const ENV_ECHO = `import { defineAnalysis } from 'caas/analysis';
import { z } from 'zod';
import blueprint from '../mock-wait/blueprint.json' with { type: 'json' };

export default defineAnalysis({
  name: 'env-echo',
  version: '1.0.0',
  parameters: z.object({}).strict(),
  command: ['bash', '-c', 'printf "%s" "$NODE_EXTRA_CA_CERTS" > "$CAAS_OUTPUT_DIR/ca.txt"'],
  blueprint: { ...blueprint, bucket: 'env-echo' },
});
`;

describe('local compute: one fresh process per job', () => {
  let base: string;
  let repo: AnalysisRepo;
  let data: string;
  let tmp: string;

  beforeAll(() => {
    base = scratchDir('local-launcher');
    repo = new AnalysisRepo(base);
    mkdirSync(path.join(repo.dir, 'env-echo'), { recursive: true });
    repo.write('env-echo/index.ts', ENV_ECHO);
    repo.commit('env-echo');
    data = sessionFile(base, '{"units": []}\n');
    tmp = path.join(base, 'tmp');
    mkdirSync(tmp);
  });
  afterAll(() => removeDir(base));

  it('runs 8 jobs at --concurrency 4 each in its own agent process, and leaves no process or job folder behind', async () => {
    const home = path.join(base, 'home-concurrent');
    const jobs = path.join(base, 'concurrent.jsonl');
    writeFileSync(jobs, `${Array.from({ length: 8 }, (_, i) => mockJob(`c${i}`, { wait: 0.2 }, data)).join('\n')}\n`);

    const run = await runCli(['--home', home, 'run', jobs, '--execute', '--concurrency', '4'], {
      env: { CAAS_ANALYSES: repo.dir, TMPDIR: tmp },
    });

    expect(run.code, run.stderr).toBe(0);
    const records = await readRecords(home);
    expect(records.map((r) => r.status)).toEqual(Array(8).fill('succeeded'));
    const instances = new Set(records.map((r) => r.compute.instance));
    expect(instances.size).toBe(8);
    // The agent started ahead for a ninth job was ended and its folder removed with the rest.
    expect(readdirSync(tmp).filter((name) => name.startsWith('caas-job-'))).toEqual([]);
  });

  it('--compute inline runs the agent in the runner and the analysis in its own process; the identities are the same as local', async () => {
    const home = path.join(base, 'home-inline');
    const jobs = path.join(base, 'inline.jsonl');
    writeFileSync(jobs, `${Array.from({ length: 4 }, (_, i) => mockJob(`i${i}`, { wait: 0 }, data)).join('\n')}\n`);

    const inline = await runCli(['--home', home, 'run', jobs, '--execute', '--concurrency', '2', '--compute', 'inline'], {
      env: { CAAS_ANALYSES: repo.dir, TMPDIR: tmp },
    });

    expect(inline.code, inline.stderr).toBe(0);
    const records = await readRecords(home);
    expect(records.map((r) => [r.status, r.compute.backend])).toEqual(Array(4).fill(['succeeded', 'inline']));
    expect(new Set(records.map((r) => r.compute.instance)).size).toBe(1);
    expect(readdirSync(tmp).filter((name) => name.startsWith('caas-job-'))).toEqual([]);
    // Where a job ran is not part of what it is: local compute finds every identity done.
    const local = await runCli(['--home', home, 'run', jobs, '--execute'], { env: { CAAS_ANALYSES: repo.dir } });
    expect(local.stdout + local.stderr).toMatch(/plan: 0 to run, 4 skipped/);
  });

  it('hands the host CA bundle to the analysis even when its agent started without one', async () => {
    const home = path.join(base, 'home-ca');
    const bundle = path.join(base, 'extra-ca.pem');
    writeFileSync(bundle, '');
    const jobs = path.join(base, 'ca.jsonl');
    writeFileSync(
      jobs,
      `${JSON.stringify({ analysis: 'env-echo', inputs: [{ asset_id: 'a', name: 'a', location: `file://${path.dirname(data)}/`, files: [{ url: `file://${data}` }] }] })}\n`,
    );

    const run = await runCli(['--home', home, 'run', jobs, '--execute'], { env: { CAAS_ANALYSES: repo.dir, NODE_EXTRA_CA_CERTS: bundle } });

    expect(run.code, run.stderr).toBe(0);
    const [record] = await readRecords(home);
    const results = record!.job!.results.replace(/^file:\/\/env-echo\//, '');
    expect(readFileSync(path.join(home, 'buckets/env-echo', results, 'ca.txt'), 'utf8')).toBe(bundle);
  });

  it('an agent refuses code other than the identity names: another commit, or changes the identity does not record', () => {
    const bucketRoot = path.join(base, 'agent-store');
    const config = path.join(bucketRoot, 'mock-wait/caas/configs/c.json');
    mkdirSync(path.dirname(config), { recursive: true });
    writeFileSync(config, '{}\n');
    const agent = (timestamp: string, commit: string) => {
      const spec = {
        store: `file://${bucketRoot}`,
        bucket: 'mock-wait',
        group: 'caas',
        timestamp,
        dataname: `file://${data}`,
        inputs: [`file://${data}`],
        code: { commit },
        configname: 'c.json',
        command: ['true'],
        analysis_dir: path.join(repo.dir, 'mock-wait'),
        instance: 'test',
        max_runtime_s: 60,
      };
      const ran = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'wrapper/agent-main.ts')], {
        cwd: mkdtempSync(path.join(tmp, 'agent-')),
        env: { ...process.env, CAAS_AGENT_SPEC: JSON.stringify(spec) },
        encoding: 'utf8',
      });
      const end = readFileSync(path.join(bucketRoot, `mock-wait/caas/results/job__mock-wait_${timestamp}/process_results/end.txt`), 'utf8');
      return { status: ran.status, end };
    };

    const other = agent('other-commit', 'b'.repeat(40));
    expect(other.status).toBe(1);
    expect(other.end).toMatch(/^FAILED\n.*is at commit [0-9a-f]{40}, but the job's identity records b{40}/);

    writeFileSync(path.join(repo.dir, 'mock-wait/scratch.txt'), 'uncommitted\n');
    try {
      const dirty = agent('dirty', repo.head());
      expect(dirty.status).toBe(1);
      expect(dirty.end).toMatch(/uncommitted changes that the job's identity does not record/);
    } finally {
      rmSync(path.join(repo.dir, 'mock-wait/scratch.txt'));
    }
    expect(agent('clean', repo.head())).toEqual({ status: 0, end: expect.stringMatching(/^SUCCESS\n/) });
  });

  it('an agent started by hand checks its spec against the schema', () => {
    const started = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'wrapper/agent-main.ts')], {
      cwd: base,
      env: { ...process.env, CAAS_AGENT_SPEC: JSON.stringify({ bucket: 7 }) },
      encoding: 'utf8',
    });

    expect(started.status).toBe(2);
    expect(started.stderr).toMatch(/caas agent: invalid spec: .*bucket/);
  });
});
