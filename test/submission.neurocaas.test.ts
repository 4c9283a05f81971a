import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { type ObjectStore, openStore } from '../backends/storage/index.ts';
import { type S3rverHandle, s3Env, startS3rver } from '../fixtures/s3rver.ts';
import { folderKeys } from '../wrapper/submission.ts';
import { AnalysisRepo, type CliResult, readRecords, removeDir, runCli, scratchDir } from './support/workspace.ts';

const BUCKET = 'mock-wait';
/** What a NeuroCAAS client writes as a timestamp: a clock time and a free-text condition. */
const NEUROCAAS = '23:05:47.219155condition_0_2';
/** A submission of two datasets: one job each, in {folder}~1/ and {folder}~2/. */
const TWO_DATASETS = '23:05:48.000001condition_1_0';
/** What `caas submit --timestamp` is given, spaces and all. */
const SUBMITTED = '09:15:00.5 condition A';

interface Backend {
  flags: string[];
  env: Record<string, string>;
  open(home: string): Promise<ObjectStore>;
  stop(): Promise<void>;
}

const backends: Record<string, () => Promise<Backend>> = {
  'file://': async () => ({ flags: [], env: {}, open: (home) => openStore('file:', { home }), stop: async () => {} }),
  s3rver: async () => {
    const server: S3rverHandle = await startS3rver();
    return {
      flags: ['--store', 's3://', '--s3-endpoint', server.endpoint],
      env: s3Env(server.endpoint),
      open: (home) => openStore(`s3://?endpoint=${server.endpoint}`, { home }),
      stop: () => server.stop(),
    };
  },
};

/** The submit files a NeuroCAAS client would drop, by file name: hostile timestamps among them. */
const SUBMITS: Record<string, Record<string, unknown>> = {
  neurocaas: { dataname: 'demo/inputs/d1.json', configname: 'demo/configs/config.yaml', timestamp: NEUROCAAS },
  datasets: { dataname: ['demo/inputs/d1.json', 'demo/inputs/d2.json'], configname: 'demo/configs/other.yml', timestamp: TWO_DATASETS },
  badyaml: { dataname: 'demo/inputs/d1.json', configname: 'demo/configs/bad.yaml', timestamp: 'bad yaml' },
  dots: { dataname: 'demo/inputs/d1.json', configname: 'demo/configs/config.yaml', timestamp: '..' },
  slash: { dataname: 'demo/inputs/d1.json', configname: 'demo/configs/config.yaml', timestamp: 'a/b' },
  control: { dataname: 'demo/inputs/d1.json', configname: 'demo/configs/config.yaml', timestamp: 'a\u0001b' },
  tilde: { dataname: 'demo/inputs/d1.json', configname: 'demo/configs/config.yaml', timestamp: `${NEUROCAAS}~1` },
};

