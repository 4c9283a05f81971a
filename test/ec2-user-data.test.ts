import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DescribeImagesCommand, DescribeInstancesCommand, EC2Client, type Instance, RunInstancesCommand } from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Ec2Launcher } from '../backends/compute/ec2.ts';
import type { LaunchRequest } from '../backends/compute/index.ts';
import { S3Store } from '../backends/storage/s3.ts';
import { type S3rverHandle, s3Env, startS3rver } from '../fixtures/s3rver.ts';
import { Blueprint } from '../models/blueprint.ts';
import { jobKeys } from '../models/bucket-contract.ts';

/**
 * The UserData script is run for real with bash, as cloud-init would run it, with the two things
 * only an instance has stood in: caas at CAAS_ROOT (this checkout) and a power-off command that
 * leaves a marker instead of stopping the machine.
 */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ec2 = mockClient(EC2Client);
const BUCKET = 'mock-wait';
const GROUP = 'caas';
const CONFIG = 'caas-userdata-test.json';

let s3: S3rverHandle;
let store: S3Store;
let scratch: string;
let instanceState: Instance;
/** The instance metadata service, as IMDSv2 answers: a token first, then the instance id for it. */
let imds: Server;
let imdsUrl: string;
const INSTANCE_ID = 'i-0abc1234def567890';

beforeAll(async () => {
  s3 = await startS3rver();
  store = new S3Store('s3://', { home: os.tmpdir(), endpoint: s3.endpoint });
  await store.createBucket(BUCKET);
  await store.put(BUCKET, `${GROUP}/configs/${CONFIG}`, '{"wait":0}\n');
  await store.put(BUCKET, `${GROUP}/inputs/data.txt`, 'spikes\n');
  scratch = await mkdtemp(path.join(os.tmpdir(), 'caas-userdata-'));
  imds = createServer((request, response) => {
    if (request.method === 'PUT' && request.url === '/latest/api/token') response.end('imds-token');
    else if (request.url === '/latest/meta-data/instance-id' && request.headers['x-aws-ec2-metadata-token'] === 'imds-token')
      response.end(INSTANCE_ID);
    else response.writeHead(401).end();
  });
  await new Promise<void>((resolve) => imds.listen(0, '127.0.0.1', resolve));
  imdsUrl = `http://127.0.0.1:${(imds.address() as { port: number }).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => imds?.close(resolve));
  await store?.close();
  await s3?.stop();
  await rm(scratch, { recursive: true, force: true });
});
beforeEach(() => {
  ec2.reset();
  instanceState = { InstanceId: 'i-0001', State: { Name: 'running' } };
  ec2.on(DescribeImagesCommand).resolves({ Images: [{ RootDeviceName: '/dev/xvda' }] });
  ec2.on(RunInstancesCommand).resolves({ Instances: [{ InstanceId: 'i-0001' }] });
  ec2.on(DescribeInstancesCommand).callsFake(() => ({ Reservations: [{ Instances: [instanceState] }] }));
});

function request(timestamp: string, maxRuntimeMinutes: number): LaunchRequest {
  return {
    identity: 'cd'.repeat(32),
    attempt: 1,
    analysis: 'mock-wait',
    group: GROUP,
    blueprint: Blueprint.parse({ bucket: BUCKET, ami: 'ami-0123456789abcdef0', max_runtime_minutes: maxRuntimeMinutes }),
    instanceType: 't3.micro',
    deadline: new Date(Date.now() + 10 * 60_000),
    spec: {
      store: `s3://?endpoint=${s3.endpoint}`,
      store_settings: {},
      input_checks: {},
      bucket: BUCKET,
      group: GROUP,
      timestamp,
      dataname: `s3://${BUCKET}/${GROUP}/inputs/data.txt`,
      inputs: [`s3://${BUCKET}/${GROUP}/inputs/data.txt`],
      configname: CONFIG,
      // biome-ignore lint/suspicious/noTemplateCurlyInString: agent placeholder
      command: ['bash', '${analysis_dir}/run.sh'],
      analysis_dir: path.join(ROOT, 'analyses/mock-wait'),
      instance: 'i-0001',
      max_runtime_s: 60,
      status_interval_ms: 500,
      log_limit_bytes: 1024 * 1024,
      environment: { set: {}, pass: [] },
    },
  };
}

/** Launches through the mocked EC2 API and returns the launched job and the UserData it sent. */
async function launch(launcher: Ec2Launcher, job: LaunchRequest) {
  const launched = await launcher.launch(job);
  const calls = ec2.commandCalls(RunInstancesCommand);
  const script = Buffer.from(calls.at(-1)!.args[0].input.UserData!, 'base64').toString('utf8');
  return { launched, script };
}

