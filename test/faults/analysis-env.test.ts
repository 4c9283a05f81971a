import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Store } from '../../backends/storage/s3.ts';
import { type S3rverHandle, s3Env, startS3rver } from '../../fixtures/s3rver.ts';
import { AnalysisRepo, readRecords, removeDir, runCli, scratchDir } from '../support/workspace.ts';

/** Writes its environment and what `aws s3 ls` of its own inputs finds into its results. */
const ENV_DUMP = `#!/usr/bin/env bash
set -u
env > "$CAAS_OUTPUT_DIR/env.txt"
aws s3 ls "s3://$bucketname/$groupdir/inputs/" > "$CAAS_OUTPUT_DIR/ls.txt" 2> "$CAAS_OUTPUT_DIR/ls-error.txt"
echo "aws exit code $?" >> "$CAAS_OUTPUT_DIR/ls.txt"
`;

/** The analysis gets an explicit environment: what it needs to work, never caas's own settings. */
describe('the environment an analysis sees', () => {
  let s3: S3rverHandle;
  let base: string;
  let repo: AnalysisRepo;

  beforeAll(async () => {
    s3 = await startS3rver();
    base = scratchDir('analysis-env');
    repo = new AnalysisRepo(base, []);
    repo.addScriptAnalysis('envdump', ENV_DUMP, { environment: { set: { LAB_SETTING: 'from the blueprint' }, pass: ['LAB_TOKEN'] } });
    const store = new S3Store('s3://', { home: os.tmpdir(), endpoint: s3.endpoint });
    await store.createBucket('envdump');
    await store.put('envdump', 'caas/inputs/session.txt', 'spikes\n');
    await store.close();
  });
  afterAll(async () => {
    await s3.stop();
    removeDir(base);
  });

  it('holds none of CAAS_DB, CAAS_STORE, CAAS_HOME, MONGODB_URI; an `aws s3 ls` inside it reaches the store caas was pointed at with --s3-endpoint', {
    timeout: 180_000,
  }, async () => {
    const home = path.join(base, 'home');
    const jobs = path.join(base, 'jobs.jsonl');
    writeFileSync(
      jobs,
      `${JSON.stringify({
        analysis: 'envdump',
        inputs: [
          { asset_id: 's1', name: 's1', location: 's3://envdump/caas/inputs/', files: [{ url: 's3://envdump/caas/inputs/session.txt' }] },
        ],
      })}\n`,
    );
    // The endpoint only as a flag: the runner's environment names no endpoint at all.
    const { AWS_ENDPOINT_URL: _, ...credentials } = s3Env(s3.endpoint);
    const result = await runCli(['run', jobs, '--execute', '--s3-endpoint', s3.endpoint], {
      env: {
        ...credentials,
        CAAS_ANALYSES: repo.dir,
        CAAS_HOME: home,
        CAAS_STORE: 's3://',
        CAAS_DB: `sqlite:${path.join(home, 'metadata.sqlite')}`,
        MONGODB_URI: 'mongodb://lab:secret-password@db.example.org/caas',
        CAAS_LEASE_SECONDS: '60',
        LAB_TOKEN: 'passed by name',
        UNRELATED_SECRET: 'not for analyses',
      },
    });
    expect(result.code, result.stderr).toBe(0);
    const [record] = await readRecords(home);
    expect(record?.status).toBe('succeeded');
    const results = new S3Store('s3://', { home: os.tmpdir(), endpoint: s3.endpoint });
    const prefix = record!.job!.results.replace('s3://envdump/', '');
    const env = Object.fromEntries(
      (await results.get('envdump', `${prefix}env.txt`))
        .toString('utf8')
        .split('\n')
        .filter((line) => line.includes('='))
        .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
    );
    const ls = (await results.get('envdump', `${prefix}ls.txt`)).toString('utf8');
    const lsError = (await results.get('envdump', `${prefix}ls-error.txt`)).toString('utf8');
    await results.close();

    for (const name of ['CAAS_DB', 'CAAS_STORE', 'CAAS_HOME', 'CAAS_LEASE_SECONDS', 'CAAS_ANALYSES', 'MONGODB_URI', 'UNRELATED_SECRET']) {
      expect(env, name).not.toHaveProperty(name);
    }
    expect(JSON.stringify(env)).not.toContain('secret-password');
    // The job's own variables, the system's basics, and what the blueprint adds.
    expect(env).toMatchObject({
      bucketname: 'envdump',
      groupdir: 'caas',
      LAB_SETTING: 'from the blueprint',
      LAB_TOKEN: 'passed by name',
      AWS_ENDPOINT_URL_S3: s3.endpoint,
      AWS_ACCESS_KEY_ID: 'S3RVER',
    });
    expect(env.PATH).toBeTruthy();
    expect(env.HOME).toBeTruthy();
    expect(env.TMPDIR).toMatch(/caas-job-.*\/tmp$/);
    expect(env.CAAS_OUTPUT_DIR).toBeTruthy();
    expect(lsError).toBe('');
    expect(ls).toMatch(/session\.txt/);
    expect(ls).toMatch(/aws exit code 0/);
  });
});
