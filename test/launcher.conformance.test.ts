import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  BatchClient,
  DescribeJobsCommand,
  type DescribeJobsCommandInput,
  ListJobsCommand,
  type ListJobsCommandInput,
  SubmitJobCommand,
  type SubmitJobCommandInput,
  TerminateJobCommand,
} from '@aws-sdk/client-batch';
import {
  DescribeImagesCommand,
  DescribeInstancesCommand,
  type DescribeInstancesCommandInput,
  EC2Client,
  RunInstancesCommand,
  type RunInstancesCommandInput,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchLauncher } from '../backends/compute/batch.ts';
import { Ec2Launcher } from '../backends/compute/ec2.ts';
import type { Launcher, LaunchRequest } from '../backends/compute/index.ts';
import { InlineLauncher } from '../backends/compute/inline.ts';
import { LocalLauncher } from '../backends/compute/local.ts';
import { S3Store } from '../backends/storage/s3.ts';
import { type S3rverHandle, s3Env, startS3rver } from '../fixtures/s3rver.ts';
import { Blueprint } from '../models/blueprint.ts';
import { jobFolder } from '../models/bucket-contract.ts';
import { AGENT_PROGRAM } from '../wrapper/agent-program.ts';
import { removeDir, scratchDir } from './support/workspace.ts';

/**
 * What every launcher promises the runner (backends/compute/index.ts), checked the same way for
 * each: the job runs under the bucket contract and its end is seen from end.txt; the same
 * (identity, attempt) never starts two machines; cancel and the deadline stop the machine; a
 * machine that vanishes is reported. EC2 and AWS Batch run against their mocked APIs, and their
 * UserData or container command is executed for real with bash, as the cloud would.
 */
const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const BUCKET = 'mock-wait';
const GROUP = 'caas';
const ec2 = mockClient(EC2Client);
const batch = mockClient(BatchClient);

let s3: S3rverHandle;
let store: S3Store;
let base: string;

/** Machines of a fake cloud: each runs its script with bash in its own process group. */
class FakeCloud {
  readonly machines = new Map<string, { child: ChildProcess; state: 'running' | 'ended' | 'vanished'; exit?: number | null }>();
  private readonly tokens = new Map<string, string>();

  constructor(private readonly prefix: string) {}

  start(script: string, token: string, env: Record<string, string>): string {
    const known = this.tokens.get(token);
    if (known) return known;
    const id = `${this.prefix}-${this.machines.size + 1}-${randomUUID().slice(0, 8)}`;
    this.tokens.set(token, id);
    const child = spawn('bash', ['-c', script], {
      detached: true,
      stdio: 'ignore',
      env: { ...process.env, ...s3Env(s3.endpoint), CAAS_ROOT: ROOT, TMPDIR: base, ...env, AWS_BATCH_JOB_ID: id },
    });
    const machine: { child: ChildProcess; state: 'running' | 'ended' | 'vanished'; exit?: number | null } = { child, state: 'running' };
    child.on('exit', (code) => {
      machine.exit = code;
      if (machine.state === 'running') machine.state = 'ended';
    });
    this.machines.set(id, machine);
    return id;
  }