/** Runs the script as cloud-init would (bash, as root there); resolves with its exit code and output. */
async function runUserData(script: string, label: string, env: Record<string, string>) {
  const dir = path.join(scratch, label);
  await mkdir(path.join(dir, 'tmp'), { recursive: true });
  const marker = path.join(dir, 'powered-off');
  const standIn = path.join(dir, 'poweroff');
  await writeFile(standIn, `#!/bin/bash\necho "\${CAAS_POWEROFF_REASON:-}" >> ${JSON.stringify(marker)}\n`);
  await chmod(standIn, 0o755);
  await writeFile(path.join(dir, 'user-data.sh'), script);
  const child = spawn('bash', [path.join(dir, 'user-data.sh')], {
    cwd: dir,
    env: {
      ...process.env,
      ...s3Env(s3.endpoint),
      TMPDIR: path.join(dir, 'tmp'),
      CAAS_POWEROFF_CMD: standIn,
      CAAS_IMDS_URL: imdsUrl,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const poweredOff = (await readFile(marker, 'utf8').catch(() => '')).split('\n').filter(Boolean);
  return { code, output, poweredOff };
}

const PWNED = 'caas-pwned';

/** Files called `name` anywhere under `dir`. */
async function filesNamed(dir: string, name: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true });
  return entries.filter((entry) => path.basename(entry) === name);
}

describe('EC2 UserData, executed', () => {
  it('runs the agent under the bucket contract against S3, then powers off exactly once; a free-text timestamp full of shell syntax is only a folder name', async () => {
    const launcher = new Ec2Launcher({
      storeUrl: `s3://?endpoint=${s3.endpoint}`,
      // What caas run hands it: the store's environment, from an empty one (no credentials).
      storeEnvironment: store.environment({}),
      client: new EC2Client({ region: 'us-east-1' }),
      pollMs: 20,
      instanceAnalysesDir: path.join(ROOT, 'analyses'),
    });
    try {
      // What a NeuroCAAS client may send as a timestamp: nothing in it is ever run by a shell.
      const job = request(`23:05:47 $(touch ${PWNED}) \`touch ${PWNED}\` ';touch ${PWNED};' "$HOME" \${IFS}`, 10);
      const { launched, script } = await launch(launcher, job);
      // The machine's own aws CLI reaches the same server; no credential is written into UserData.
      expect(script).toContain(`export AWS_ENDPOINT_URL_S3='${s3.endpoint}'`);
      expect(script).not.toMatch(/AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY/);
      const run = await runUserData(script, 'success', { CAAS_ROOT: ROOT });
      expect(run.poweredOff, run.output).toEqual(['agent-ended']);
      expect(run.output).toContain('agent ended with exit code 0');

      const keys = jobKeys(BUCKET, GROUP, job.spec.timestamp, job.spec.dataname, CONFIG);
      expect(keys.process).toBe(`${GROUP}/results/job__${BUCKET}_${job.spec.timestamp}/process_results/`);
      expect((await store.get(BUCKET, keys.end)).toString()).toMatch(/^SUCCESS\n/);
      expect(JSON.parse((await store.get(BUCKET, `${keys.process}waited.json`)).toString())).toMatchObject({
        waited_s: 0,
        input: 'data.txt',
      });
      // The heartbeat names the machine by the id the metadata service gave it, for a runner that adopts the job.
      expect(JSON.parse((await store.get(BUCKET, keys.status)).toString())).toMatchObject({
        status: 'SUCCESS',
        instance: 'i-0001',
        heartbeat: { instance: INSTANCE_ID, interval_ms: 500 },
      });

      expect(await filesNamed(scratch, PWNED)).toEqual([]);
      expect(await filesNamed(path.join(ROOT, 'analyses'), PWNED)).toEqual([]);

      // The instance powered itself off; with end.txt in the bucket the launcher adds no reason of its own.
      instanceState = { InstanceId: 'i-0001', State: { Name: 'terminated' }, StateReason: { Message: 'Client.InstanceInitiatedShutdown' } };
      await expect(launched.ended).resolves.toEqual({ exitCode: null });
    } finally {
      await launcher.close();
    }
  });

  it('powers off at max runtime when the agent hangs, and again when it finally ends', async () => {
    // A stand-in caas checkout inside the project, so its tsx resolves from the project's node_modules.
    const fakeRoot = path.join(ROOT, '.test-tmp', `userdata-hang-${process.pid}`);
    await mkdir(path.join(fakeRoot, 'wrapper'), { recursive: true });
    await writeFile(path.join(fakeRoot, 'wrapper/agent-main.ts'), 'await new Promise((resolve) => setTimeout(resolve, 3500));\n');
    const launcher = new Ec2Launcher({ storeUrl: 's3://', client: new EC2Client({ region: 'us-east-1' }), pollMs: 60_000 });
    try {
      // 0.02 min = 1.2 s, rounded up to a 2 s hard stop.
      const { script } = await launch(launcher, request('20250101T000000000Z-hang0000', 0.02));
      const started = Date.now();
      const run = await runUserData(script, 'hang', { CAAS_ROOT: fakeRoot });
      expect(run.poweredOff, run.output).toEqual(['max-runtime', 'agent-ended']);
      expect(run.output).toContain('max runtime reached (2 s)');
      expect(Date.now() - started).toBeGreaterThanOrEqual(3500);
    } finally {
      await launcher.close();
      await rm(fakeRoot, { recursive: true, force: true });
    }
  });

  it('powers off even when caas is missing from the image', async () => {
    const launcher = new Ec2Launcher({ storeUrl: 's3://', client: new EC2Client({ region: 'us-east-1' }), pollMs: 60_000 });
    try {
      const { script } = await launch(launcher, request('20250101T000000000Z-missing0', 10));
      const run = await runUserData(script, 'missing', { CAAS_ROOT: path.join(scratch, 'no-such-caas') });
      expect(run.poweredOff, run.output).toEqual(['agent-ended']);
      expect(run.code).not.toBe(0);
    } finally {
      await launcher.close();
    }
  });
});
