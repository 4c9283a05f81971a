import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import {
  DescribeImagesCommand,
  DescribeInstancesCommand,
  type DescribeInstancesCommandInput,
  EC2Client,
  type Instance,
  RunInstancesCommand,
  type RunInstancesCommandInput,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Ec2Launcher } from '../../backends/compute/ec2.ts';
import { type Database, openDatabase } from '../../backends/db/index.ts';
import type { ObjectStore } from '../../backends/storage/index.ts';
import { S3Store } from '../../backends/storage/s3.ts';
import { type S3rverHandle, startS3rver } from '../../fixtures/s3rver.ts';
import { AgentSpec } from '../../models/agent-spec.ts';
import { jobKeys, parseJobRef } from '../../models/bucket-contract.ts';
import type { Owner } from '../../models/record.ts';
import { runAgent } from '../../wrapper/agent.ts';
import { type ExecuteContext, executeJob, jobNames } from '../../wrapper/execute.ts';
import { readHeartbeat } from '../../wrapper/liveness.ts';
import { JobPreparer, type PreparedJob } from '../../wrapper/prepare.ts';
import { AnalysisRepo, mockJob, removeDir, scratchDir, sessionFile } from '../support/workspace.ts';

const ec2 = mockClient(EC2Client);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A fake EC2 account: each instance runs the real agent from its UserData (or, if told, never starts it). */
class FakeInstances {
  readonly instances = new Map<string, { state: string; tags: Record<string, string>; stop?: AbortController; ended?: Promise<unknown> }>();
  /** Whether the next instances run their agent, or stay silent (a machine that boots and hangs). */
  runAgents = true;

  constructor(private readonly scratch: string) {}

  run(input: RunInstancesCommandInput) {
    const id = `i-${this.instances.size + 1}`;
    const tags = Object.fromEntries((input.TagSpecifications?.[0]?.Tags ?? []).map((t) => [t.Key!, t.Value!]));
    const instance: { state: string; tags: Record<string, string>; stop?: AbortController; ended?: Promise<unknown> } = {
      state: 'running',
      tags,
    };
    this.instances.set(id, instance);
    if (this.runAgents) {
      const script = Buffer.from(input.UserData!, 'base64').toString('utf8');
      const spec = AgentSpec.parse(JSON.parse(/<<'CAAS_SPEC'\n(.*)\nCAAS_SPEC/s.exec(script)![1]!));
      instance.stop = new AbortController();
      instance.ended = (async () => {
        const dir = await mkdtemp(path.join(this.scratch, 'instance-'));
        process.env.CAAS_INSTANCE_ID = id;
        try {
          await runAgent(spec, dir, { cancel: instance.stop!.signal });
        } finally {
          instance.state = 'terminated';
          await rm(dir, { recursive: true, force: true });
        }
      })();
      instance.ended.catch(() => {});
    }
    return { Instances: [{ InstanceId: id }] };
  }

  describe(input: DescribeInstancesCommandInput) {
    const matches = (id: string): boolean => {
      if (input.InstanceIds) return input.InstanceIds.includes(id);
      const instance = this.instances.get(id)!;
      return (input.Filters ?? []).every((filter) => {
        if (filter.Name === 'instance-state-name') return filter.Values!.includes(instance.state);
        if (filter.Name?.startsWith('tag:')) return filter.Values!.includes(instance.tags[filter.Name.slice(4)] ?? '');
        return true;
      });
    };
    const found: Instance[] = [...this.instances.entries()]
      .filter(([id]) => matches(id))
      .map(([id, i]) => ({ InstanceId: id, State: { Name: i.state as 'running' } }));
    return { Reservations: [{ Instances: found }] };
  }

  terminate(ids: string[]) {
    for (const id of ids) {
      const instance = this.instances.get(id);
      if (!instance) continue;
      instance.stop?.abort('terminated');
      if (!instance.stop) instance.state = 'terminated';
    }
    return {};
  }
}

/**
 * On EC2 a runner that stops renewing (a closed laptop) leaves its instance running. The next
 * runner must follow that instance, not launch a second one, while the instance's agent shows
 * signs of life, and only start again once the instance is gone without an answer.
 */
