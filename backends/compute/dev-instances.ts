import {
  type _InstanceType,
  CreateImageCommand,
  CreateTagsCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  EC2Client,
  type Instance,
  RunInstancesCommand,
  type RunInstancesCommandInput,
  StartInstancesCommand,
  StopInstancesCommand,
  type Tag,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import { DEV_TAGS, type DevInstance, expiryTag } from '../../models/dev-instance.ts';
import { devUserDataScript } from './dev-user-data.ts';
import { describeAll } from './ec2.ts';
import type { DevImage, DevInstances, DevLaunchRequest } from './index.ts';

/** The states of an instance that is still someone's: it can be started, stopped, imaged or terminated. */
const KEPT_STATES = ['pending', 'running', 'stopping', 'stopped'];

/**
 * Development instances on EC2: launched from the blueprint's image with a UserData that stops the
 * instance at its caas:expiry tag (InstanceInitiatedShutdownBehavior stop: the disk and what the
 * developer installed stay), tagged so that only `caas dev` finds them, and imaged with CreateImage.
 */
export class Ec2DevInstances implements DevInstances {
  private readonly client: EC2Client;

  constructor(region: string) {
    this.client = new EC2Client({ region });
  }

  async list(analysis: string, owner?: string): Promise<DevInstance[]> {
    const filters = [
      { Name: `tag:${DEV_TAGS.analysis}`, Values: [analysis] },
      ...(owner === undefined ? [] : [{ Name: `tag:${DEV_TAGS.owner}`, Values: [owner] }]),
      { Name: 'instance-state-name', Values: KEPT_STATES },
    ];
    const found: DevInstance[] = [];
    for await (const instance of describeAll(this.client, filters)) found.push(devInstanceOf(instance));
    return found.sort((a, b) => (a.launched ?? '').localeCompare(b.launched ?? '') || a.id.localeCompare(b.id));
  }

  async get(id: string): Promise<DevInstance | undefined> {
    try {
      const response = await this.client.send(new DescribeInstancesCommand({ InstanceIds: [id] }));
      const instance = response.Reservations?.flatMap((r) => r.Instances ?? []).find((i) => i.InstanceId === id);
      return instance ? devInstanceOf(instance) : undefined;
    } catch (error) {
      const name = (error as { name?: string }).name ?? '';
      if (name === 'InvalidInstanceID.NotFound' || name === 'InvalidInstanceID.Malformed') return undefined;
      throw error;
    }
  }

  async launch(request: DevLaunchRequest): Promise<DevInstance> {
    const rootDevice = await this.rootDevice(request.ami);
    const response = await this.client.send(new RunInstancesCommand(runInstancesInput(request, rootDevice)));
    const instance = response.Instances?.[0];
    if (!instance?.InstanceId) throw new Error(`RunInstances for the development instance of ${request.analysis} returned no instance`);
    // RunInstances answers before the tags are readable: what it was asked for is what it has.
    return {
      ...devInstanceOf(instance),
      analysis: request.analysis,
      owner: request.owner,
      expiry: new Date(Date.parse(expiryTag(request.expiry))).toISOString(),
    };
  }

  async setExpiry(id: string, expiry: Date): Promise<void> {
    await this.tag(id, [{ Key: DEV_TAGS.expiry, Value: expiryTag(expiry) }]);
  }

  async markSaved(id: string, image: string): Promise<void> {
    await this.tag(id, [{ Key: DEV_TAGS.savedImage, Value: image }]);
  }

  async stop(id: string): Promise<void> {
    await this.client.send(new StopInstancesCommand({ InstanceIds: [id] }));
  }

  async start(id: string): Promise<void> {
    await this.client.send(new StartInstancesCommand({ InstanceIds: [id] }));
  }

  async terminate(id: string): Promise<void> {
    await this.client.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
  }

  async createImage(id: string, options: { name: string; description: string; analysis: string }): Promise<string> {
    const tags: Tag[] = [
      { Key: 'Name', Value: options.name },
      { Key: DEV_TAGS.analysis, Value: options.analysis },
      { Key: 'caas:source-instance', Value: id },
    ];
    const response = await this.client.send(
      new CreateImageCommand({
        InstanceId: id,
        Name: options.name,
        Description: options.description,
        TagSpecifications: [
          { ResourceType: 'image', Tags: tags },
          { ResourceType: 'snapshot', Tags: tags },
        ],
      }),
    );
    if (!response.ImageId) throw new Error(`CreateImage of ${id} returned no image id`);
    return response.ImageId;
  }

  async image(id: string): Promise<DevImage | undefined> {
    const response = await this.client.send(new DescribeImagesCommand({ ImageIds: [id] }));
    const image = response.Images?.find((i) => i.ImageId === id);
    if (!image) return undefined;
    return { id, state: image.State ?? 'unknown', ...(image.StateReason?.Message ? { reason: image.StateReason.Message } : {}) };
  }

  close(): void {
    this.client.destroy();
  }

  private async tag(id: string, tags: Tag[]): Promise<void> {
    await this.client.send(new CreateTagsCommand({ Resources: [id], Tags: tags }));
  }

  /** volume_gb resizes the image's own root device, as for job instances (ec2.ts). */
  private async rootDevice(ami: string): Promise<string> {
    const response = await this.client.send(new DescribeImagesCommand({ ImageIds: [ami] }));
    const image = response.Images?.[0];
    if (!image) throw new Error(`image ${ami} was not found in this region: check "ami" and "region" in the blueprint, or --ami`);
    return image.RootDeviceName ?? '/dev/xvda';
  }
}

function runInstancesInput(request: DevLaunchRequest, rootDevice: string): RunInstancesCommandInput {
  const { blueprint } = request;
  const script = devUserDataScript({
    analysis: request.analysis,
    owner: request.owner,
    expiry: expiryTag(request.expiry),
    storeUrl: request.storeUrl,
    bucket: blueprint.bucket,
    region: blueprint.region,
    environment: request.storeEnvironment,
  });
  const tags: Tag[] = [
    { Key: 'Name', Value: `caas-dev-${request.analysis}-${request.owner}` },
    { Key: DEV_TAGS.analysis, Value: request.analysis },
    { Key: DEV_TAGS.owner, Value: request.owner },
    { Key: DEV_TAGS.expiry, Value: expiryTag(request.expiry) },
  ];
  return {
    ImageId: request.ami,
    InstanceType: request.instanceType as _InstanceType,
    MinCount: 1,
    MaxCount: 1,
    ClientToken: request.clientToken,
    ...(request.keyName ? { KeyName: request.keyName } : {}),
    ...(blueprint.iam_instance_profile ? { IamInstanceProfile: { Name: blueprint.iam_instance_profile } } : {}),
    ...(blueprint.subnet_id ? { SubnetId: blueprint.subnet_id } : {}),
    ...(blueprint.security_group_ids.length ? { SecurityGroupIds: blueprint.security_group_ids } : {}),
    BlockDeviceMappings: [
      { DeviceName: rootDevice, Ebs: { VolumeSize: blueprint.volume_gb, VolumeType: 'gp3', DeleteOnTermination: true } },
    ],
    // The self-stop powers off: the instance stops, and keeps what was installed on it.
    InstanceInitiatedShutdownBehavior: 'stop',
    // The instance reads its caas:expiry tag back from the metadata service (tag keys with no "/").
    MetadataOptions: { HttpEndpoint: 'enabled', HttpTokens: 'required', InstanceMetadataTags: 'enabled' },
    UserData: Buffer.from(script).toString('base64'),
    TagSpecifications: [
      { ResourceType: 'instance', Tags: tags },
      { ResourceType: 'volume', Tags: tags },
    ],
  };
}

function devInstanceOf(instance: Instance): DevInstance {
  const tags = Object.fromEntries((instance.Tags ?? []).map((t) => [t.Key ?? '', t.Value ?? '']));
  const expiry = tags[DEV_TAGS.expiry];
  return {
    id: instance.InstanceId ?? '',
    analysis: tags[DEV_TAGS.analysis] ?? '',
    owner: tags[DEV_TAGS.owner] ?? '',
    state: instance.State?.Name ?? 'unknown',
    instance_type: instance.InstanceType ?? null,
    image: instance.ImageId ?? null,
    launched: instance.LaunchTime ? new Date(instance.LaunchTime).toISOString() : null,
    expiry: expiry && Number.isFinite(Date.parse(expiry)) ? new Date(Date.parse(expiry)).toISOString() : null,
    address: instance.PublicDnsName || instance.PublicIpAddress || instance.PrivateIpAddress || null,
    saved_image: tags[DEV_TAGS.savedImage] || null,
  };
}
