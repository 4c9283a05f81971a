import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type S3rverHandle, s3Env, startS3rver } from '../fixtures/s3rver.ts';
import { AnalysisRepo, mockJob, ROOT, removeDir, runCli, scratchDir } from './support/workspace.ts';

const NOTE = /^caas: note: AWS SDK releases from 2027 on need Node >=\s*\d+; this is Node v[\d.]+ \(caas supports >=20\.19\)$/;
const SDK_BLOCK = /NodeVersionSupportWarning|To continue receiving updates|a\.co\/c895JFp/;
const sdkWarns = Number(process.versions.node.split('.')[0]) < 22;

describe("the AWS SDK's Node version notice", () => {
  let s3: S3rverHandle;
  let base: string;

  beforeAll(async () => {
    s3 = await startS3rver();
    base = scratchDir('aws-sdk-notice');
  });
  afterAll(async () => {
    await s3.stop();
    removeDir(base);
  });

  it('caas run on an S3 store shows it in one line at most, once, and no SDK block', { timeout: 120_000 }, async () => {
    const repo = new AnalysisRepo(base);
    const client = new S3Client({ endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1' });
    await client.send(new CreateBucketCommand({ Bucket: 'mock-wait' }));
    client.destroy();
    const file = path.join(base, 'data', 'x.txt');
    mkdirSync(path.dirname(file));
    writeFileSync(file, 'x');
    // Two jobs, two agent processes: each would have printed the block of its own.
    const jobs = `${mockJob('a1', { wait: 0 }, file)}\n${mockJob('a2', { wait: 0 }, file)}\n`;
    const run = await runCli(
      ['--home', path.join(base, 'home'), '--store', 's3://', '--s3-endpoint', s3.endpoint, 'run', '-', '--execute'],
      {
        env: { ...s3Env(s3.endpoint), CAAS_ANALYSES: repo.dir },
        input: jobs,
      },
    );
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toContain('done: 2 succeeded');
    expect(run.stderr).not.toMatch(SDK_BLOCK);
    const notes = run.stderr.split('\n').filter((line) => /\bNode\b/.test(line));
    expect(notes).toHaveLength(sdkWarns ? 1 : 0);
    for (const line of notes) expect(line).toMatch(NOTE);
  });

  it('is one line per process, silent where asked, and leaves every other warning alone', () => {
    const notice = pathToFileURL(path.join(ROOT, 'backends/aws-sdk-notice.ts')).href;
    const script = (say: string) => `
      const { condenseAwsSdkNodeNotice } = await import(${JSON.stringify(notice)});
      condenseAwsSdkNodeNotice(${say});
      const sdk = 'NodeVersionSupportWarning: The AWS SDK for JavaScript (v3)\\nversions published after the first week of January 2027\\nwill require node >=22. You are running node v20.\\n\\nTo continue receiving updates to AWS services, bug fixes,\\nand security updates please upgrade to node >=22.';
      process.emitWarning(sdk);
      process.emitWarning(sdk);
      process.emitWarning('something else entirely', 'DeprecationWarning', 'DEP0999');`;
    const run = (say: string, env: Record<string, string> = {}) =>
      spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script(say)], {
        cwd: ROOT,
        encoding: 'utf8',
        env: { ...process.env, ...env },
      });

    const runner = run('(line) => process.stderr.write(line + "\\n")');
    expect(runner.status, runner.stderr).toBe(0);
    const lines = runner.stderr.split('\n').filter(Boolean);
    expect(lines.filter((line) => NOTE.test(line))).toHaveLength(1);
    expect(runner.stderr).not.toMatch(SDK_BLOCK);
    expect(runner.stderr).toMatch(/\[DEP0999\] DeprecationWarning: something else entirely/);

    // NODE_NO_WARNINGS=1, Node's own switch for process warnings, silences this one as well.
    const silenced = run('(line) => process.stderr.write(line + "\\n")', { NODE_NO_WARNINGS: '1' });
    expect(silenced.stderr).not.toMatch(/AWS SDK|NodeVersionSupportWarning|DEP0999/);

    const agent = run('');
    expect(agent.stderr).not.toMatch(/AWS SDK|NodeVersionSupportWarning/);
    expect(agent.stderr).toMatch(/\[DEP0999\] DeprecationWarning: something else entirely/);
  });
});