describe.concurrent.each(Object.keys(backends))('a NeuroCAAS client on %s: free-text timestamps and YAML configs', (name) => {
  describe.sequential('one watcher pass over what the client dropped', () => {
    let base: string;
    let home: string;
    let backend: Backend;
    let store: ObjectStore;
    let env: Record<string, string>;
    let watched: CliResult;
    let submitted: CliResult;
    let resultKeys: string[];
    const caas = (...args: string[]) => runCli(['--home', home, ...backend.flags, ...args], { env });
    const text = async (key: string) => (await store.get(BUCKET, key).catch(() => undefined))?.toString('utf8');

    beforeAll(async () => {
      base = scratchDir(`submission-neurocaas-${name.replace(/\W/g, '')}`);
      home = path.join(base, 'home');
      const repo = new AnalysisRepo(base);
      backend = await backends[name]!();
      env = { ...backend.env, NODE_NO_WARNINGS: '1', CAAS_ANALYSES: repo.dir, CAAS_STATUS_INTERVAL_MS: '200' };
      store = await backend.open(home);
      await store.createBucket(BUCKET);
      await store.put(BUCKET, 'demo/inputs/d1.json', '{"units": [1, 2, 3]}\n');
      await store.put(BUCKET, 'demo/inputs/d2.json', '{"units": [4]}\n');
      await store.put(BUCKET, 'demo/configs/config.yaml', '# as a NeuroCAAS analysis is configured\nwait: 0\nmarker: neurocaas\n');
      await store.put(BUCKET, 'demo/configs/other.yml', 'wait: 0.01\n');
      await store.put(BUCKET, 'demo/configs/bad.yaml', 'wait: 0\nlist: [1, 2\nmarker: x\n');
      for (const [file, body] of Object.entries(SUBMITS))
        await store.put(BUCKET, `demo/submissions/${file}_submit.json`, JSON.stringify(body));

      const local = path.join(base, 'local');
      mkdirSync(local, { recursive: true });
      writeFileSync(path.join(local, 'd3.json'), '{"units": []}\n');
      writeFileSync(path.join(local, 'lab.yaml'), 'wait: 0.02\n');
      submitted = await caas(
        'submit',
        '--bucket',
        BUCKET,
        '--group',
        'demo',
        '--data',
        path.join(local, 'd3.json'),
        '--config',
        path.join(local, 'lab.yaml'),
        '--timestamp',
        SUBMITTED,
      );

      watched = await caas('watch', '--bucket', BUCKET, '--once', '--compute', 'inline');
      resultKeys = [];
      for await (const info of store.list(BUCKET, 'demo/results/')) resultKeys.push(info.key);
    });
    afterAll(async () => {
      await store?.close();
      await backend?.stop();
      removeDir(base);
    });

    it('answers the NeuroCAAS timestamp in job__{bucket}_{timestamp}/ exactly, and nowhere else', async () => {
      expect(watched.code, watched.stderr).toBe(0);
      const folder = folderKeys(BUCKET, 'demo', NEUROCAAS);
      expect(folder.prefix).toBe(`demo/results/job__mock-wait_${NEUROCAAS}/`);
      expect(await text(folder.end)).toMatch(/^SUCCESS\n/);
      const mine = resultKeys.filter((key) => key.includes('condition_0_2'));
      expect(mine.every((key) => key.startsWith(folder.prefix))).toBe(true);
      expect(mine).toEqual(
        expect.arrayContaining([
          folder.marker,
          folder.certificate,
          `${folder.logs}DATASET_NAME-d1.json_STATUS.json`,
          `${folder.process}waited.json`,
          `${folder.process}config.yaml`,
          folder.end,
        ]),
      );
      const record = (await readRecords(home)).find((r) => r.job?.timestamp === NEUROCAAS);
      expect(record?.status).toBe('succeeded');
      expect(record?.job?.results).toBe(`${name === 's3rver' ? 's3' : 'file'}://${BUCKET}/${folder.process}`);
    });

    it('a YAML config is validated as its JSON equivalent; the copy in process_results is what the analysis got, as the record says', async () => {
      const folder = folderKeys(BUCKET, 'demo', NEUROCAAS);
      const record = (await readRecords(home)).find((r) => r.job?.timestamp === NEUROCAAS);
      // Defaults applied: the validated parameters, not the user's text.
      expect(record?.parameters).toEqual({ wait: 0, fail: false, marker: 'neurocaas' });
      const copy = (await text(`${folder.process}config.yaml`))!;
      // JSON text, which is YAML too: a NeuroCAAS analysis' YAML reader and a JSON reader get the same data.
      expect(JSON.parse(copy)).toEqual(record?.parameters);
      expect(parseYaml(copy)).toEqual(record?.parameters);
      expect(record?.query).toMatchObject({ source: 'submit', submit_key: 'demo/submissions/neurocaas_submit.json' });
    });

    it("a submission's datasets get {timestamp}~1/ and ~2/ beside the NeuroCAAS folder", async () => {
      const folder = folderKeys(BUCKET, 'demo', TWO_DATASETS);
      expect(await text(folder.end)).toMatch(/^SUCCESS\nall 2 datasets succeeded/);
      for (const n of [1, 2]) expect(await text(folderKeys(BUCKET, 'demo', `${TWO_DATASETS}~${n}`).end), `~${n}`).toMatch(/^SUCCESS\n/);
      const logs = await caas('logs', `${BUCKET}/demo/${TWO_DATASETS}~2`);
      expect(logs.code, logs.stderr).toBe(0);
    });

    it('a bad YAML config is REJECTED, naming file:line', async () => {
      const folder = folderKeys(BUCKET, 'demo', 'bad yaml');
      expect(await text(folder.end)).toMatch(/^REJECTED\n/);
      expect(await text(folder.certificate)).toMatch(
        /rejected: config demo\/configs\/bad\.yaml:3:1: invalid YAML: Flow sequence .*end with a \]/,
      );
    });

    it.each([
      { file: 'dots', says: /timestamp: "\.\." is not allowed/ },
      { file: 'slash', says: /timestamp: "\/" and "\\" are path separators that would put the answer outside its job folder/ },
      { file: 'control', says: /timestamp: control characters \(NUL, newline, \.\.\.\) are not allowed/ },
      { file: 'tilde', says: /timestamp: "~" is reserved for the folders of a submission's datasets/ },
    ])(
      '$file: REJECTED in the folder named after its submit file, saying why; nothing lands where the timestamp points',
      async ({ file, says }) => {
        const folder = folderKeys(BUCKET, 'demo', file);
        expect(await text(folder.end)).toMatch(/^REJECTED\n/);
        expect(await text(folder.certificate)).toMatch(says);
      },
    );

    it('the results hold exactly the folders of the answers: none made from a refused timestamp', () => {
      const folders = new Set(resultKeys.map((key) => key.split('/')[2]));
      expect([...folders].sort()).toEqual(
        [NEUROCAAS, TWO_DATASETS, `${TWO_DATASETS}~1`, `${TWO_DATASETS}~2`, SUBMITTED, 'bad yaml', 'dots', 'slash', 'control', 'tilde']
          .map((timestamp) => `job__mock-wait_${timestamp}`)
          .sort(),
      );
    });

    it('caas submit takes a free-text --timestamp and a .yaml config; caas logs reads the job back by it', async () => {
      expect(submitted.code, submitted.stderr).toBe(0);
      expect(submitted.stdout).toContain(`demo/submissions/${SUBMITTED}_submit.json`);
      expect(submitted.stdout).toContain(`follow it with: caas logs 'mock-wait/demo/${SUBMITTED}' --follow`);
      expect(await text(folderKeys(BUCKET, 'demo', SUBMITTED).end)).toMatch(/^SUCCESS\n/);
      const logs = await caas('logs', `${BUCKET}/demo/${SUBMITTED}`);
      expect(logs.code, logs.stderr).toBe(0);
      expect(logs.stdout).toMatch(/status d3\.json: SUCCESS/);
      const byUrl = await caas('logs', `${name === 's3rver' ? 's3' : 'file'}://${BUCKET}/demo/results/job__mock-wait_${NEUROCAAS}/logs/`);
      expect(byUrl.code, byUrl.stderr).toBe(0);
      expect(byUrl.stdout).toMatch(/status d1\.json: SUCCESS/);
    });

    it.each([
      { timestamp: 'a/b', says: /--timestamp "a\/b": "\/" and "\\" are path separators/ },
      { timestamp: '..', says: /--timestamp "\.\.": "\.\." is not allowed/ },
      { timestamp: 'x\ty', says: /--timestamp "x\\ty": control characters/ },
    ])('caas submit --timestamp $timestamp exits 2 before uploading anything', async ({ timestamp, says }) => {
      const before: string[] = [];
      for await (const info of store.list(BUCKET, '')) before.push(`${info.key} ${info.etag}`);
      const refused = await caas(
        'submit',
        '--bucket',
        BUCKET,
        '--group',
        'demo',
        '--data',
        path.join(base, 'local', 'd3.json'),
        '--config',
        path.join(base, 'local', 'lab.yaml'),
        '--timestamp',
        timestamp,
      );
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(says);
      const after: string[] = [];
      for await (const info of store.list(BUCKET, '')) after.push(`${info.key} ${info.etag}`);
      expect(after).toEqual(before);
    });
  });
});
