import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MetadataRecord } from '../models/record.ts';
import { canonicalJson, sha256Hex } from '../wrapper/identity.ts';
import { AnalysisRepo, mockJob, ROOT, readRecords, removeDir, runCli, scratchDir, sessionFile, treeDigest } from './support/workspace.ts';

describe('caas run on the embedded defaults', () => {
  let base: string;
  let repo: AnalysisRepo;
  let data: string;
  const env = () => ({ CAAS_ANALYSES: repo.dir, CAAS_STATUS_INTERVAL_MS: '200' });
  const caas = (home: string, ...args: string[]) => runCli(['--home', home, ...args], { env: env() });

  beforeAll(() => {
    base = scratchDir('run');
    repo = new AnalysisRepo(base);
    data = sessionFile(base, '{"units": []}\n');
  });
  afterAll(() => removeDir(base));

  function jobsFile(name: string, lines: string[]): string {
    const file = path.join(base, name);
    writeFileSync(file, `${lines.join('\n')}\n`);
    return file;
  }

  /**
   * home-basic after its two jobs ran once: the first test makes it, and the tests that read it make
   * it themselves when they run alone (-t).
   */
  let basic: Promise<{ home: string; jobs: string; first: Awaited<ReturnType<typeof caas>> }> | undefined;
  const basicHome = () =>
    (basic ??= (async () => {
      const home = path.join(base, 'home-basic');
      const jobs = jobsFile('basic.jsonl', [mockJob('a1', { wait: 0 }, data), mockJob('a2', { wait: 0.1 }, data)]);
      return { home, jobs, first: await caas(home, 'run', jobs, '--execute') };
    })());

  it('runs new jobs, records them, and skips every one of them the second time', async () => {
    const { home, jobs, first } = await basicHome();
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/plan: 2 to run, 0 skipped/);
    expect(first.stdout).toMatch(/done: 2 succeeded, 0 failed/);
    const second = await caas(home, 'run', jobs, '--execute');
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/plan: 0 to run, 2 skipped/);
    expect(second.stdout.match(/^SKIP /gm)).toHaveLength(2);
    const stored = await readRecords(home);
    expect(stored.map((r) => r.status)).toEqual(['succeeded', 'succeeded']);
  });

  it('stores records whose pre-image hashes (RFC 8785 + sha256) to their identity', async () => {
    const stored = await readRecords((await basicHome()).home);
    expect(stored.length).toBeGreaterThan(0);
    for (const record of stored) {
      MetadataRecord.parse(record);
      expect(sha256Hex(canonicalJson(record.preimage))).toBe(record._id);
      expect(record.code.commit).toBe(repo.head());
      expect(record.code.url).toBe('https://example.org/lab/analyses.git');
      expect(record.outputs?.output_parameters).toEqual({ waited_s: record.parameters.wait });
      expect(record.outputs?.manifest.every((m) => /^[0-9a-f]{64}$/.test(m.sha256))).toBe(true);
    }
  });

  it('follows the NeuroCAAS bucket contract in the analysis bucket', async () => {
    const { home } = await basicHome();
    const [record] = await readRecords(home);
    const { bucket, group, timestamp } = record!.job!;
    const bucketDir = path.join(home, 'buckets', bucket);
    const job = `${group}/results/job__${bucket}_${timestamp}`;
    const submit = JSON.parse(readFileSync(path.join(bucketDir, `${group}/submissions/${timestamp}_submit.json`), 'utf8'));
    expect(Object.keys(submit).sort()).toEqual(['configname', 'dataname', 'timestamp']);
    expect(JSON.parse(readFileSync(path.join(bucketDir, group, 'configs', submit.configname), 'utf8'))).toEqual(record!.parameters);
    const status = JSON.parse(readFileSync(path.join(bucketDir, job, 'logs', 'DATASET_NAME-session.json_STATUS.json'), 'utf8'));
    expect(status).toMatchObject({ status: 'SUCCESS', exit_code: 0 });
    expect(status.job_start).toBeTruthy();
    expect(status.job_finish).toBeTruthy();
    for (const file of [
      'logs/certificate.txt',
      'logs/stdout.txt',
      'logs/stderr.txt',
      'process_results/waited.json',
      `process_results/${submit.configname}`,
    ]) {
      expect(() => readFileSync(path.join(bucketDir, job, file))).not.toThrow();
    }
    expect(readFileSync(path.join(bucketDir, job, 'process_results/end.txt'), 'utf8')).toMatch(/^SUCCESS/);
    expect(record!.job!.results).toBe(`file://${bucket}/${job}/process_results/`);
  });

  it('writes nothing in a dry run: the workspace stays byte-identical', async () => {
    const { home } = await basicHome();
    const jobs = jobsFile('dry.jsonl', [mockJob('a1', { wait: 0 }, data), mockJob('new', { wait: 0 }, data)]);
    const before = treeDigest(home);
    const dry = await caas(home, 'run', jobs);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/plan: 1 to run, 1 skipped/);
    expect(dry.stdout).toMatch(/dry run: nothing was written/);
    expect(treeDigest(home)).toBe(before);
    const fresh = path.join(base, 'home-never-used');
    await caas(fresh, 'run', jobs);
    expect(() => readFileSync(fresh)).toThrow(/ENOENT/);
  });

  it('reports an invalid job with file:line and the field path, runs the rest, and exits 2', async () => {
    const home = path.join(base, 'home-invalid');
    const jobs = jobsFile('invalid.jsonl', [
      mockJob('ok', { wait: 0 }, data),
      mockJob('bad-type', { wait: 'soon' }, data),
      mockJob('unknown-key', { wait: 0, colour: 'red' }, data),
      '{"analysis": "mock-wait", "inputs": [',
      JSON.stringify({ analysis: 'no-such-analysis', inputs: [{ asset_id: 'x', name: 'x', location: 'file:///x/' }] }),
    ]);
    const result = await caas(home, 'run', jobs, '--execute');
    expect(result.code).toBe(2);
    expect(result.stdout).toContain(`${jobs}:2: parameters.wait:`);
    expect(result.stdout).toMatch(new RegExp(`${jobs}:3: parameters: Unrecognized key.*colour`));
    expect(result.stdout).toContain(`${jobs}:4: invalid JSON`);
    expect(result.stdout).toMatch(new RegExp(`${jobs}:5: analysis: unknown analysis "no-such-analysis"`));
    expect(result.stdout).toMatch(/done: 1 succeeded/);
  });

  it('records a failed analysis with its exit code and stderr tail, and retries it as attempt 2', async () => {
    const home = path.join(base, 'home-fail');
    const jobs = jobsFile('fail.jsonl', [mockJob('f', { wait: 0, fail: true }, data)]);
    const first = await caas(home, 'run', jobs, '--execute');
    expect(first.code).toBe(1);
    expect(first.stdout).toMatch(/FAILED .*exit code 3/);
    let [record] = await readRecords(home);
    expect(record).toMatchObject({ status: 'failed', exit_code: 3 });
    expect(record!.stderr_tail).toContain('mock failure requested');
    const second = await caas(home, 'run', jobs, '--execute');
    expect(second.stdout).toMatch(/RUN .*retry: attempt 1 failed/);
    [record] = await readRecords(home);
    expect(record!.attempts.map((a) => [a.n, a.status])).toEqual([
      [1, 'failed'],
      [2, 'failed'],
    ]);
    expect(record!.attempts[0]!.results).not.toBe(record!.attempts[1]!.results);
  });

  it('refuses to compute from an input that changed since it was dispatched (its etag is in the identity)', async () => {
    const home = path.join(base, 'home-changed');
    const file = path.join(base, 'data', 'changing.json');
    writeFileSync(file, '{"v": 1}\n');
    const etag = createHash('md5').update(readFileSync(file)).digest('hex');
    const job = JSON.parse(mockJob('c', { wait: 0 }, file));
    job.inputs[0].files[0] = { ...job.inputs[0].files[0], etag, size: 9 };
    const jobs = jobsFile('changed.jsonl', [JSON.stringify(job)]);
    writeFileSync(file, '{"v": 2}\n');
    const result = await caas(home, 'run', jobs, '--execute');
    expect(result.code).toBe(1);
    const [record] = await readRecords(home);
    expect(record!.status).toBe('failed');
    expect(record!.reason).toMatch(/input file:\/\/.*changing\.json changed since it was dispatched: etag .*; dispatch again/);
  });

  it.each(['local', 'inline'])(
    'on SIGTERM (--compute %s), cancels the running analysis, records it as failed with end.txt, and starts nothing new',
    async (compute) => {
      const home = path.join(base, `home-sigterm-${compute}`);
      const jobs = jobsFile(`sigterm-${compute}.jsonl`, [mockJob('s1', { wait: 0 }, data), mockJob('s2', { wait: 0 }, data)]);
      // The analysis waits for a file that never comes: only the cancel can end this job.
      const child = spawn(
        process.execPath,
        [path.join(ROOT, 'bin/caas.js'), '--home', home, 'run', jobs, '--execute', '--concurrency', '1', '--compute', compute],
        {
          env: { ...process.env, ...env(), CAAS_MOCK_GATE_FILE: path.join(home, 'never') },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      const bucket = path.join(home, 'buckets', 'mock-wait', 'caas', 'results');
      let running = false;
      for (let i = 0; i < 600 && !running; i++) {
        const folders = existsSync(bucket) ? readdirSync(bucket) : [];
        const status = folders.length ? path.join(bucket, folders[0]!, 'logs', 'DATASET_NAME-session.json_STATUS.json') : '';
        running = !!status && existsSync(status) && readFileSync(status, 'utf8').includes('IN PROGRESS');
        if (!running) await new Promise((r) => setTimeout(r, 100));
      }
      expect(running).toBe(true);
      child.kill('SIGTERM');
      const code = await new Promise((resolve) => child.on('close', resolve));
      expect(code).toBe(1);
      const stored = await readRecords(home);
      expect(stored).toHaveLength(1);
      expect(stored[0]!.status).toBe('failed');
      expect(stored[0]!.reason).toMatch(/runner interrupted \(SIGTERM\).*cancelled/);
      const results = stored[0]!.job!.results.replace(/^file:\/\//, '');
      expect(readFileSync(path.join(home, 'buckets', results, 'end.txt'), 'utf8')).toMatch(/^FAILED/);
    },
  );

  it('refuses --execute from a dirty analysis folder and names the dirty files; --allow-dirty changes the identity', async () => {
    const home = path.join(base, 'home-dirty');
    const jobs = jobsFile('dirty.jsonl', [mockJob('d', { wait: 0 }, data)]);
    const clean = await caas(home, 'run', jobs, '--json');
    const cleanId = JSON.parse(clean.stdout.split('\n')[0]!).identity;
    repo.write('mock-wait/NOTES.md', 'work in progress\n');
    try {
      const refused = await caas(home, 'run', jobs, '--execute');
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/uncommitted changes: mock-wait\/NOTES\.md/);
      expect(() => readFileSync(path.join(home, 'metadata.sqlite'))).toThrow(/ENOENT/);
      const dry = await caas(home, 'run', jobs);
      expect(dry.code).toBe(0);
      expect(dry.stderr).toMatch(/warning: .*NOTES\.md/);
      const allowed = await caas(home, 'run', jobs, '--execute', '--allow-dirty', '--json');
      expect(allowed.code).toBe(0);
      const [record] = await readRecords(home);
      expect(record!.code.dirty).toMatch(/^[0-9a-f]{64}$/);
      expect(record!._id).not.toBe(cleanId);
    } finally {
      removeDir(path.join(repo.dir, 'mock-wait/NOTES.md'));
    }
  });

  it('refuses an analysis folder that no commit describes (ignored, untracked) and says how to fix it', async () => {
    // .test-tmp/ is ignored by the caas repository around it: an analysis there has no commit of its own.
    const loose = path.join(base, 'loose');
    cpSync(path.join(repo.dir, 'mock-wait'), path.join(loose, 'mock-wait'), { recursive: true });
    const jobs = jobsFile('loose.jsonl', [mockJob('l', { wait: 0 }, data)]);
    const result = await runCli(['--home', path.join(base, 'home-loose'), 'run', jobs], { env: { CAAS_ANALYSES: loose } });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/is not tracked by the git repository .* commit the analysis folder|git add/i);
  });

  it('explains how to fix an analysis that is outside any git repository', async () => {
    const outside = mkdtempSync(path.join(tmpdir(), 'caas-nogit-'));
    try {
      cpSync(path.join(repo.dir, 'mock-wait'), path.join(outside, 'mock-wait'), { recursive: true });
      // An analysis repository of its own: code and a package.json; zod and caas/analysis come from caas.
      writeFileSync(path.join(outside, 'package.json'), '{"type": "module"}\n');
      const jobs = jobsFile('nogit.jsonl', [mockJob('n', { wait: 0 }, data)]);
      const result = await runCli(['--home', path.join(base, 'home-nogit'), 'run', jobs], { env: { CAAS_ANALYSES: outside } });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/is not inside a git repository.*git init && git add -A && git commit/);
    } finally {
      removeDir(outside);
    }
  });
});
