import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Launcher, openLauncher } from '../backends/compute/index.ts';
import type { ObjectStore } from '../backends/storage/index.ts';
import { StatusFile } from '../models/status.ts';
import { AGENT_PROGRAM } from '../wrapper/agent-program.ts';
import { showJob } from '../wrapper/follow.ts';
import { sha256Hex } from '../wrapper/identity.ts';
import { handleS3Event } from '../wrapper/s3-event-handler.ts';
import { folderKeys } from '../wrapper/submission.ts';
import { submitFiles } from '../wrapper/submit-client.ts';
import { SubmissionWatcher, type WatchOptions } from '../wrapper/watch.ts';
import { AnalysisRepo, removeDir, scratchDir } from './support/workspace.ts';

const BUCKET = 'mock-wait';

/** The real local launcher, counting what it starts. */
async function countedLocal(): Promise<Launcher & { launches: number }> {
  const inner = await openLauncher('local', { storeUrl: 'file:', agent: AGENT_PROGRAM });
  const counted = {
    name: inner.name,
    launches: 0,
    launch: (request: Parameters<Launcher['launch']>[0]) => {
      counted.launches++;
      return inner.launch(request);
    },
    close: () => inner.close(),
  };
  return counted;
}

describe('each submit file is processed once, whoever looks and however often', () => {
  let base: string;
  let repo: AnalysisRepo;
  let launcher: Awaited<ReturnType<typeof countedLocal>>;
  let markerFile: string;
  let store: ObjectStore;
  const opened: SubmissionWatcher[] = [];
  const log: string[] = [];

  const open = async (extra: Partial<WatchOptions> = {}) => {
    const watcher = await SubmissionWatcher.open({
      bucket: BUCKET,
      home: path.join(base, 'home'),
      storeUrl: 'file:',
      dbUrl: 'sqlite:',
      compute: 'local',
      concurrency: 4,
      leaseMs: 20_000,
      allowDirty: false,
      statusIntervalMs: 200,
      retryMs: 200,
      roots: [repo.dir],
      launcher,
      log: (line) => log.push(line),
      ...extra,
    });
    opened.push(watcher);
    return watcher;
  };
  const text = async (key: string) => (await store.get(BUCKET, key).catch(() => undefined))?.toString('utf8');
  const runs = () => readFileSync(markerFile, 'utf8').split('\n').filter(Boolean).length;
  const submit = (ts: string, body: Record<string, unknown>) =>
    store.put(BUCKET, `demo/submissions/${ts}_submit.json`, JSON.stringify({ timestamp: ts, ...body }));

  beforeAll(async () => {
    base = scratchDir('submission-once');
    repo = new AnalysisRepo(base);
    markerFile = path.join(base, 'runs.txt');
    process.env.CAAS_MOCK_MARKER_FILE = markerFile;
    launcher = await countedLocal();
    const first = await open();
    store = first.store;
    for (const name of ['d1', 'd2', 'd3', 'd4']) await store.put(BUCKET, `demo/inputs/${name}.json`, `{"name": "${name}"}\n`);
    await store.put(BUCKET, 'demo/configs/ok.json', '{"wait": 0, "marker": "m"}\n');
  });
  afterAll(async () => {
    for (const watcher of opened) await watcher.close();
    delete process.env.CAAS_MOCK_MARKER_FILE;
    removeDir(base);
  });

  /*
   * What later tests build on, each made once by whichever test needs it first (a test run alone
   * with -t makes what it needs): s1 and s2 answered by two watchers looking at the same moment,
   * and l3 (a live claim elsewhere) and x4 (a lapsed one) looked at.
   */
  async function race() {
    await submit('s1', { dataname: 'inputs/d1.json', configname: 'configs/ok.json' });
    await submit('s2', { dataname: 'inputs/d2.json', configname: 'configs/ok.json' });
    const [a, b] = [opened[0]!, await open()];
    return (await Promise.all([a.pollOnce(), b.pollOnce()])).flat();
  }
  async function takeover() {
    const body = (ts: string, data: string) => JSON.stringify({ dataname: data, configname: 'configs/ok.json', timestamp: ts });
    const claimed = (ts: string, expires: number) =>
      JSON.stringify({
        submit_key: `demo/submissions/${ts}_submit.json`,
        submit_sha256: sha256Hex(body(ts, `inputs/d${ts.slice(-1)}.json`)),
        owner: { host: 'elsewhere', pid: 1, run: 'dead-or-alive' },
        claimed: new Date().toISOString(),
        lease_expires: new Date(expires).toISOString(),
      });
    await store.put(BUCKET, 'demo/submissions/l3_submit.json', body('l3', 'inputs/d3.json'));
    await store.put(BUCKET, folderKeys(BUCKET, 'demo', 'l3').marker, claimed('l3', Date.now() + 60_000));
    await store.put(BUCKET, 'demo/submissions/x4_submit.json', body('x4', 'inputs/d4.json'));
    await store.put(BUCKET, folderKeys(BUCKET, 'demo', 'x4').marker, claimed('x4', Date.now() - 1));
    return (await open()).pollOnce();
  }
  let raced: ReturnType<typeof race> | undefined;
  let tookOver: ReturnType<typeof takeover> | undefined;
  const firstTwo = () => (raced ??= race());
  const lapsedClaims = () => (tookOver ??= takeover());

  it('two watchers looking at the same moment start each new submission once', async () => {
    const outcomes = await firstTwo();
    for (const key of ['demo/submissions/s1_submit.json', 'demo/submissions/s2_submit.json']) {
      const kinds = outcomes.filter((o) => o.key === key).map((o) => o.outcome);
      expect(
        kinds.filter((k) => k === 'succeeded'),
        key,
      ).toHaveLength(1);
      expect(
        kinds.every((k) => k === 'succeeded' || k === 'elsewhere' || k === 'done'),
        kinds.join(),
      ).toBe(true);
    }
    expect(launcher.launches).toBe(2);
    expect(runs()).toBe(2);
    expect(await text(folderKeys(BUCKET, 'demo', 's1').end)).toMatch(/^SUCCESS/);
  });

  it('a restarted watcher answers nothing again', async () => {
    await firstTwo();
    const launched = launcher.launches;
    const restarted = await open();
    const outcomes = await restarted.pollOnce();
    expect(outcomes.map((o) => o.outcome)).toEqual(['done', 'done']);
    expect(launcher.launches).toBe(launched);
  });

  it('a claim whose lease is still live is left to its watcher; one whose lease ran out is taken over', async () => {
    const launched = launcher.launches;
    const outcomes = await lapsedClaims();
    expect(outcomes.find((o) => o.key.endsWith('/l3_submit.json'))?.outcome).toBe('elsewhere');
    expect(outcomes.find((o) => o.key.endsWith('/x4_submit.json'))?.outcome).toBe('succeeded');
    expect(await text(folderKeys(BUCKET, 'demo', 'l3').end)).toBeUndefined();
    expect(launcher.launches).toBe(launched + 1);
  });

  it('the same data and config under a new timestamp is answered from the record, not run', async () => {
    await firstTwo();
    const launched = launcher.launches;
    await submit('again', { dataname: 'demo/inputs/d1.json', configname: 'demo/configs/ok.json' });
    const outcomes = await opened[0]!.pollOnce();
    expect(outcomes.find((o) => o.key.endsWith('/again_submit.json'))?.outcome).toBe('answered');
    const folder = folderKeys(BUCKET, 'demo', 'again');
    expect(await text(folder.certificate)).toMatch(
      /identical data and config: answered from record [0-9a-f]{64}, results at file:\/\/mock-wait\/demo\/results\/job__mock-wait_s1\/process_results\//,
    );
    expect(JSON.parse((await text(folder.link))!).results).toBe('file://mock-wait/demo/results/job__mock-wait_s1/process_results/');
    expect(StatusFile.parse(JSON.parse((await text(`${folder.logs}DATASET_NAME-d1.json_STATUS.json`))!)).status).toBe('SUCCESS');
    expect(await text(folder.end)).toMatch(/^SUCCESS\nanswered from record/);
    expect(launcher.launches).toBe(launched);
  });

  it('a list of datanames gives one job per dataset, each with its own status file', async () => {
    await firstTwo();
    const launched = launcher.launches;
    await store.put(BUCKET, 'demo/inputs/d5.json', '{"name": "d5"}\n');
    await submit('many', { dataname: ['inputs/d1.json', 'inputs/d5.json'], configname: 'configs/ok.json' });
    const outcomes = await opened[0]!.pollOnce();
    expect(outcomes.find((o) => o.key.endsWith('/many_submit.json'))?.outcome).toBe('succeeded');
    const main = folderKeys(BUCKET, 'demo', 'many');
    for (const name of ['d1.json', 'd5.json']) {
      expect(StatusFile.parse(JSON.parse((await text(`${main.logs}DATASET_NAME-${name}_STATUS.json`))!)).status).toBe('SUCCESS');
    }
    expect(await text(folderKeys(BUCKET, 'demo', 'many~1').end)).toMatch(/^SUCCESS\nanswered from record/);
    expect(await text(`${folderKeys(BUCKET, 'demo', 'many~2').process}waited.json`)).toMatch(/waited_s/);
    expect(await text(main.end)).toBe('SUCCESS\nall 2 datasets succeeded\n');
    expect(launcher.launches).toBe(launched + 1);
  });

  it('caas logs shows a finished job: certificate, status, the tail of stdout and where the results are', async () => {
    await firstTwo();
    const lines: string[] = [];
    const result = await showJob(store, { bucket: BUCKET, group: 'demo', timestamp: 's1' }, (line) => lines.push(line));
    expect(result?.exitCode).toBe(0);
    const shown = lines.join('\n');
    expect(shown).toMatch(/job succeeded/);
    expect(shown).toMatch(/status d1\.json: SUCCESS \(exit code 0\)/);
    expect(shown).toMatch(/ {2}\| mock-wait: done/);
    expect(shown).toMatch(/succeeded: results at file:\/\/mock-wait\/demo\/results\/job__mock-wait_s1\/process_results\//);
    await expect(showJob(store, { bucket: BUCKET, group: 'demo', timestamp: 'nope' }, () => {})).rejects.toThrow(/no job folder/);
  });

  it('caas submit refuses a timestamp that is already used, before uploading anything', async () => {
    await firstTwo();
    await lapsedClaims();
    const data = path.join(base, 'fresh.json');
    writeFileSync(data, '{"fresh": true}\n');
    const request = { bucket: BUCKET, group: 'demo', data: [data], config: data, timestamp: 's1' };
    await expect(submitFiles(store, request, () => {})).rejects.toThrow(/s1_submit\.json already exists: pick another --timestamp/);
    await expect(submitFiles(store, { ...request, timestamp: 'x4' }, () => {})).rejects.toThrow(/already exists/);
    await expect(submitFiles(store, { ...request, timestamp: 'many~1' }, () => {})).rejects.toThrow(/--timestamp "many~1"/);
    expect(await store.head(BUCKET, 'demo/inputs/fresh.json')).toBeUndefined();
  });

  it('the S3 event handler answers one object per ObjectCreated event, once', async () => {
    const launched = launcher.launches;
    const key = 'demo/submissions/with space_submit.json';
    await store.put(BUCKET, key, JSON.stringify({ dataname: 'inputs/d1.json', configname: 'configs/missing.json', timestamp: 'evt' }));
    const event = (name: string, bucket = BUCKET) => ({
      Records: [{ eventName: name, s3: { bucket: { name: bucket }, object: { key: 'demo/submissions/with+space_submit.json' } } }],
    });
    const watcher = opened[0]!;
    expect(await handleS3Event(event('ObjectRemoved:Delete'), watcher)).toEqual([]);
    expect(await handleS3Event(event('ObjectCreated:Put', 'unit-filter'), watcher)).toEqual([]);
    const [first] = await handleS3Event(event('ObjectCreated:Put'), watcher);
    expect(first).toMatchObject({ key, outcome: 'rejected' });
    expect(await text(folderKeys(BUCKET, 'demo', 'evt').certificate)).toMatch(/configs\/missing\.json does not exist/);
    const [again] = await handleS3Event(event('ObjectCreated:Put'), watcher);
    expect(again).toMatchObject({ key, outcome: 'done' });
    expect(launcher.launches).toBe(launched);
  });
});
