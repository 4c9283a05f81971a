import { createHash } from 'node:crypto';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type _InstanceType,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  type DescribeInstancesCommandInput,
  EC2Client,
  type Filter,
  type Instance,
  RunInstancesCommand,
  type Tag,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import type { Blueprint } from '../../models/blueprint.ts';
import { networkStoreExamples, type ObjectStore, storeReach } from '../storage/index.ts';
import {
  type CaasMachine,
  ComputeConfigError,
  type EarlierMachine,
  type Fleet,
  type LaunchedJob,
  type Launcher,
  type LauncherOptions,
  type LaunchRequest,
} from './index.ts';
import { ClientsByRegion, EndMarkers, MonitorGroup, monitorRemote, type RemoteMachine } from './remote-monitor.ts';
import { USER_DATA_LIMIT, userDataScript } from './user-data.ts';

export interface Ec2LauncherOptions extends LauncherOptions {
  /** One client for every region (tests); by default one per blueprint region. */
  client?: EC2Client;
  /** How often instance states are read (default 15 s: DescribeInstances is rate-limited per account). */
  pollMs?: number;
  /** Where end.txt is looked for when an instance is gone (default: the store named by storeUrl). */
  endStore?: ObjectStore;
  /** How long a launch waits for a deploy_limit slot (default: the analysis' max runtime). */
  deployWaitMs?: number;
  /** Where the AMI holds the analyses (default /opt/caas/analyses); analysis_dir is rewritten to it. */
  instanceAnalysesDir?: string;
  /** Progress notes (deploy_limit waits); default stderr. */
  log?: (line: string) => void;
}

const LIVE_STATES = ['pending', 'running'];
const GONE_STATES = new Set(['shutting-down', 'terminated', 'stopping', 'stopped']);
/** Polls during which a fresh instance id may still be unknown to DescribeInstances (eventual consistency). */
const NOT_FOUND_GRACE_POLLS = 8;

/**
 * One EC2 instance per job. The instance runs the same agent a local job runs (from UserData) and
 * powers itself off when the agent ends or its max runtime passes; it terminates on power-off. The
 * launcher only watches its state, enforces the deadline and keeps the analysis' deploy_limit.
 */
export class Ec2Launcher implements Launcher {
  readonly name = 'ec2';
  private readonly clients: ClientsByRegion<EC2Client>;
  private readonly pollMs: number;
  private readonly log: (line: string) => void;
  private readonly ends: EndMarkers;
  /** Instances this launcher started that have not ended, per analysis: DescribeInstances may not list them yet. */
  private readonly ours = new Map<string, Set<string>>();
  /** Serializes count-then-launch per analysis, so concurrent launches cannot overshoot deploy_limit together. */
  private readonly slots = new Map<string, Promise<unknown>>();
  private readonly monitors = new MonitorGroup();
  private readonly rootDevices = new Map<string, Promise<string>>();

  constructor(private readonly options: Ec2LauncherOptions) {
    if (storeReach(options.storeUrl) !== 'network') {
      throw new ComputeConfigError(
        `--compute ec2 needs --store ${networkStoreExamples()}: an instance cannot read "${options.storeUrl}" on this machine`,
      );
    }
    this.pollMs = options.pollMs ?? 15_000;
    this.log = options.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.clients = new ClientsByRegion((region) => new EC2Client({ region }), options.client);
    this.ends = new EndMarkers({ storeUrl: options.storeUrl, store: options.endStore });
  }

  async launch(request: LaunchRequest): Promise<LaunchedJob> {
    const { blueprint } = request;
    const refused = this.refuse(request.analysis, blueprint);
    if (refused) throw new Error(refused);
    const allowed = [blueprint.instance_type, ...blueprint.allowed_instance_types];
    if (!allowed.includes(request.instanceType)) {
      throw new Error(
        `instance type "${request.instanceType}" is not allowed for ${request.analysis}: use one of ${[...new Set(allowed)].join(', ')}, or add it to allowed_instance_types in its blueprint`,
      );
    }
    const client = this.clients.in(blueprint.region);
    const received = Date.now();
    const previous = this.slots.get(request.analysis) ?? Promise.resolve();
    const launched = previous.catch(() => {}).then(() => this.startWithinLimit(client, request, blueprint.ami!, received));
    this.slots.set(request.analysis, launched);
    const { instanceId, deadline } = await launched;
    return this.watch(client, { ...request, deadline }, instanceId);
  }

