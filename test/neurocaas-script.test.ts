import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAnalysis } from '../analyses/index.ts';
import { S3Store } from '../backends/storage/s3.ts';
import { type S3rverHandle, s3Env, startS3rver } from '../fixtures/s3rver.ts';
import { jobKeys, parseJobRef } from '../models/bucket-contract.ts';
import type { MetadataRecord } from '../models/record.ts';
import { verifyJob } from '../wrapper/verify.ts';
import { AnalysisRepo, readRecords, removeDir, runCli, scratchDir } from './support/workspace.ts';

const BUCKET = 'guide-mock';
const GROUP = 'labA';

/**
 * A script written as the NeuroCAAS developer guide teaches: no arguments, only the variables run_main.sh
 * declares; data and config copied from the bucket by key; the work done in a scratch folder; a log line
 * into the job's logs; the results synced into process_results by the script itself.
 */
const GUIDE_SCRIPT = `#!/bin/bash
set -euo pipefail
cd "$neurocaasrootdir"
aws s3 cp "s3://$bucketname/$inputpath" "./$dataname"
aws s3 cp "s3://$bucketname/$configpath" "./$configname"
mkdir -p results
lines=$(wc -l < "./$dataname")
label=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).label)' "./$configname")
printf '{"lines": %d, "label": "%s"}\\n' "$lines" "$label" > results/result.json
for name in bucketname groupdir resultdir processdir logdir dataname inputpath configname configpath; do
  printf '%s=%s\\n' "$name" "\${!name}" >> results/variables.txt
done
echo "guide-mock: $dataname has $lines lines" > guide.log
aws s3 cp guide.log "s3://$bucketname/$groupdir/$resultdir/logs/guide.log"
aws s3 sync results "s3://$bucketname/$groupdir/$processdir"
`;