  stop(id: string, state: 'ended' | 'vanished' = 'ended'): void {
    const machine = this.machines.get(id);
    if (!machine) return;
    if (machine.state === 'running') machine.state = state;
    try {
      process.kill(-machine.child.pid!, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }

  stopAll(): void {
    for (const id of this.machines.keys()) this.stop(id);
  }
}

const isRunning = (child: ChildProcess | undefined) => child !== undefined && child.exitCode === null && child.signalCode === null;

const ec2Cloud = new FakeCloud('i');
const batchCloud = new FakeCloud('job');

function mockEc2(): void {
  ec2.reset();
  ec2.on(DescribeImagesCommand).resolves({ Images: [{ RootDeviceName: '/dev/xvda' }] });
  ec2.on(RunInstancesCommand).callsFake((input: RunInstancesCommandInput) => {
    const script = Buffer.from(input.UserData!, 'base64').toString('utf8');
    const id = ec2Cloud.start(script, input.ClientToken!, { CAAS_POWEROFF_CMD: 'true', CAAS_IMDS_URL: 'http://127.0.0.1:9' });
    return { Instances: [{ InstanceId: id }] };
  });
  ec2.on(DescribeInstancesCommand).callsFake((input: DescribeInstancesCommandInput) => {
    const ids = input.InstanceIds ?? [];
    const instances = ids
      .filter((id) => ec2Cloud.machines.has(id) && ec2Cloud.machines.get(id)!.state !== 'vanished')
      .map((id) => ({ InstanceId: id, State: { Name: ec2Cloud.machines.get(id)!.state === 'running' ? 'running' : 'terminated' } }));
    if (!input.InstanceIds) return { Reservations: [] };
    return { Reservations: [{ Instances: instances }] };
  });
  ec2.on(TerminateInstancesCommand).callsFake((input: { InstanceIds: string[] }) => {
    for (const id of input.InstanceIds) ec2Cloud.stop(id);
    return {};
  });
}

function mockBatch(): void {
  batch.reset();
  // As in Batch, every SubmitJob is a new job, whatever its name: only the launcher keeps it to one.
  const jobs = new Map<string, { name: string; tags: Record<string, string> }>();
  batch.on(SubmitJobCommand).callsFake((input: SubmitJobCommandInput) => {
    const command = input.containerOverrides!.command!;
    expect(command.slice(0, 2)).toEqual(['bash', '-c']);
    expect(input.retryStrategy).toEqual({ attempts: 1 });
    const id = batchCloud.start(command[2]!, randomUUID(), {});
    jobs.set(id, { name: input.jobName!, tags: input.tags ?? {} });
    return { jobId: id, jobName: input.jobName };
  });
  batch.on(ListJobsCommand).callsFake((input: ListJobsCommandInput) => {
    const name = input.filters?.[0]?.values?.[0];
    const listed = [...jobs.entries()].filter(([id, job]) => job.name === name && batchCloud.machines.get(id)?.state !== 'vanished');
    return { jobSummaryList: listed.map(([id, job]) => ({ jobId: id, jobName: job.name, status: batchStatus(id) })) };
  });
  batch.on(DescribeJobsCommand).callsFake((input: DescribeJobsCommandInput) => ({
    jobs: (input.jobs ?? [])
      .filter((id) => batchCloud.machines.has(id) && batchCloud.machines.get(id)!.state !== 'vanished')
      .map((id) => ({
        jobId: id,
        status: batchStatus(id),
        statusReason: batchStatus(id) === 'FAILED' ? 'Essential container in task exited' : undefined,
        tags: jobs.get(id)?.tags,
      })),
  }));
  batch.on(TerminateJobCommand).callsFake((input: { jobId: string }) => {
    batchCloud.stop(input.jobId);
    return {};
  });
}

function batchStatus(id: string): 'RUNNING' | 'SUCCEEDED' | 'FAILED' {
  const machine = batchCloud.machines.get(id)!;
  if (machine.state === 'running') return 'RUNNING';
  return machine.exit === 0 ? 'SUCCEEDED' : 'FAILED';
}

interface Subject {
  name: string;
  make(): Launcher;
  /** Whether the machine (or its agent) is still running; absent where the machine is the runner itself. */
  alive?(instance: string): boolean;
  /** Makes the machine disappear without a word, as a host or instance can; absent where it cannot. */
  vanish?(instance: string): void;
}

const SUBJECTS: Subject[] = [
  {
    name: 'local',
    make: () => new LocalLauncher(AGENT_PROGRAM),
    alive: (instance) => {
      try {
        process.kill(Number(/^local:(\d+)@/.exec(instance)![1]), 0);
        return true;
      } catch {
        return false;
      }
    },
    vanish: (instance) => process.kill(Number(/^local:(\d+)@/.exec(instance)![1]), 'SIGKILL'),
  },
  // inline's agent is the runner itself: it cannot vanish while the runner lives to report it.
  { name: 'inline', make: () => new InlineLauncher(AGENT_PROGRAM) },
  {
    name: 'ec2',
    make: () =>
      new Ec2Launcher({
        storeUrl: `s3://?endpoint=${s3.endpoint}`,
        client: new EC2Client({ region: 'us-east-1' }),
        pollMs: 200,
        instanceAnalysesDir: path.join(ROOT, 'analyses'),
        log: () => {},
      }),
    alive: (instance) => isRunning(ec2Cloud.machines.get(instance)?.child),
    vanish: (instance) => ec2Cloud.stop(instance, 'vanished'),
  },
  {
    name: 'batch',
    make: () =>
      new BatchLauncher({
        storeUrl: `s3://?endpoint=${s3.endpoint}`,
        client: new BatchClient({ region: 'us-east-1' }),
        pollMs: 200,
        imageAnalysesDir: path.join(ROOT, 'analyses'),
        log: () => {},
      }),
    alive: (instance) => isRunning(batchCloud.machines.get(instance)?.child),
    vanish: (instance) => batchCloud.stop(instance, 'vanished'),
  },
];

beforeAll(async () => {
  s3 = await startS3rver();
  // The local agent and the analysis reach s3rver with the runner's own environment.
  Object.assign(process.env, s3Env(s3.endpoint));
  store = new S3Store('s3://', { home: os.tmpdir(), endpoint: s3.endpoint });
  await store.createBucket(BUCKET);
  await store.put(BUCKET, `${GROUP}/inputs/data.txt`, 'spikes\n');
  base = scratchDir('launcher-conformance');
  mockEc2();
  mockBatch();
});
afterAll(async () => {
  ec2Cloud.stopAll();
  batchCloud.stopAll();
  await store?.close();
  await s3?.stop();
  removeDir(base);
});

/** A mock-wait job of its own (timestamp, config, start file), launched as the runner would. */
async function jobFor(subject: string, config: { wait: number }, options: { deadlineMs?: number } = {}) {
  const tag = randomUUID().slice(0, 8);
  const timestamp = `20260101T000000000Z-${tag}`;
  const configname = `conformance-${tag}.json`;
  await store.put(BUCKET, `${GROUP}/configs/${configname}`, JSON.stringify({ ...config, marker: 'x' }));
  const started = path.join(base, `${subject}-${tag}.started`);
  mkdirSync(base, { recursive: true });
  const request: LaunchRequest = {
    identity: `${tag}${'0'.repeat(56)}`,
    attempt: 1,
    analysis: 'mock-wait',
    group: GROUP,
    blueprint: Blueprint.parse({
      bucket: BUCKET,
      ami: 'ami-0123456789abcdef0',
      max_runtime_minutes: 10,
      batch: { job_queue: 'caas-queue', job_definition: 'caas-job:1' },
    }),
    instanceType: 't3.micro',
    deadline: new Date(Date.now() + (options.deadlineMs ?? 10 * 60_000)),
    spec: {
      store: `s3://?endpoint=${s3.endpoint}`,
      store_settings: {},
      bucket: BUCKET,
      group: GROUP,
      timestamp,
      dataname: `s3://${BUCKET}/${GROUP}/inputs/data.txt`,
      inputs: [`s3://${BUCKET}/${GROUP}/inputs/data.txt`],
      input_checks: {},
      configname,
      // biome-ignore lint/suspicious/noTemplateCurlyInString: agent placeholder
      command: ['bash', '${analysis_dir}/run.sh'],
      analysis_dir: path.join(ROOT, 'analyses/mock-wait'),
      instance: subject,
      max_runtime_s: 600,
      status_interval_ms: 500,
      log_limit_bytes: 1024 * 1024,
      environment: { set: { CAAS_MOCK_START_FILE: started }, pass: [] },
    },
  };
  const end = jobFolder(BUCKET, GROUP, timestamp).end;
  const starts = () => (existsSync(started) ? readFileSync(started, 'utf8').split('\n').filter(Boolean).length : 0);
  return { request, end, starts };
}

async function until(condition: () => boolean, ms: number): Promise<void> {
  for (const stop = Date.now() + ms; !condition() && Date.now() < stop; ) await new Promise((r) => setTimeout(r, 100));
  expect(condition()).toBe(true);
}

describe.each(SUBJECTS)('the launcher contract: $name', (subject) => {
  it('runs the job under the bucket contract, and its end is seen from end.txt', { timeout: 90_000 }, async () => {
    const launcher = subject.make();
    try {
      const { request, end, starts } = await jobFor(subject.name, { wait: 0 });
      const job = await launcher.launch(request);
      const ended = await job.ended;
      expect(ended.reason, JSON.stringify(ended)).toBeUndefined();
      expect((await store.get(BUCKET, end)).toString()).toMatch(/^SUCCESS\n/);
      expect(starts()).toBe(1);
    } finally {
      await launcher.close();
    }
  });

  it('starts one machine for one (identity, attempt), however often it is asked', { timeout: 90_000 }, async () => {
    const launcher = subject.make();
    try {
      const { request, starts } = await jobFor(subject.name, { wait: 1 });
      const [first, second] = await Promise.all([launcher.launch(request), launcher.launch(request)]);
      const third = await launcher.launch(request);
      expect(new Set([first.instance, second.instance, third.instance]).size).toBe(1);
      await first.ended;
      expect(starts()).toBe(1);
    } finally {
      await launcher.close();
    }
  });

  it('stops the machine when cancelled', { timeout: 90_000 }, async () => {
    const launcher = subject.make();
    try {
      const { request, starts } = await jobFor(subject.name, { wait: 120 });
      const job = await launcher.launch(request);
      await until(() => starts() === 1, 60_000);
      const asked = Date.now();
      await job.cancel('cancelled by the conformance test');
      const ended = await job.ended;
      expect(ended.reason).toContain('cancelled by the conformance test');
      expect(Date.now() - asked).toBeLessThan(30_000);
      if (subject.alive) await until(() => !subject.alive!(job.instance), 15_000);
    } finally {
      await launcher.close();
    }
  });

  it('stops the machine at its deadline', { timeout: 90_000 }, async () => {
    const launcher = subject.make();
    try {
      // The agent's own max runtime (600 s) is far off: only the launcher can end this job in time.
      const { request } = await jobFor(subject.name, { wait: 120 }, { deadlineMs: 3_000 });
      const job = await launcher.launch(request);
      const ended = await job.ended;
      expect(ended.reason).toMatch(/^timeout: past max runtime/);
      expect(Date.now()).toBeLessThan(request.deadline.getTime() + 30_000);
      if (subject.alive) await until(() => !subject.alive!(job.instance), 15_000);
    } finally {
      await launcher.close();
    }
  });

  if (subject.vanish) {
    const vanish = subject.vanish;
    it('reports a machine that vanished without an end', { timeout: 90_000 }, async () => {
      const launcher = subject.make();
      try {
        const { request, end, starts } = await jobFor(subject.name, { wait: 120 });
        const job = await launcher.launch(request);
        await until(() => starts() === 1, 60_000);
        vanish(job.instance);
        const ended = await job.ended;
        expect(ended.reason).toMatch(/agent killed by SIGKILL|lost/);
        await expect(store.head(BUCKET, end)).resolves.toBeUndefined();
      } finally {
        await launcher.close();
      }
    });
  }
});