  refuse(analysis: string, blueprint: Blueprint): string | undefined {
    if (blueprint.ami) return undefined;
    return `the blueprint of ${analysis} names no "ami": add the id of an image that holds Node >= 20.19 and caas at /opt/caas (see "The AMI" in docs/aws.md)`;
  }

  /** Pending or running instances tagged with this identity and attempt (a booting one has no heartbeat yet). */
  async machineAlive(machine: EarlierMachine): Promise<boolean> {
    return (await this.instancesOf(machine)).length > 0;
  }

  async stopMachine(machine: EarlierMachine, reason: string): Promise<boolean> {
    const ids = await this.instancesOf(machine);
    if (ids.length === 0) return false;
    this.log(`caas: terminating ${ids.join(', ')} (${reason})`);
    await this.clients.in(machine.blueprint.region).send(new TerminateInstancesCommand({ InstanceIds: ids }));
    return true;
  }

  private async instancesOf(machine: EarlierMachine): Promise<string[]> {
    const filters = [
      { Name: 'tag:caas:identity', Values: [machine.identity] },
      { Name: 'tag:caas:attempt', Values: [String(machine.attempt)] },
      { Name: 'instance-state-name', Values: LIVE_STATES },
    ];
    const ids: string[] = [];
    for await (const instance of describeAll(this.clients.in(machine.blueprint.region), filters)) {
      if (instance.InstanceId) ids.push(instance.InstanceId);
    }
    return ids;
  }

  async close(): Promise<void> {
    this.monitors.close();
    this.clients.destroy();
    await this.ends.close();
  }

  private async startWithinLimit(
    client: EC2Client,
    request: LaunchRequest,
    ami: string,
    received: number,
  ): Promise<{ instanceId: string; deadline: Date }> {
    const { blueprint, analysis } = request;
    const waitMs = this.options.deployWaitMs ?? blueprint.max_runtime_minutes * 60_000;
    const giveUp = Date.now() + waitMs;
    let announced = false;
    for (;;) {
      const live = await this.liveInstances(client, analysis);
      if (live < blueprint.deploy_limit) break;
      if (!announced) {
        this.log(`deploy_limit ${blueprint.deploy_limit} reached for ${analysis}: waiting`);
        announced = true;
      }
      if (Date.now() >= giveUp) {
        throw new Error(
          `deploy_limit ${blueprint.deploy_limit} for ${analysis} stayed reached for ${Math.round(waitMs / 1000)} s: wait for running jobs to end (caas reap finds stray instances) or raise deploy_limit in its blueprint`,
        );
      }
      await sleep(Math.min(this.pollMs, Math.max(0, giveUp - Date.now())));
    }
    const rootDevice = await this.rootDevice(client, ami);
    // The max runtime is the machine's: time spent waiting for a slot must not eat into it.
    const deadline = new Date(request.deadline.getTime() + (Date.now() - received));
    const response = await client.send(new RunInstancesCommand(this.runInstancesInput({ ...request, deadline }, ami, rootDevice)));
    const instanceId = response.Instances?.[0]?.InstanceId;
    if (!instanceId) throw new Error(`RunInstances for ${request.identity.slice(0, 12)} returned no instance id`);
    this.oursFor(analysis).add(instanceId);
    return { instanceId, deadline };
  }

