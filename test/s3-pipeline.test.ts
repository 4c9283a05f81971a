import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type S3rverHandle, s3Env, startS3rver } from '../fixtures/s3rver.ts';
import { readRecords, removeDir, runCli, scratchDir } from './support/workspace.ts';

/** The demo path with --store s3:// against a real S3-protocol server (s3rver on 127.0.0.1). */
describe('dispatch + run --execute with --store s3://', () => {
  let s3: S3rverHandle;
  let base: string;
  let home: string;
  const caas = (...args: string[]) =>
    runCli(['--home', home, '--store', 's3://', '--s3-endpoint', s3.endpoint, ...args], { env: s3Env(s3.endpoint) });

  beforeAll(async () => {
    s3 = await startS3rver();
    base = scratchDir('s3-pipeline');
    home = path.join(base, 'home');
  });
  afterAll(async () => {
    await s3.stop();
    removeDir(base);
  });

  async function keys(bucket: string): Promise<string[]> {
    const client = new S3Client({ endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1' });
    const found: string[] = [];
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
      found.push(...(page.Contents ?? []).map((c) => c.Key!));
      token = page.NextContinuationToken;
    } while (token);
    client.destroy();
    return found;
  }

  /**
   * The demo over S3, once per file: a sample catalog, 4 unit-filter jobs dispatched from it, and
   * `caas run --execute` before and after the analysis bucket exists. The first test checks each
   * step; a later test run alone (-t) makes it itself.
   */
  async function runDemo() {
    const generated = await caas('catalog', 'generate-sample', '--subjects', '774659', '--sessions', '2');
    const params = path.join(base, 'analysis_parameters.json');
    writeFileSync(
      params,
      JSON.stringify({
        fixed_parameters: { analysis_tag: 's3' },
        distributed_parameters: [{ isi_violations_cutoff: 0.05 }, { isi_violations_cutoff: 0.1 }],
      }),
    );
    const jobs = path.join(base, 'jobs.jsonl');
    const dispatched = await caas(
      'dispatch',
      '--query',
      '{"subject.subject_id":"774659"}',
      '--analysis',
      'unit-filter',
      '--file-ext',
      '.spikes.json',
      '--params',
      params,
      '--group',
      'demo',
      '-o',
      jobs,
    );
    const missing = await caas('run', jobs, '--execute');
    const client = new S3Client({ endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1' });
    await client.send(new CreateBucketCommand({ Bucket: 'unit-filter' }));
    client.destroy();
    const run = await caas('run', jobs, '--execute');
    return { generated, dispatched, jobs, missing, run };
  }
  let demo: ReturnType<typeof runDemo> | undefined;
  const demoBatch = () => (demo ??= runDemo());

  it('puts every key of the bucket contract at its documented path, and reruns skip', { timeout: 180_000 }, async () => {
    const { generated, dispatched, jobs, missing, run } = await demoBatch();
    expect(generated.code).toBe(0);
    expect(dispatched.code).toBe(0);
    const lines = (await import('node:fs')).readFileSync(jobs, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(4);
    expect(JSON.parse(lines[0]!).inputs[0].files[0].url).toMatch(/^s3:\/\/sample-data\/ecephys_774659_.*\/spikes\/units\.spikes\.json$/);

    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(
      /analysis bucket unit-filter does not exist in s3:\/\/\?endpoint=\S+: create it \(aws s3 mb --endpoint-url \S+ s3:\/\/unit-filter\)/,
    );

    expect(run.stderr).not.toMatch(/error/i);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toMatch(/done: 4 succeeded/);

    const stored = await readRecords(home);
    expect(stored).toHaveLength(4);
    const bucketKeys = new Set(await keys('unit-filter'));
    for (const record of stored) {
      expect(record.status).toBe('succeeded');
      const { bucket, group, timestamp } = record.job!;
      expect(bucket).toBe('unit-filter');
      expect(record.job!.results).toBe(`s3://unit-filter/demo/results/job__unit-filter_${timestamp}/process_results/`);
      const job = `${group}/results/job__${bucket}_${timestamp}`;
      const configname = `caas-${record._id.slice(0, 16)}.json`;
      for (const key of [
        `${group}/submissions/${timestamp}_submit.json`,
        `${group}/configs/${configname}`,
        `${job}/logs/certificate.txt`,
        `${job}/logs/DATASET_NAME-units.spikes.json_STATUS.json`,
        `${job}/logs/stdout.txt`,
        `${job}/logs/stderr.txt`,
        `${job}/process_results/${configname}`,
        `${job}/process_results/summary.json`,
        `${job}/process_results/passing_units.csv`,
        `${job}/process_results/isi_violations.svg`,
        `${job}/process_results/end.txt`,
      ]) {
        expect(bucketKeys.has(key), key).toBe(true);
      }
      expect(record.outputs?.output_parameters).toMatchObject({ n_units: 12 });
    }

    const again = await caas('run', jobs, '--execute');
    expect(again.stdout).toMatch(/plan: 0 to run, 4 skipped/);
  });

  it('names the same store by its URL alone (s3://?endpoint=…): same identities, and show says how to fetch from that server', {
    timeout: 120_000,
  }, async () => {
    const { jobs } = await demoBatch();
    // No --s3-endpoint and no AWS_ENDPOINT_URL: the URL is all that says where the server is.
    const { AWS_ENDPOINT_URL: _, ...credentials } = s3Env(s3.endpoint);
    const byUrl = (...args: string[]) =>
      runCli(['--home', home, '--store', `s3://?endpoint=${s3.endpoint}`, ...args], { env: { ...credentials, AWS_ENDPOINT_URL: '' } });
    const again = await byUrl('run', jobs);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/plan: 0 to run, 4 skipped/);
    const [record] = await readRecords(home);
    const shown = await byUrl('show', record!._id, '--json');
    expect(shown.code, shown.stderr).toBe(0);
    expect(JSON.parse(shown.stdout).fetch).toBe(`aws s3 cp --recursive --endpoint-url ${s3.endpoint} ${record!.job!.results} ./results`);
    const unknown = await byUrl('run', jobs, '--store', 's3://?region=eu-west-1');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/s3:\/\/ has no setting "region" \(expected endpoint\)/);
  });

  it('is readable by a standard S3 client (the aws CLI)', async (context) => {
    try {
      execFileSync('aws', ['--version'], { stdio: 'ignore' });
    } catch {
      context.skip('the aws CLI is not installed here (Debian package awscli)');
    }
    await demoBatch();
    const [record] = await readRecords(home);
    const out = execFileSync('aws', ['s3', 'cp', `${record!.job!.results}end.txt`, '-', '--endpoint-url', s3.endpoint], {
      env: { ...process.env, ...s3Env(s3.endpoint) },
      encoding: 'utf8',
    });
    expect(out).toMatch(/^SUCCESS/);
  });
});
