import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  DescribeImagesCommand,
  DescribeInstancesCommand,
  type DescribeInstancesCommandInput,
  EC2Client,
  type Instance,
  RunInstancesCommand,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { clientToken, Ec2Launcher, type Ec2LauncherOptions } from '../../backends/compute/ec2.ts';
import type { LaunchRequest } from '../../backends/compute/index.ts';
import { FileStore } from '../../backends/storage/fs.ts';
import { Blueprint } from '../../models/blueprint.ts';
import { jobKeys } from '../../models/bucket-contract.ts';

const ec2 = mockClient(EC2Client);
const IDENTITY = 'ab'.repeat(32);
const BLUEPRINT = Blueprint.parse({
  bucket: 'mock-wait',
  region: 'eu-west-1',
  ami: 'ami-0123456789abcdef0',
  instance_type: 't3.micro',
  allowed_instance_types: ['t3.micro', 'c5.large'],
  iam_instance_profile: 'caas-instance',
  subnet_id: 'subnet-0abc',
  security_group_ids: ['sg-01', 'sg-02'],
  volume_gb: 64,
  max_runtime_minutes: 10,
  deploy_limit: 2,
});

function request(overrides: Partial<LaunchRequest> = {}): LaunchRequest {
  return {
    identity: IDENTITY,
    attempt: 1,
    analysis: 'mock-wait',
    group: 'caas',
    blueprint: BLUEPRINT,
    instanceType: 't3.micro',
    deadline: new Date(Date.now() + 10 * 60_000),
    spec: {
      store: 's3://',
      store_settings: {},
      input_checks: {},
      bucket: 'mock-wait',
      group: 'caas',
      timestamp: '20250101T000000000Z-abababab',
      dataname: 's3://mock-wait/caas/inputs/data.txt',
      inputs: ['s3://mock-wait/caas/inputs/data.txt'],
      configname: 'caas-abababababababab.json',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: agent placeholder
      command: ['bash', '${analysis_dir}/run.sh'],
      analysis_dir: '/home/alice/caas/analyses/mock-wait',
      instance: 'ec2@runner',
      max_runtime_s: 600,
      status_interval_ms: 2000,
      log_limit_bytes: 1024 * 1024,
      environment: { set: {}, pass: [] },
    },
    ...overrides,
  };
}

let scratch: string;
let endStore: FileStore;
const launchers: Ec2Launcher[] = [];
const logged: string[] = [];

function launcher(options: Partial<Ec2LauncherOptions> = {}): Ec2Launcher {
  const made = new Ec2Launcher({
    storeUrl: 's3://',
    client: new EC2Client({ region: 'eu-west-1' }),
    pollMs: 10,
    endStore,
    log: (line) => logged.push(line),
    ...options,
  });
  launchers.push(made);
  return made;
}

/** DescribeInstances by id answers with this state (tests change it as the "instance" lives). */
let instanceState: Instance = { InstanceId: 'i-0001', State: { Name: 'running' } };
/** Live instances per call of the deploy_limit count, in order; the last one repeats. */
let liveCounts: number[] = [0];

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'caas-ec2-'));
  endStore = new FileStore(`file://${scratch}`, { home: scratch });
});
afterAll(async () => {
  // The unit tier shares modules between files: later ones get the real EC2Client back.
  ec2.restore();
  await rm(scratch, { recursive: true, force: true });
});
beforeEach(() => {
  ec2.reset();
  logged.length = 0;
  instanceState = { InstanceId: 'i-0001', State: { Name: 'running' } };
  liveCounts = [0];
  ec2.on(DescribeImagesCommand).resolves({ Images: [{ ImageId: BLUEPRINT.ami, RootDeviceName: '/dev/sda1' }] });
  ec2.on(RunInstancesCommand).resolves({ Instances: [{ InstanceId: 'i-0001' }] });
  ec2.on(TerminateInstancesCommand).callsFake(() => {
    instanceState = { ...instanceState, State: { Name: 'shutting-down' }, StateReason: { Message: 'Client.UserInitiatedShutdown' } };
    return {};
  });
  ec2.on(DescribeInstancesCommand).callsFake((input: DescribeInstancesCommandInput) => {
    if (input.InstanceIds) return { Reservations: [{ Instances: input.InstanceIds.map((id) => ({ ...instanceState, InstanceId: id })) }] };
    const live = liveCounts.length > 1 ? liveCounts.shift()! : liveCounts[0]!;
    return { Reservations: [{ Instances: Array.from({ length: live }, (_, i) => ({ InstanceId: `i-other${i}` })) }] };
  });
});
afterEach(async () => {
  await Promise.all(launchers.splice(0).map((l) => l.close()));
});

function runInput(n = 0) {
  return ec2.commandCalls(RunInstancesCommand)[n]!.args[0].input;
}