  /**
   * volume_gb must resize the image's own root device; a mapping under any other name would add a
   * second, empty volume. Amazon Linux calls it /dev/xvda, Ubuntu /dev/sda1, so ask the image.
   */
  private rootDevice(client: EC2Client, ami: string): Promise<string> {
    let device = this.rootDevices.get(ami);
    if (!device) {
      device = client.send(new DescribeImagesCommand({ ImageIds: [ami] })).then((response) => {
        const image = response.Images?.[0];
        if (!image) throw new Error(`AMI ${ami} was not found in this region: check "ami" and "region" in the blueprint`);
        return image.RootDeviceName ?? '/dev/xvda';
      });
      device.catch(() => this.rootDevices.delete(ami));
      this.rootDevices.set(ami, device);
    }
    return device;
  }

  /** Pending and running instances of the analysis, as EC2 lists them plus any it does not list yet. */
  private async liveInstances(client: EC2Client, analysis: string): Promise<number> {
    const ids = new Set(this.oursFor(analysis));
    const filters = [
      { Name: 'tag:caas:analysis', Values: [analysis] },
      { Name: 'instance-state-name', Values: LIVE_STATES },
    ];
    for await (const instance of describeAll(client, filters)) if (instance.InstanceId) ids.add(instance.InstanceId);
    return ids.size;
  }

  private runInstancesInput(request: LaunchRequest, ami: string, rootDevice: string) {
    const { blueprint, spec } = request;
    const analysesDir = this.options.instanceAnalysesDir ?? '/opt/caas/analyses';
    const instanceSpec = { ...spec, analysis_dir: `${analysesDir.replace(/\/+$/, '')}/${path.posix.basename(spec.analysis_dir)}` };
    const script = userDataScript({
      spec: instanceSpec,
      hardStopS: blueprint.max_runtime_minutes * 60,
      region: blueprint.region,
      environment: this.options.storeEnvironment,
      label: `caas job ${request.identity} attempt ${request.attempt} (${request.analysis})`,
    });
    const bytes = Buffer.byteLength(script);
    if (bytes > USER_DATA_LIMIT) {
      throw new Error(
        `the job's UserData is ${bytes} bytes, over EC2's limit of ${USER_DATA_LIMIT}: it lists ${spec.inputs.length} input URL(s); give the job a folder URL instead of every file`,
      );
    }
    const tags: Tag[] = [
      { Key: 'Name', Value: `caas-${request.analysis}-${request.identity.slice(0, 12)}` },
      { Key: 'caas:identity', Value: request.identity },
      { Key: 'caas:attempt', Value: String(request.attempt) },
      { Key: 'caas:analysis', Value: request.analysis },
      { Key: 'caas:group', Value: request.group },
      { Key: 'caas:job', Value: `${spec.bucket}/${spec.group}/${spec.timestamp}` },
      { Key: 'caas:deadline', Value: request.deadline.toISOString() },
    ];
    return {
      ImageId: ami,
      InstanceType: request.instanceType as _InstanceType,
      MinCount: 1,
      MaxCount: 1,
      ClientToken: clientToken(request.identity, request.attempt),
      ...(blueprint.iam_instance_profile ? { IamInstanceProfile: { Name: blueprint.iam_instance_profile } } : {}),
      ...(blueprint.subnet_id ? { SubnetId: blueprint.subnet_id } : {}),
      ...(blueprint.security_group_ids.length ? { SecurityGroupIds: blueprint.security_group_ids } : {}),
      BlockDeviceMappings: [
        {
          DeviceName: rootDevice,
          Ebs: { VolumeSize: blueprint.volume_gb, VolumeType: 'gp3' as const, DeleteOnTermination: true },
        },
      ],
      InstanceInitiatedShutdownBehavior: 'terminate' as const,
      UserData: Buffer.from(script).toString('base64'),
      TagSpecifications: [
        { ResourceType: 'instance' as const, Tags: tags },
        { ResourceType: 'volume' as const, Tags: tags },
      ],
    };
  }

