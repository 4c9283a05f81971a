import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ObjectLocator, openStore } from '../backends/storage/index.ts';
import { jobFolder } from '../models/bucket-contract.ts';
import { runAgent } from '../wrapper/agent.ts';
import { agentSpecFor } from '../wrapper/execute.ts';
import { JobPreparer } from '../wrapper/prepare.ts';
import { AnalysisRepo, git, ROOT, removeDir, runCli, scratchDir } from './support/workspace.ts';

/** No false skips: what a folder input holds is in the identity, and uncommitted code is never silently "done". */
describe('an input given as a folder (no file list)', () => {
  let base: string;
  let repo: AnalysisRepo;
  let home: string;
  let folder: string;
  let jobs: string;
  const caas = (...args: string[]) => runCli(['--home', home, ...args], { env: { CAAS_ANALYSES: repo.dir } });
  const identityOf = async () => {
    const planned = await caas('run', jobs, '--json');
    const line = planned.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { identity?: string; action?: string })
      .find((l) => l.identity);
    return line!;
  };

  beforeAll(() => {
    base = scratchDir('folder-inputs');
    repo = new AnalysisRepo(base);
    home = path.join(base, 'home');
    folder = path.join(base, 'session-1');
    mkdirSync(folder, { recursive: true });
    writeFileSync(path.join(folder, 'a.json'), '{"a": 1}\n');
    writeFileSync(path.join(folder, 'b.json'), '{"b": 2}\n');
    jobs = path.join(base, 'jobs.jsonl');
    const job = { analysis: 'mock-wait', inputs: [{ asset_id: 's1', name: 's1', location: `file://${folder}/` }], parameters: { wait: 0 } };
    writeFileSync(jobs, `${JSON.stringify(job)}\n`);
  });
  afterAll(() => removeDir(base));

  it('enters the identity with the files it holds: new data in the same folder is a new job, and caas why names the input', {
    timeout: 120_000,
  }, async () => {
    const ran = await caas('run', jobs, '--execute');
    expect(ran.code).toBe(0);
    const before = await identityOf();
    expect(before.action).toBe('SKIP');

    writeFileSync(path.join(folder, 'c.json'), '{"c": 3}\n');
    const added = await identityOf();
    expect(added.action).toBe('RUN');
    expect(added.identity).not.toBe(before.identity);
    const why = await caas('why', `${jobs}:1`);
    expect(why.stdout).toMatch(/inputs\[0\]\.listing\[2\]: \(absent\) \(recorded\) → .*session-1\/c\.json \(9 B\) \(this job\)/);

    writeFileSync(path.join(folder, 'c.json'), '{"c": 4}\n');
    const changed = await identityOf();
    expect(changed.identity).not.toBe(added.identity);
  });

  it('the agent stages exactly what was listed: a file that appeared after planning fails the job, naming it', {
    timeout: 60_000,
  }, async () => {
    const bucketRoot = path.join(base, 'agent-home');
    const store = await openStore('file:', { home: bucketRoot });
    await store.createBucket('mock-wait');
    await store.put('mock-wait', 'caas/configs/c.json', '{"wait": 0}');
    await store.put('mock-wait', 'caas/inputs/s1/a.json', 'a');
    const url = `file://mock-wait/caas/inputs/s1/`;
    // The listing rides in the job document (logs/job.json), as the runner writes it.
    const document = { folder_listings: { [url]: [{ url: `${url}a.json`, etag: '0cc175b9c0f1b6a831c399e269772661', size: 1 }] } };
    await store.put('mock-wait', jobFolder('mock-wait', 'caas', 'folder-check').jobDocument, JSON.stringify(document));
    await store.put('mock-wait', 'caas/inputs/s1/late.json', 'late');
    const work = path.join(base, 'agent-work');
    mkdirSync(work, { recursive: true });
    const code = await runAgent(
      {
        store: store.url,
        store_settings: {},
        bucket: 'mock-wait',
        group: 'caas',
        timestamp: 'folder-check',
        dataname: url,
        inputs: [url],
        input_checks: {},
        listed_folders: [url],
        configname: 'c.json',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: agent placeholder
        command: ['bash', '${analysis_dir}/run.sh'],
        analysis_dir: path.join(ROOT, 'analyses/mock-wait'),
        instance: 'test',
        max_runtime_s: 60,
        status_interval_ms: 500,
        log_limit_bytes: 1024 * 1024,
        environment: { set: {}, pass: [] },
      },
      work,
    );
    expect(code).toBe(1);
    const end = (await store.get('mock-wait', jobFolder('mock-wait', 'caas', 'folder-check').end)).toString();
    expect(end).toContain(`staging failed: input folder ${url}: ${url}late.json appeared after the job was planned`);
    await store.close();
  });

  it('keeps the listing out of the agent spec, which rides in EC2 UserData (16 KB): a folder of 2,000 files adds one URL to it', async () => {
    const big = path.join(base, 'session-big');
    mkdirSync(big, { recursive: true });
    for (let i = 0; i < 2000; i++) writeFileSync(path.join(big, `unit-${String(i).padStart(4, '0')}.json`), `${i}\n`);
    const store = await openStore('file:', { home: path.join(base, 'spec-home') });
    const inputs = new ObjectLocator(store, { home: path.join(base, 'spec-home') });
    const preparer = new JobPreparer({ storeScheme: store.scheme, allowDirty: true, roots: [repo.dir], inputs });
    const value = {
      analysis: 'mock-wait',
      inputs: [{ asset_id: 'big', name: 'big', location: `file://${big}/` }],
      parameters: { wait: 0 },
    };
    const prepared = await preparer.prepare({ where: 'big.jsonl:1', value });
    if (!prepared.ok) throw new Error(prepared.reason);
    expect(prepared.job.preimage.inputs[0]!.listing).toHaveLength(2000);
    const spec = agentSpecFor(prepared.job, { store, timestamp: 't', instance: 'test' });
    expect(spec.listed_folders).toEqual([`file://${big}/`]);
    expect(spec.input_checks).toEqual({});
    expect(JSON.stringify(spec).length).toBeLessThan(4000);
    await inputs.close();
    await store.close();
  });

  it('a file named without etag or size (hand-written, or an AIND dispatch model) gets them from the store: new data under the same name is a new job', {
    timeout: 120_000,
  }, async () => {
    const file = path.join(base, 'named.json');
    writeFileSync(file, '{"v": 1}\n');
    const named = path.join(base, 'named.jsonl');
    const job = {
      analysis: 'mock-wait',
      inputs: [{ asset_id: 'n', name: 'n', location: `file://${base}/`, files: [{ url: `file://${file}` }] }],
    };
    writeFileSync(named, `${JSON.stringify({ ...job, parameters: { wait: 0 } })}\n`);
    const first = await caas('run', named, '--execute');
    expect(first.code).toBe(0);
    expect((await caas('run', named)).stdout).toMatch(/plan: 0 to run, 1 skipped/);
    writeFileSync(file, '{"v": 2}\n');
    expect((await caas('run', named)).stdout).toMatch(/plan: 1 to run, 0 skipped/);
    const why = await caas('why', `${named}:1`);
    expect(why.stdout).toMatch(/inputs\[0\]\.files\[0\]\.etag: \S+ \(recorded\) → \S+ \(this job\)/);
    const gone = path.join(base, 'gone.jsonl');
    writeFileSync(gone, `${JSON.stringify({ ...job, inputs: [{ ...job.inputs[0], files: [{ url: `file://${base}/no-such.json` }] }] })}\n`);
    expect((await caas('run', gone)).stdout).toMatch(/INVALID .*inputs\.0\.files\.0\.url: file:\/\/\S+no-such\.json does not exist/);
  });

  it('an empty or missing folder is INVALID, never a job over no data', async () => {
    const empty = path.join(base, 'session-empty');
    mkdirSync(empty, { recursive: true });
    const file = path.join(base, 'empty.jsonl');
    const job = (location: string) => JSON.stringify({ analysis: 'mock-wait', inputs: [{ asset_id: 'e', name: 'e', location }] });
    writeFileSync(file, `${job(`file://${empty}/`)}\n${job(`file://${base}/no-such-session/`)}\n`);
    const planned = await caas('run', file);
    expect(planned.code).toBe(2);
    const invalid = planned.stdout.split('\n').filter((line) => line.startsWith('INVALID'));
    expect(invalid).toHaveLength(2);
    for (const line of invalid) expect(line).toMatch(/inputs\.0\.location: the folder file:\/\/\S+ holds nothing \(missing or empty\)/);
  });

  it('a dirty analysis folder is reported even when every job is SKIP', { timeout: 60_000 }, async () => {
    writeFileSync(path.join(folder, 'c.json'), '{"c": 3}\n');
    await caas('run', jobs, '--execute');
    const script = path.join(repo.dir, 'mock-wait', 'run.sh');
    writeFileSync(script, `${readFileSync(script, 'utf8')}\n# an edit not yet committed\n`);
    try {
      const planned = await caas('run', jobs, '--execute');
      expect(planned.code).toBe(0);
      expect(planned.stdout).toMatch(/plan: 0 to run, 1 skipped/);
      expect(planned.stderr).toMatch(
        /analysis folder .*mock-wait has uncommitted changes: mock-wait\/run\.sh: no job of it is to run, each matched a record of the committed code; the changes are in no identity yet/,
      );
    } finally {
      git(repo.dir, 'checkout', '--', 'mock-wait/run.sh');
    }
  });
});
