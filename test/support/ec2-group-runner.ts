/**
 * One runner of several racing over the same jobs on the EC2 launcher (test/group-limit.test.ts),
 * in its own process. Only the EC2 API is mocked (aws-sdk-client-mock): RunInstances runs the
 * instance's agent from its UserData in this process, against the real S3 server, and the
 * instance ends when the agent does. The metadata DB is the shared SQLite file.
 * Usage: node --import tsx ec2-group-runner.ts '<config JSON>' (see RunnerConfig); prints "ready",
 * waits for a line on stdin so every runner starts at once, then prints its results as one JSON array.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
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
import { Ec2Launcher } from '../../backends/compute/ec2.ts';
import { openDatabase } from '../../backends/db/index.ts';
import { S3Store } from '../../backends/storage/s3.ts';
import { AgentSpec } from '../../models/agent-spec.ts';
import { runAgent } from '../../wrapper/agent.ts';
import { type ExecuteContext, executeJob, type JobResult } from '../../wrapper/execute.ts';
import { JobPreparer } from '../../wrapper/prepare.ts';
import { forEachAtMost } from '../../wrapper/worker-pool.ts';

interface RunnerConfig {
  run: string;
  dbUrl: string;
  s3Endpoint: string;
  /** The analyses repository: the instance image's analyses folder too. */
  analyses: string;
  scratch: string;
  jobs: unknown[];
  concurrency: number;
}

const config = JSON.parse(process.argv[2] ?? '{}') as RunnerConfig;

/** This runner's EC2 account: each instance runs the real agent and is terminated when it ends. */
const instances = new Map<string, { state: string; tags: Record<string, string>; stop: AbortController }>();
const ec2 = mockClient(EC2Client);
ec2.on(DescribeImagesCommand).resolves({ Images: [{ RootDeviceName: '/dev/xvda' }] });
ec2.on(RunInstancesCommand).callsFake((input: RunInstancesCommandInput) => {
  const id = `i-${config.run}-${instances.size + 1}`;
  const tags = Object.fromEntries((input.TagSpecifications?.[0]?.Tags ?? []).map((t) => [t.Key!, t.Value!]));
  const instance = { state: 'running', tags, stop: new AbortController() };
  instances.set(id, instance);
  const script = Buffer.from(input.UserData!, 'base64').toString('utf8');
  const spec = AgentSpec.parse(JSON.parse(/<<'CAAS_SPEC'\n(.*)\nCAAS_SPEC/s.exec(script)![1]!));
  void (async () => {
    const dir = await mkdtemp(path.join(config.scratch, 'instance-'));
    try {
      await runAgent(spec, dir, { cancel: instance.stop.signal });
    } finally {
      instance.state = 'terminated';
      await rm(dir, { recursive: true, force: true });
    }
  })().catch(() => {});
  return { Instances: [{ InstanceId: id }] };
});
ec2.on(DescribeInstancesCommand).callsFake((input: DescribeInstancesCommandInput) => {
  const matches = (id: string) => {
    if (input.InstanceIds) return input.InstanceIds.includes(id);
    const instance = instances.get(id)!;
    return (input.Filters ?? []).every((filter) => {
      if (filter.Name === 'instance-state-name') return filter.Values!.includes(instance.state);
      if (filter.Name?.startsWith('tag:')) return filter.Values!.includes(instance.tags[filter.Name.slice(4)] ?? '');
      return true;
    });
  };
  const found: Instance[] = [...instances.entries()]
    .filter(([id]) => matches(id))
    .map(([id, i]) => ({ InstanceId: id, State: { Name: i.state as 'running' } }));
  return { Reservations: [{ Instances: found }] };
});
ec2.on(TerminateInstancesCommand).callsFake((input: { InstanceIds: string[] }) => {
  for (const id of input.InstanceIds) instances.get(id)?.stop.abort('terminated');
  return {};
});

const store = new S3Store('s3://', { home: config.scratch, endpoint: config.s3Endpoint });
const launcher = new Ec2Launcher({
  storeUrl: `s3://?endpoint=${config.s3Endpoint}`,
  client: new EC2Client({ region: 'us-east-1' }),
  pollMs: 200,
  instanceAnalysesDir: config.analyses,
  log: () => {},
});
const db = await openDatabase(config.dbUrl, { home: config.scratch });
const preparer = new JobPreparer({ storeScheme: 's3', allowDirty: false, roots: [config.analyses] });
const jobs = [];
for (const [i, value] of config.jobs.entries()) {
  const prepared = await preparer.prepare({ where: `jobs:${i + 1}`, value });
  if (!prepared.ok) throw new Error(prepared.reason);
  jobs.push(prepared.job);
}
const ctx: ExecuteContext = {
  db,
  store,
  launcher,
  owner: { host: hostname(), pid: process.pid, run: randomUUID() },
  leaseMs: 6000,
  statusIntervalMs: 500,
  slotWaitMs: 300_000,
  note: () => {},
};
process.stdout.write('ready\n');
await once(process.stdin, 'data');
process.stdin.pause();

const results: JobResult[] = [];
await forEachAtMost(jobs, config.concurrency, async (job) => {
  results.push(await executeJob(job, ctx));
});
await launcher.close();
await store.close();
await db.close();
process.stdout.write(`${JSON.stringify(results)}\n`);