describe('a NeuroCAAS script runs unchanged (S3 store, --compute local)', () => {
  let s3: S3rverHandle;
  let base: string;
  let repo: AnalysisRepo;
  let store: S3Store;
  let home: string;
  let jobs: string;
  let env: Record<string, string>;
  const caas = (...args: string[]) => runCli(['--home', home, '--store', 's3://', '--s3-endpoint', s3.endpoint, ...args], { env });

  beforeAll(async () => {
    s3 = await startS3rver();
    base = scratchDir('neurocaas-script');
    home = path.join(base, 'home');
    repo = new AnalysisRepo(base, []);
    const dir = path.join(repo.dir, BUCKET);
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'run_guide.sh'), GUIDE_SCRIPT);
    writeFileSync(
      path.join(dir, 'analysis.json'),
      `${JSON.stringify({ name: BUCKET, version: '1.0.0', script: 'run_guide.sh', outputs: { file: 'result.json' } }, null, 2)}\n`,
    );
    writeFileSync(
      path.join(dir, 'blueprint.json'),
      `${JSON.stringify({ bucket: BUCKET, max_runtime_minutes: 10, groups: [{ name: GROUP }] }, null, 2)}\n`,
    );
    repo.commit('a NeuroCAAS script analysis');
    store = new S3Store('s3://', { home: os.tmpdir(), endpoint: s3.endpoint });
    await store.createBucket(BUCKET);
    await store.put(BUCKET, `${GROUP}/inputs/session1.txt`, 'a\nb\nc\n');
    await store.put(BUCKET, `${GROUP}/inputs/session2.txt`, 'a\nb\n');
    env = { ...s3Env(s3.endpoint), CAAS_ANALYSES: repo.dir };
    jobs = path.join(base, 'jobs.jsonl');
    writeFileSync(
      jobs,
      `${JSON.stringify({
        analysis: BUCKET,
        group: GROUP,
        inputs: [
          {
            asset_id: 'session1',
            name: 'session1',
            location: `s3://${BUCKET}/${GROUP}/inputs/`,
            files: [{ url: `s3://${BUCKET}/${GROUP}/inputs/session1.txt` }],
          },
        ],
        parameters: { label: 'first' },
      })}\n`,
    );
  });
  afterAll(async () => {
    await store?.close();
    await s3?.stop();
    removeDir(base);
  });

  let ran: Promise<{ code: number | null; record: MetadataRecord }> | undefined;
  const runOnce = () =>
    (ran ??= (async () => {
      const result = await caas('run', jobs, '--execute');
      expect(result.stderr).not.toMatch(/FAILED/);
      const [record] = await readRecords(home);
      return { code: result.code, record: record! };
    })());

  it('through caas run: the guide variables mean what the guide says, and the synced outputs are verified and recorded', {
    timeout: 180_000,
  }, async () => {
    const { code, record } = await runOnce();
    expect(record.reason).toBe('exit code 0, outputs verified');
    expect(code).toBe(0);
    const ref = parseJobRef(record.job!.results)!;
    const resultdir = `results/job__${BUCKET}_${ref.timestamp}`;
    const configname = `caas-${record._id.slice(0, 16)}.json`;
    const variables = (await store.get(BUCKET, `${GROUP}/${resultdir}/process_results/variables.txt`)).toString();
    expect(variables.trim().split('\n')).toEqual([
      `bucketname=${BUCKET}`,
      `groupdir=${GROUP}`,
      `resultdir=${resultdir}`,
      `processdir=${resultdir}/process_results`,
      `logdir=${resultdir}/logs`,
      'dataname=session1.txt',
      `inputpath=${GROUP}/inputs/session1.txt`,
      `configname=${configname}`,
      `configpath=${GROUP}/configs/${configname}`,
    ]);
    const manifest = record.outputs!.manifest.map((entry) => entry.key.slice(`${GROUP}/${resultdir}/process_results/`.length));
    expect(manifest).toEqual([configname, 'result.json', 'variables.txt']);
    expect(record.outputs!.output_parameters).toEqual({ lines: 3, label: 'first' });
    expect((await store.get(BUCKET, `${GROUP}/${resultdir}/logs/guide.log`)).toString()).toBe('guide-mock: session1.txt has 3 lines\n');

    const shown = await caas('show', record._id);
    expect(shown.stdout).toMatch(/3 files in process_results\/, \d+ B, every one verified/);
    const again = await caas('run', jobs);
    expect(again.stdout).toMatch(/plan: 0 to run, 1 skipped/);
  });

  it('an object in process_results that is not in the manifest, or one that changed, fails verification', {
    timeout: 180_000,
  }, async () => {
    const { record } = await runOnce();
    const ref = parseJobRef(record.job!.results)!;
    const analysis = await loadAnalysis(BUCKET, [repo.dir]);
    const keys = jobKeys(BUCKET, GROUP, ref.timestamp, 'session1.txt', `caas-${record._id.slice(0, 16)}.json`);
    expect((await verifyJob(store, BUCKET, keys, analysis)).succeeded).toBe(true);

    await store.put(BUCKET, `${keys.process}late.txt`, 'written after the agent listed the outputs\n');
    const late = await verifyJob(store, BUCKET, keys, analysis);
    expect(late.succeeded).toBe(false);
    expect(late.reason).toBe(`output ${keys.process}late.txt is not in the manifest: it was written after the agent listed the outputs`);
    await store.delete(BUCKET, `${keys.process}late.txt`);

    await store.put(BUCKET, `${keys.process}result.json`, '{"lines": 4, "label": "first"}\n');
    const changed = await verifyJob(store, BUCKET, keys, analysis);
    expect(changed.succeeded).toBe(false);
    expect(changed.reason).toBe(`output ${keys.process}result.json does not match its manifest (size or sha256)`);
  });

  it('in submission mode: a submit file under submissions/ is answered in its job folder with the synced outputs', {
    timeout: 180_000,
  }, async () => {
    await store.put(BUCKET, `${GROUP}/configs/config.json`, '{"label": "submitted"}\n');
    await store.put(
      BUCKET,
      `${GROUP}/submissions/t1_submit.json`,
      '{"dataname": "labA/inputs/session2.txt", "configname": "labA/configs/config.json", "timestamp": "t1"}',
    );
    const watched = await caas('watch', '--bucket', BUCKET, '--once');
    expect(watched.code).toBe(0);
    const folder = `${GROUP}/results/job__${BUCKET}_t1/`;
    expect((await store.get(BUCKET, `${folder}process_results/end.txt`)).toString()).toMatch(/^SUCCESS\n/);
    const manifest = JSON.parse((await store.get(BUCKET, `${folder}logs/manifest.json`)).toString()) as { key: string }[];
    expect(manifest.map((entry) => entry.key)).toContain(`${folder}process_results/result.json`);
    const records = await readRecords(home);
    const submitted = records.find((r) => r.job?.results.includes('job__guide-mock_t1/'));
    expect(submitted?.outputs?.output_parameters).toEqual({ lines: 2, label: 'submitted' });
    expect((await store.get(BUCKET, `${folder}process_results/variables.txt`)).toString()).toMatch(
      /^dataname=session2\.txt\ninputpath=labA\/inputs\/session2\.txt$/m,
    );
  });

  it('refuses (INVALID) a job whose data is outside the analysis bucket, naming where to put it', { timeout: 60_000 }, async () => {
    const elsewhere = path.join(base, 'elsewhere.jsonl');
    writeFileSync(
      elsewhere,
      `${JSON.stringify({ analysis: BUCKET, group: GROUP, inputs: [{ asset_id: 'x', name: 'x', location: 's3://other-bucket/x/', files: [{ url: 's3://other-bucket/x/a.txt' }] }] })}\n`,
    );
    const planned = await caas('run', elsewhere);
    expect(planned.stdout).toMatch(/INVALID/);
    expect(planned.stdout + planned.stderr).toMatch(
      /s3:\/\/other-bucket\/x\/a\.txt is not in the analysis bucket: guide-mock is a NeuroCAAS script/,
    );
  });
});
