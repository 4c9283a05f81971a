import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ObjectStore, openStore } from '../backends/storage/index.ts';
import { s3Env, startS3rver } from '../fixtures/s3rver.ts';
import { folderKeys } from '../wrapper/submission.ts';
import { AnalysisRepo, ROOT, removeDir, runCli, scratchDir } from './support/workspace.ts';

const BUCKET = 'mock-wait';
const CLI = path.join(ROOT, 'bin/caas.js');

interface Backend {
  /** Global flags that select the store. */
  flags: string[];
  env: Record<string, string>;
  open(home: string): Promise<ObjectStore>;
  stop(): Promise<void>;
}

const backends: Record<string, () => Promise<Backend>> = {
  'file://': async () => ({
    flags: [],
    env: {},
    open: (home) => openStore('file:', { home }),
    stop: async () => {},
  }),
  s3rver: async () => {
    const server = await startS3rver();
    return {
      flags: ['--store', 's3://', '--s3-endpoint', server.endpoint],
      env: s3Env(server.endpoint),
      open: (home) => openStore(`s3://?endpoint=${server.endpoint}`, { home }),
      stop: () => server.stop(),
    };
  },
};

/** Starts `caas watch` as a long-running process and resolves once it is looking at the bucket. */
function startWatcher(args: string[], env: Record<string, string>): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`caas watch did not start:\n${output}`)), 30_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('watching ')) {
        clearTimeout(timer);
        resolve({ child, output: () => output });
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.on('exit', (code) => reject(new Error(`caas watch exited with ${code}:\n${output}`)));
  });
}