describe('Ec2Launcher.launch', () => {
  it('starts one instance from the blueprint: AMI, type, profile, network, root volume, self-termination, tags', async () => {
    const deadline = new Date('2030-01-01T01:00:00.000Z');
    const job = await launcher().launch(request({ instanceType: 'c5.large', deadline }));
    const launchedAt = Date.now();
    expect(job.instance).toBe('i-0001');
    const input = runInput();
    expect(input).toMatchObject({
      ImageId: 'ami-0123456789abcdef0',
      InstanceType: 'c5.large',
      MinCount: 1,
      MaxCount: 1,
      IamInstanceProfile: { Name: 'caas-instance' },
      SubnetId: 'subnet-0abc',
      SecurityGroupIds: ['sg-01', 'sg-02'],
      InstanceInitiatedShutdownBehavior: 'terminate',
      BlockDeviceMappings: [{ DeviceName: '/dev/sda1', Ebs: { VolumeSize: 64, VolumeType: 'gp3', DeleteOnTermination: true } }],
    });
    const expectedTags = {
      Name: `caas-mock-wait-${IDENTITY.slice(0, 12)}`,
      'caas:identity': IDENTITY,
      'caas:attempt': '1',
      'caas:analysis': 'mock-wait',
      'caas:group': 'caas',
      'caas:job': 'mock-wait/caas/20250101T000000000Z-abababab',
    };
    expect(input.TagSpecifications?.map((t) => t.ResourceType)).toEqual(['instance', 'volume']);
    for (const spec of input.TagSpecifications ?? []) {
      const { 'caas:deadline': tagged, ...tags } = Object.fromEntries((spec.Tags ?? []).map((t) => [t.Key, t.Value]));
      expect(tags).toEqual(expectedTags);
      // The deadline, moved on by the moments the launch took before RunInstances.
      expect(Date.parse(tagged!) - deadline.getTime()).toBeGreaterThanOrEqual(0);
      expect(Date.parse(tagged!) - deadline.getTime()).toBeLessThan(Date.now() - launchedAt + 1000);
    }
    expect(input.ClientToken!.length).toBeLessThanOrEqual(64);
  });

  it('gives the same ClientToken to a retried launch of the same attempt, and a new one to the next attempt', async () => {
    const l = launcher();
    await l.launch(request());
    await l.launch(request());
    await l.launch(request({ attempt: 2 }));
    const tokens = [0, 1, 2].map((n) => runInput(n).ClientToken);
    expect(tokens[0]).toBe(tokens[1]);
    expect(tokens[2]).not.toBe(tokens[0]);
    expect(tokens[0]).toBe(clientToken(IDENTITY, 1));
    expect(clientToken('cd'.repeat(32), 1)).not.toBe(tokens[0]);
  });

  it('writes the spec into UserData with analysis_dir moved to where the AMI holds the analyses', async () => {
    await launcher().launch(request());
    const script = Buffer.from(runInput().UserData!, 'base64').toString('utf8');
    expect(script.startsWith('#!/bin/bash\n')).toBe(true);
    const spec = JSON.parse(/<<'CAAS_SPEC'\n(.*)\nCAAS_SPEC\n/.exec(script)![1]!);
    expect(spec).toEqual({ ...request().spec, analysis_dir: '/opt/caas/analyses/mock-wait' });
    expect(script).toContain("export AWS_REGION='eu-west-1'");
    expect(script).toContain('sleep 600 &');
  });

  it('keeps shell syntax in user values inert: they stay inside the quoted heredoc', async () => {
    const hostile = "x'; touch /tmp/pwned; echo '$(id)`id`\nCAAS_SPEC\nrm -rf /";
    await launcher().launch(request({ spec: { ...request().spec, dataname: hostile, configname: hostile } }));
    const script = Buffer.from(runInput().UserData!, 'base64').toString('utf8');
    const body = /<<'CAAS_SPEC'\n(.*)\nCAAS_SPEC\n/.exec(script)![1]!;
    expect(JSON.parse(body).dataname).toBe(hostile);
    expect(script.split('\n').filter((line) => line === 'CAAS_SPEC')).toHaveLength(1);
  });

  it('refuses an instance type the blueprint does not allow, before starting anything', async () => {
    await expect(launcher().launch(request({ instanceType: 'p4d.24xlarge' }))).rejects.toThrow(
      /instance type "p4d.24xlarge" is not allowed for mock-wait: use one of t3.micro, c5.large/,
    );
    expect(ec2.commandCalls(RunInstancesCommand)).toHaveLength(0);
  });

  it('refuses a blueprint without an AMI, saying what the image needs', async () => {
    const { ami: _, ...rest } = BLUEPRINT;
    await expect(launcher().launch(request({ blueprint: { ...rest } }))).rejects.toThrow(/names no "ami".*Node >= 20.19/);
  });

  it('refuses a store the instance cannot reach', () => {
    expect(() => new Ec2Launcher({ storeUrl: 'file:' })).toThrow(/needs --store s3:\/\//);
  });
});

describe('deploy_limit', () => {
  it('waits while the analysis has deploy_limit live instances, says so once, then launches', async () => {
    liveCounts = [2, 2, 3, 1];
    const r = request();
    const started = Date.now();
    await launcher({ pollMs: 50 }).launch(r);
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(150);
    expect(logged).toEqual(['deploy_limit 2 reached for mock-wait: waiting']);
    const counts = ec2.commandCalls(DescribeInstancesCommand).filter((c) => c.args[0].input.Filters);
    expect(counts).toHaveLength(4);
    expect(counts[0]!.args[0].input.Filters).toEqual([
      { Name: 'tag:caas:analysis', Values: ['mock-wait'] },
      { Name: 'instance-state-name', Values: ['pending', 'running'] },
    ]);
    expect(ec2.commandCalls(RunInstancesCommand)).toHaveLength(1);
    // The wait for a slot does not count against the job's max runtime.
    const tagged = runInput().TagSpecifications![0]!.Tags!.find((t) => t.Key === 'caas:deadline')!.Value!;
    expect(Date.parse(tagged) - r.deadline.getTime()).toBeGreaterThanOrEqual(150);
    expect(Date.parse(tagged) - r.deadline.getTime()).toBeLessThanOrEqual(waited);
  });

  it('gives up after the wait bound with a message that says what to do', async () => {
    liveCounts = [2];
    await expect(launcher({ deployWaitMs: 50 }).launch(request())).rejects.toThrow(
      /deploy_limit 2 for mock-wait stayed reached .*raise deploy_limit/,
    );
    expect(ec2.commandCalls(RunInstancesCommand)).toHaveLength(0);
  });

  it('counts its own launches that EC2 does not list yet, so concurrent launches cannot overshoot', async () => {
    let n = 0;
    ec2.on(RunInstancesCommand).callsFake(() => ({ Instances: [{ InstanceId: `i-mine${n++}` }] }));
    const l = launcher({ deployWaitMs: 100 });
    const results = await Promise.allSettled([l.launch(request()), l.launch(request({ attempt: 2 })), l.launch(request({ attempt: 3 }))]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected']);
    expect(ec2.commandCalls(RunInstancesCommand)).toHaveLength(2);
  });
});

describe('ended', () => {
  it('says "instance lost" with EC2\'s reason when the instance terminated without end.txt', async () => {
    const job = await launcher().launch(request());
    instanceState = { InstanceId: 'i-0001', State: { Name: 'terminated' }, StateReason: { Message: 'Server.SpotInstanceTermination' } };
    await expect(job.ended).resolves.toEqual({ exitCode: null, reason: 'instance lost: Server.SpotInstanceTermination' });
  });

  it("gives no reason of its own when the agent wrote end.txt: the agent's verdict stands", async () => {
    const r = request();
    const keys = jobKeys(r.spec.bucket, r.spec.group, r.spec.timestamp, r.spec.dataname, r.spec.configname);
    await endStore.put(r.spec.bucket, keys.end, 'FAILED\nexit code 3\n');
    try {
      const job = await launcher().launch(r);
      instanceState = { InstanceId: 'i-0001', State: { Name: 'terminated' }, StateReason: { Message: 'Client.InstanceInitiatedShutdown' } };
      await expect(job.ended).resolves.toEqual({ exitCode: null });
    } finally {
      await endStore.delete(r.spec.bucket, keys.end);
    }
  });

  it('terminates an instance still running at the deadline and says it timed out', async () => {
    const job = await launcher().launch(request({ deadline: new Date(Date.now() + 100) }));
    await expect(job.ended).resolves.toEqual({ exitCode: null, reason: 'timeout: past max runtime of 10 min' });
    expect(ec2.commandCalls(TerminateInstancesCommand).map((c) => c.args[0].input)).toEqual([{ InstanceIds: ['i-0001'] }]);
  });

  it('cancel terminates the instance and ends with the cancel reason', async () => {
    const job = await launcher({ pollMs: 60_000 }).launch(request());
    await job.cancel('claim lost: another runner took this job over');
    expect(ec2.commandCalls(TerminateInstancesCommand).map((c) => c.args[0].input)).toEqual([{ InstanceIds: ['i-0001'] }]);
    await expect(job.ended).resolves.toEqual({ exitCode: null, reason: 'claim lost: another runner took this job over' });
  });

  it('tolerates a new instance id EC2 does not know yet, and says "instance lost" once a known one disappears', async () => {
    let calls = 0;
    ec2.on(DescribeInstancesCommand, { InstanceIds: ['i-0001'] }).callsFake(() => {
      calls++;
      if (calls === 1) throw Object.assign(new Error('not yet'), { name: 'InvalidInstanceID.NotFound' });
      if (calls === 2) return { Reservations: [{ Instances: [instanceState] }] };
      return { Reservations: [] };
    });
    const job = await launcher().launch(request());
    await expect(job.ended).resolves.toEqual({ exitCode: null, reason: 'instance lost: EC2 no longer lists it' });
  });
});