describe('EC2: taking over a job whose runner stopped', () => {
  let s3: S3rverHandle;
  let base: string;
  let repo: AnalysisRepo;
  let fake: FakeInstances;
  let job: PreparedJob;
  const opened: { close(): Promise<void> }[] = [];

  beforeAll(async () => {
    s3 = await startS3rver();
    base = scratchDir('ec2-adoption');
    repo = new AnalysisRepo(base);
    const data = sessionFile(base);
    const preparer = new JobPreparer({ storeScheme: 's3', allowDirty: false, roots: [repo.dir] });
    const prepared = await preparer.prepare({ where: 'jobs:1', value: JSON.parse(mockJob('ec2', { wait: 0 }, data)) });
    if (!prepared.ok) throw new Error(prepared.reason);
    job = prepared.job;
  });
  afterAll(async () => {
    await s3.stop();
    removeDir(base);
  });
  beforeEach(() => {
    fake = new FakeInstances(base);
    ec2.reset();
    ec2.on(DescribeImagesCommand).resolves({ Images: [{ RootDeviceName: '/dev/xvda' }] });
    ec2.on(RunInstancesCommand).callsFake((input: RunInstancesCommandInput) => fake.run(input));
    ec2.on(DescribeInstancesCommand).callsFake((input: DescribeInstancesCommandInput) => fake.describe(input));
    ec2.on(TerminateInstancesCommand).callsFake((input: { InstanceIds: string[] }) => fake.terminate(input.InstanceIds));
  });
  afterEach(async () => {
    delete process.env.CAAS_MOCK_GATE_FILE;
    for (const instance of fake.instances.values()) instance.stop?.abort('test over');
    await Promise.all([...fake.instances.values()].map((i) => i.ended?.catch(() => {})));
    await Promise.all(opened.splice(0).map((o) => o.close()));
  });

  async function runner(name: string, db: Database, renews: boolean): Promise<ExecuteContext> {
    const store: ObjectStore = new S3Store('s3://', { home: base, endpoint: s3.endpoint });
    if (!(await store.bucketExists(job.bucket))) await store.createBucket(job.bucket);
    const launcher = new Ec2Launcher({
      storeUrl: `s3://?endpoint=${s3.endpoint}`,
      client: new EC2Client({ region: 'us-east-1' }),
      pollMs: 200,
      instanceAnalysesDir: repo.dir,
      log: () => {},
    });
    opened.push(store, launcher);
    const owner: Owner = { host: `host-${name}`, pid: 1, run: randomUUID() };
    // A runner that has stopped (a closed laptop): its lease is never extended, though it still asks.
    const stalled: Database = Object.assign(Object.create(db) as Database, {
      renew: async (id: string, who: Owner) => (await db.get(id))?.lease?.owner.run === who.run,
    });
    return { db: renews ? db : stalled, store, launcher, owner, leaseMs: 1500, statusIntervalMs: 500 };
  }

  /**
   * A first runner that launched an instance which boots and stays silent (no agent, no heartbeat),
   * then stalled past its lease; instances launched from now on run their agents.
   */
  async function stalledOverSilentInstance() {
    const { a, b } = await databases();
    fake.runAgents = false;
    const first = executeJob(job, await runner('a', a, false));
    for (let i = 0; i < 100 && fake.instances.size === 0; i++) await sleep(100);
    await sleep(2500);
    fake.runAgents = true;
    return { b, first };
  }

  async function databases() {
    const file = path.join(base, `${randomUUID()}.sqlite`);
    const a = await openDatabase(`sqlite:${file}`, { home: base });
    const b = await openDatabase(`sqlite:${file}`, { home: base });
    opened.push(a, b);
    return { a, b };
  }

  it('a live instance is adopted: no second RunInstances while its heartbeat is fresh, and its result is recorded once', {
    timeout: 120_000,
  }, async () => {
    const { a, b } = await databases();
    // The instance's analysis waits for this file: it stays at work until the test has seen the adoption.
    const gate = path.join(base, `gate-${randomUUID()}`);
    process.env.CAAS_MOCK_GATE_FILE = gate;
    const stalled = await runner('a', a, false);
    const first = executeJob(job, stalled);
    // The instance's agent has written its heartbeat, and the first runner's 1.5 s lease has lapsed.
    const heartbeat = async () => {
      const record = await a.get(job.identity);
      const timestamp = record?.attempts[0]?.results ? parseJobRef(record.attempts[0].results)?.timestamp : undefined;
      if (!record?.lease || !timestamp || Date.parse(record.lease.expires) > Date.now()) return false;
      const names = jobNames(job);
      const keys = jobKeys(job.bucket, job.group, timestamp, names.dataname, names.configname);
      return (await readHeartbeat(stalled.store, job.bucket, keys)).heartbeat !== undefined;
    };
    // s3rver under load may drop a read now and then: that look says nothing yet, the next one asks again.
    const seen = () => heartbeat().catch(() => false);
    // The look that saw it is the answer: a second look can miss a status file s3rver is rewriting.
    let ready = false;
    for (let i = 0; i < 600 && !ready; i++) {
      ready = await seen();
      if (!ready) await sleep(100);
    }
    expect(ready).toBe(true);
    const adopting = executeJob(job, await runner('b', b, true));
    for (let i = 0; i < 300 && !(await b.get(job.identity))?.attempts[0]?.adopted; i++) await sleep(100);
    writeFileSync(gate, '');
    const second = await adopting;

    expect(ec2.commandCalls(RunInstancesCommand)).toHaveLength(1);
    expect(ec2.commandCalls(TerminateInstancesCommand)).toHaveLength(0);
    // The reason says why when it is not a success (a lost adoption says which look failed).
    expect(second.outcome, second.reason).toBe('succeeded');
    expect(second).toMatchObject({ outcome: 'succeeded', attempt: 1 });
    expect(second.reason).toMatch(/adopted by host-b .*heartbeat is fresh \(i-1,/);
    // The stalled runner learns its job was adopted and leaves it alone.
    expect(await first).toMatchObject({ outcome: 'running', reason: expect.stringMatching(/adopted the job/) });
    const record = await b.get(job.identity);
    expect(record?.status).toBe('succeeded');
    expect(record?.attempts).toHaveLength(1);
    expect(record?.attempts[0]?.adopted?.map((x) => x.by.host)).toEqual(['host-b']);
  });

  it('an instance that is up but silent is adopted; once it is gone without an answer, one new instance runs the job', {
    timeout: 120_000,
  }, async () => {
    const { b, first } = await stalledOverSilentInstance();
    const second = executeJob(job, await runner('b', b, true));
    // No heartbeat, but the machine is listed as running: followed, not replaced.
    await sleep(3000);
    expect(ec2.commandCalls(RunInstancesCommand)).toHaveLength(1);
    fake.instances.get('i-1')!.state = 'terminated';
    const result = await second;

    expect(ec2.commandCalls(RunInstancesCommand)).toHaveLength(2);
    const tags = ec2.commandCalls(RunInstancesCommand)[1]!.args[0].input.TagSpecifications![0]!.Tags!;
    expect(tags).toContainEqual({ Key: 'caas:attempt', Value: '2' });
    expect(result).toMatchObject({ outcome: 'succeeded', attempt: 2 });
    const record = await b.get(job.identity);
    expect(record?.attempts.map((x) => [x.n, x.status])).toEqual([
      [1, 'failed'],
      [2, 'succeeded'],
    ]);
    expect(record?.attempts[0]?.reason).toMatch(/adopted, then its agent stopped: it never wrote a heartbeat and its machine is gone/);
    await first;
  });

  it('when EC2 cannot be asked (throttled), a silent instance is not taken for dead: nothing is launched until it answers', {
    timeout: 120_000,
  }, async () => {
    const { b, first } = await stalledOverSilentInstance();
    let throttled = true;
    ec2.on(DescribeInstancesCommand).callsFake((input: DescribeInstancesCommandInput) => {
      if (throttled && input.Filters?.some((f) => f.Name === 'tag:caas:identity')) {
        throw Object.assign(new Error('Request limit exceeded.'), { name: 'RequestLimitExceeded' });
      }
      return fake.describe(input);
    });
    const second = executeJob(job, await runner('b', b, true));
    await sleep(4000);
    expect(ec2.commandCalls(RunInstancesCommand)).toHaveLength(1);
    expect((await b.get(job.identity))?.attempts[0]?.adopted?.map((x) => x.by.host)).toEqual(['host-b']);
    // EC2 answers again, and the instance is gone: now, and only now, a new attempt starts.
    fake.instances.get('i-1')!.state = 'terminated';
    throttled = false;
    const result = await second;
    expect(ec2.commandCalls(RunInstancesCommand)).toHaveLength(2);
    expect(result).toMatchObject({ outcome: 'succeeded', attempt: 2 });
    await first;
  });
});