describe.concurrent.each(Object.keys(backends))('submission mode end to end on %s', (name) => {
  describe.sequential('with a watcher running', () => {
    let base: string;
    let home: string;
    let backend: Backend;
    let store: ObjectStore;
    let watcher: { child: ChildProcess; output: () => string };
    let env: Record<string, string>;
    let markerFile: string;
    const local = (file: string) => path.join(base, 'local', file);
    const runs = () => (existsSync(markerFile) ? readFileSync(markerFile, 'utf8').split('\n').filter(Boolean).length : 0);
    const caas = (...args: string[]) => runCli(['--home', home, ...backend.flags, ...args], { env });
    const submit = (timestamp: string, config: string) =>
      caas(
        'submit',
        '--bucket',
        BUCKET,
        '--group',
        'demo',
        '--data',
        local('d1.json'),
        '--config',
        local(config),
        '--timestamp',
        timestamp,
        '--follow',
        '--interval',
        '0.2',
      );
    const text = async (key: string) => (await store.get(BUCKET, key).catch(() => undefined))?.toString('utf8');
    /** Each submission is made once, by the first test that needs it, so a test run alone (-t) makes the ones it reads. */
    const submitted = new Map<string, ReturnType<typeof submit>>();
    const submitOnce = (timestamp: string, config: string) => {
      if (!submitted.has(timestamp)) submitted.set(timestamp, submit(timestamp, config));
      return submitted.get(timestamp)!;
    };

    beforeAll(async () => {
      base = scratchDir(`submission-e2e-${name.replace(/\W/g, '')}`);
      home = path.join(base, 'home');
      const repo = new AnalysisRepo(base);
      markerFile = path.join(base, 'runs.txt');
      backend = await backends[name]!();
      env = {
        ...backend.env,
        // The AWS SDK warns about Node 20 on stderr; these tests want stderr for caas's own messages.
        NODE_NO_WARNINGS: '1',
        CAAS_ANALYSES: repo.dir,
        CAAS_MOCK_MARKER_FILE: markerFile,
        CAAS_STATUS_INTERVAL_MS: '200',
      };
      const files: Record<string, unknown> = {
        'd1.json': { units: [1, 2, 3] },
        'ok.json': { wait: 0.3, marker: 'ran' },
        'fail.json': { wait: 0, fail: true },
        'bad.json': { wait: 'soon' },
      };
      for (const [file, body] of Object.entries(files)) {
        const target = local(file);
        (await import('node:fs')).mkdirSync(path.dirname(target), { recursive: true });
        writeFileSync(target, `${JSON.stringify(body)}\n`);
      }
      store = await backend.open(home);
      // Deployed with the analysis: a watcher makes a missing folder bucket, never a missing S3 bucket.
      await store.createBucket(BUCKET);
      watcher = await startWatcher(['--home', home, ...backend.flags, 'watch', '--bucket', BUCKET, '--interval', '0.3'], env);
    });
    afterAll(async () => {
      if (watcher?.child.exitCode === null) {
        const exited = new Promise((resolve) => watcher.child.once('exit', resolve));
        watcher.child.kill('SIGKILL');
        await exited;
      }
      await store?.close();
      await backend?.stop();
      removeDir(base);
    });

    it('a valid submission produces results and end.txt; submit --follow exits 0 and says where the results are', async () => {
      const result = await submitOnce('e1', 'ok.json');
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/job folder \S+\/demo\/results\/job__mock-wait_e1\/ appeared/);
      expect(result.stdout).toMatch(/running "bash"/);
      expect(result.stdout).toMatch(/status d1\.json: SUCCESS/);
      expect(result.stdout).toMatch(/succeeded: results at (s3|file):\/\/mock-wait\/demo\/results\/job__mock-wait_e1\/process_results\//);
      const folder = folderKeys(BUCKET, 'demo', 'e1');
      expect(await text(folder.end)).toMatch(/^SUCCESS\n/);
      expect(JSON.parse((await text(`${folder.process}waited.json`))!).waited_s).toBe(0.3);
      // The copy is of the config as validated (defaults applied): what the job really ran with.
      expect(JSON.parse((await text(`${folder.process}ok.json`))!)).toEqual({ wait: 0.3, fail: false, marker: 'ran' });
      expect(runs()).toBe(1);
    });

    it('the same submission again (new timestamp) is served from the record without running the analysis', async () => {
      await submitOnce('e1', 'ok.json');
      const result = await submitOnce('e2', 'ok.json');
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/already there \(same content\)/);
      expect(result.stdout).toMatch(/identical data and config: answered from record [0-9a-f]{64}/);
      expect(result.stdout).toMatch(/succeeded: results at (s3|file):\/\/mock-wait\/demo\/results\/job__mock-wait_e1\/process_results\//);
      expect(await text(folderKeys(BUCKET, 'demo', 'e2').link)).toMatch(/job__mock-wait_e1/);
      expect(runs()).toBe(1);
    });

    it('submit --follow exits 1 when the analysis fails', async () => {
      const result = await submitOnce('e3', 'fail.json');
      expect(result.code).toBe(1);
      expect(result.stdout).toMatch(/status d1\.json: FAILED/);
      expect(result.stdout).toMatch(/failed: exit code 3/);
    });

    it('submit --follow exits 2 when the submission is rejected, and nothing runs', async () => {
      const before = runs();
      const result = await submitOnce('e4', 'bad.json');
      expect(result.code).toBe(2);
      expect(result.stdout).toMatch(/rejected: config demo\/configs\/bad\.json is not valid for mock-wait: wait: .*expected number/);
      expect(await text(folderKeys(BUCKET, 'demo', 'e4').end)).toMatch(/^REJECTED\n/);
      expect(runs()).toBe(before);
    });

    it('caas logs --follow on a results URL prints the job and exits with its outcome', async () => {
      await submitOnce('e3', 'fail.json');
      const followed = await caas(
        'logs',
        `${name === 's3rver' ? 's3' : 'file'}://${BUCKET}/demo/results/job__mock-wait_e3/logs/`,
        '--follow',
      );
      expect(followed.code).toBe(1);
      expect(followed.stdout).toMatch(/analysis ended after .* exit code 3/);
      expect(followed.stdout).toMatch(/status d1\.json: FAILED/);
    });

    it('the watcher process keeps running until it is stopped, and logged every answer', async () => {
      for (const [timestamp, config] of [
        ['e1', 'ok.json'],
        ['e2', 'ok.json'],
        ['e3', 'fail.json'],
        ['e4', 'bad.json'],
      ] as const) {
        await submitOnce(timestamp, config);
      }
      expect(watcher.child.exitCode).toBeNull();
      const exited = new Promise<number | null>((resolve) => watcher.child.once('exit', resolve));
      watcher.child.kill('SIGTERM');
      expect(await exited).toBe(0);
      const output = watcher.output();
      expect(output).toMatch(/e1_submit\.json: succeeded/);
      expect(output).toMatch(/e2_submit\.json: answered/);
      expect(output).toMatch(/e3_submit\.json: failed/);
      expect(output).toMatch(/e4_submit\.json: rejected/);
    });
  });
});