  private watch(client: EC2Client, request: LaunchRequest, instanceId: string): LaunchedJob {
    const { spec } = request;
    const machine: RemoteMachine = {
      id: instanceId,
      look: async () => {
        const instance = await describe(client, instanceId);
        const state = instance?.State?.Name;
        if (!instance) return { kind: 'unlisted' };
        if (!state || !GONE_STATES.has(state)) return { kind: 'up' };
        // A stopped instance still bills its volume; only terminated is really gone.
        if (state === 'stopping' || state === 'stopped') await terminate(client, instanceId).catch(() => {});
        return { kind: 'ended', why: instance.StateReason?.Message ?? instance.StateTransitionReason ?? state };
      },
      stop: () => terminate(client, instanceId),
    };
    return monitorRemote(machine, {
      noun: 'instance',
      api: 'EC2',
      pollMs: this.pollMs,
      deadline: request.deadline,
      maxRuntimeMinutes: request.blueprint.max_runtime_minutes,
      unlistedGraceLooks: NOT_FOUND_GRACE_POLLS,
      endWritten: () => this.ends.written(spec),
      group: this.monitors,
      log: this.log,
      settled: () => this.oursFor(request.analysis).delete(instanceId),
    });
  }

  private oursFor(analysis: string): Set<string> {
    let ids = this.ours.get(analysis);
    if (!ids) {
      ids = new Set();
      this.ours.set(analysis, ids);
    }
    return ids;
  }
}

/**
 * The same identity and attempt always give the same token, so a retried RunInstances (SDK retry,
 * network error after EC2 accepted it) returns the instance already started instead of a second one.
 */
export function clientToken(identity: string, attempt: number): string {
  return `caas-${createHash('sha256').update(`${identity}:${attempt}`).digest('hex').slice(0, 32)}-${attempt}`;
}

async function describe(client: EC2Client, instanceId: string): Promise<Instance | undefined> {
  try {
    const response = await client.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }));
    return response.Reservations?.flatMap((r) => r.Instances ?? []).find((i) => i.InstanceId === instanceId);
  } catch (error) {
    if ((error as { name?: string }).name === 'InvalidInstanceID.NotFound') return undefined;
    throw error;
  }
}

async function terminate(client: EC2Client, instanceId: string): Promise<void> {
  await client.send(new TerminateInstancesCommand({ InstanceIds: [instanceId] }));
}

/** Every instance DescribeInstances lists for the filters, paging through NextToken. */
export async function* describeAll(client: EC2Client, filters: Filter[]): AsyncGenerator<Instance> {
  const input: DescribeInstancesCommandInput = { Filters: filters };
  do {
    const page = await client.send(new DescribeInstancesCommand(input));
    for (const reservation of page.Reservations ?? []) yield* reservation.Instances ?? [];
    input.NextToken = page.NextToken;
  } while (input.NextToken);
}

const TERMINATE_BATCH = 100;

/** Every caas-tagged instance of a region that is pending or running, paging through DescribeInstances. */
export class Ec2Fleet implements Fleet {
  readonly noun = 'instance';
  private readonly client: EC2Client;

  constructor(region: string) {
    this.client = new EC2Client({ region });
  }

  async list(): Promise<CaasMachine[]> {
    const machines: CaasMachine[] = [];
    const filters = [
      { Name: 'tag-key', Values: ['caas:identity'] },
      { Name: 'instance-state-name', Values: LIVE_STATES },
    ];
    for await (const instance of describeAll(this.client, filters)) {
      if (!instance.InstanceId) continue;
      const tags = Object.fromEntries((instance.Tags ?? []).map((t) => [t.Key ?? '', t.Value ?? '']));
      machines.push({ id: instance.InstanceId, state: instance.State?.Name ?? 'unknown', tags });
    }
    return machines;
  }

  async terminate(ids: readonly string[]): Promise<void> {
    for (let start = 0; start < ids.length; start += TERMINATE_BATCH) {
      await this.client.send(new TerminateInstancesCommand({ InstanceIds: ids.slice(start, start + TERMINATE_BATCH) }));
    }
  }

  close(): void {
    this.client.destroy();
  }
}
