import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import {
  CreateImageCommand,
  type CreateImageCommandInput,
  CreateTagsCommand,
  type CreateTagsCommandInput,
  DescribeImagesCommand,
  type DescribeImagesCommandInput,
  DescribeInstancesCommand,
  type DescribeInstancesCommandInput,
  EC2Client,
  type Image,
  type Instance,
  RunInstancesCommand,
  type RunInstancesCommandInput,
  StartInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';

export interface FakeInstance {
  id: string;
  state: string;
  tags: Record<string, string>;
  type: string;
  image: string;
  launched: Date;
  input: RunInstancesCommandInput;
}

export interface FakeImage {
  id: string;
  name: string;
  instance: string;
  state: string;
  reason?: string;
  /** DescribeImages calls left before it leaves `pending`. */
  looksLeft: number;
}

/**
 * A fake EC2 account, through the mocked SDK (every EC2Client in this process), as far as `caas dev`
 * uses it: instances with tags, states, a ClientToken that returns the same instance, images that
 * turn available (or fail, or stay pending) after a few looks. Its instance metadata service answers
 * for one machine at a time (`machine`), IMDSv2 tokens and tags included, and takes the power-off of
 * that machine (POST /test/poweroff, from the stand-in poweroff command) as EC2 would: stopped or
 * terminated, by the instance's InstanceInitiatedShutdownBehavior.
 */
export class DevCloud {
  readonly ec2 = mockClient(EC2Client);
  readonly instances = new Map<string, FakeInstance>();
  readonly images = new Map<string, FakeImage>();
  /** What a new image becomes after its pending looks. */
  imageFate: { state: string; reason?: string; looks: number } = { state: 'available', looks: 2 };
  /** The instance the metadata service answers for. */
  machine: string | undefined;
  private server: Server | undefined;
  imdsUrl = '';
  private count = 0;

  async start(): Promise<void> {
    this.install();
    this.server = createServer((request, response) => this.answer(request.method ?? 'GET', request.url ?? '', request.headers, response));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.imdsUrl = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }

  async stop(): Promise<void> {
    this.ec2.restore();
    await new Promise((resolve) => this.server?.close(resolve));
  }

  /** Back to an empty account (the metadata service keeps running). */
  reset(): void {
    this.ec2.resetHistory();
    this.instances.clear();
    this.images.clear();
    this.imageFate = { state: 'available', looks: 2 };
    this.machine = undefined;
  }

  /** An instance that did not come from RunInstances here (another launch, another tool). */
  add(tags: Record<string, string>, state = 'running'): FakeInstance {
    const instance: FakeInstance = {
      id: this.nextId(),
      state,
      tags,
      type: 't3.micro',
      image: 'ami-0123456789abcdef0',
      launched: new Date(),
      input: { MinCount: 1, MaxCount: 1 },
    };
    this.instances.set(instance.id, instance);
    return instance;
  }

  /** The UserData RunInstances was given for an instance. */
  userData(id: string): string {
    return Buffer.from(this.instances.get(id)!.input.UserData ?? '', 'base64').toString('utf8');
  }

  calls(command: 'RunInstances' | 'CreateImage' | 'CreateTags' | 'StopInstances' | 'StartInstances' | 'TerminateInstances') {
    const commands = {
      RunInstances: RunInstancesCommand,
      CreateImage: CreateImageCommand,
      CreateTags: CreateTagsCommand,
      StopInstances: StopInstancesCommand,
      StartInstances: StartInstancesCommand,
      TerminateInstances: TerminateInstancesCommand,
    };
    return this.ec2
      .commandCalls(commands[command] as typeof RunInstancesCommand)
      .map((call) => call.args[0].input as unknown as Record<string, unknown>);
  }

  private nextId(): string {
    this.count++;
    return `i-0de${String(this.count).padStart(14, '0')}`;
  }

  private install(): void {
    this.ec2.on(RunInstancesCommand).callsFake((input: RunInstancesCommandInput) => {
      const again = [...this.instances.values()].find((i) => i.input.ClientToken && i.input.ClientToken === input.ClientToken);
      if (again) return { Instances: [this.described(again)] };
      const tags = Object.fromEntries(
        (input.TagSpecifications?.find((t) => t.ResourceType === 'instance')?.Tags ?? []).map((t) => [t.Key!, t.Value!]),
      );
      const instance: FakeInstance = {
        id: this.nextId(),
        state: 'pending',
        tags,
        type: String(input.InstanceType),
        image: input.ImageId!,
        launched: new Date(),
        input,
      };
      this.instances.set(instance.id, instance);
      const answer = { Instances: [this.described(instance)] };
      instance.state = 'running';
      return answer;
    });
    this.ec2.on(DescribeInstancesCommand).callsFake((input: DescribeInstancesCommandInput) => {
      if (input.InstanceIds) {
        const found = input.InstanceIds.map((id) => this.instances.get(id)).filter((i) => i !== undefined);
        if (found.length === 0)
          throw Object.assign(new Error(`The instance IDs '${input.InstanceIds.join(', ')}' do not exist`), {
            name: 'InvalidInstanceID.NotFound',
          });
        return { Reservations: [{ Instances: found.map((i) => this.described(i)) }] };
      }
      const matches = (instance: FakeInstance) =>
        (input.Filters ?? []).every((filter) => {
          if (filter.Name === 'instance-state-name') return filter.Values!.includes(instance.state);
          if (filter.Name === 'tag-key') return filter.Values!.some((key) => key in instance.tags);
          if (filter.Name?.startsWith('tag:')) return filter.Values!.includes(instance.tags[filter.Name.slice(4)] ?? '\0');
          throw new Error(`the fake EC2 knows no filter ${filter.Name}`);
        });
      return { Reservations: [{ Instances: [...this.instances.values()].filter(matches).map((i) => this.described(i)) }] };
    });
    this.ec2.on(CreateTagsCommand).callsFake((input: CreateTagsCommandInput) => {
      for (const id of input.Resources ?? []) {
        const instance = this.instances.get(id);
        for (const tag of input.Tags ?? []) if (instance) instance.tags[tag.Key!] = tag.Value ?? '';
      }
      return {};
    });
    const setState = (state: string) => (input: { InstanceIds?: string[] }) => {
      for (const id of input.InstanceIds ?? []) {
        const instance = this.instances.get(id);
        if (instance) instance.state = state;
      }
      return {};
    };
    this.ec2.on(StopInstancesCommand).callsFake(setState('stopped'));
    this.ec2.on(StartInstancesCommand).callsFake(setState('running'));
    this.ec2.on(TerminateInstancesCommand).callsFake(setState('terminated'));
    this.ec2.on(CreateImageCommand).callsFake((input: CreateImageCommandInput) => {
      const id = `ami-0fe${String(this.images.size + 1).padStart(14, '0')}`;
      this.images.set(id, { id, name: input.Name!, instance: input.InstanceId!, state: 'pending', looksLeft: this.imageFate.looks });
      return { ImageId: id };
    });
    this.ec2.on(DescribeImagesCommand).callsFake((input: DescribeImagesCommandInput) => {
      const images = (input.ImageIds ?? []).flatMap((id): Image[] => {
        const image = this.images.get(id);
        // The images launches start from: any other id exists, with a root device.
        if (!image) return [{ ImageId: id, State: 'available', RootDeviceName: '/dev/xvda' }];
        if (image.state === 'pending' && --image.looksLeft <= 0 && this.imageFate.state !== 'pending') {
          image.state = this.imageFate.state;
          image.reason = this.imageFate.reason;
        }
        return [
          {
            ImageId: id,
            Name: image.name,
            State: image.state as 'pending',
            ...(image.reason ? { StateReason: { Message: image.reason } } : {}),
          },
        ];
      });
      return { Images: images };
    });
  }

  private described(instance: FakeInstance): Instance {
    return {
      InstanceId: instance.id,
      State: { Name: instance.state as 'running' },
      InstanceType: instance.type as 't3.micro',
      ImageId: instance.image,
      LaunchTime: instance.launched,
      PublicDnsName: instance.state === 'running' ? `ec2-${instance.id.slice(2)}.compute.example.org` : '',
      Tags: Object.entries(instance.tags).map(([Key, Value]) => ({ Key, Value })),
    };
  }

  private answer(method: string, url: string, headers: Record<string, unknown>, response: import('node:http').ServerResponse): void {
    const machine = this.machine ? this.instances.get(this.machine) : undefined;
    if (method === 'PUT' && url === '/latest/api/token') {
      response.end('imds-token');
      return;
    }
    if (method === 'POST' && url === '/test/poweroff') {
      if (machine) machine.state = machine.input.InstanceInitiatedShutdownBehavior === 'stop' ? 'stopped' : 'terminated';
      response.end('ok');
      return;
    }
    if (headers['x-aws-ec2-metadata-token'] !== 'imds-token' || !machine) {
      response.writeHead(401).end();
      return;
    }
    if (url === '/latest/meta-data/instance-id') {
      response.end(machine.id);
      return;
    }
    const tag = /^\/latest\/meta-data\/tags\/instance\/(.+)$/.exec(url)?.[1];
    // Tags are in the metadata only when the launch enabled it, as on EC2.
    const tagsOn = machine.input.MetadataOptions?.InstanceMetadataTags === 'enabled';
    const value = tag !== undefined && tagsOn ? machine.tags[decodeURIComponent(tag)] : undefined;
    if (value === undefined) response.writeHead(404).end();
    else response.end(value);
  }
}

/** A machine booted from UserData on this host: the stand-ins for what only an instance has, and its boot script's state folder. */
export interface BootedMachine {
  dir: string;
  stateDir: string;
  bootDir: string;
  /** The reasons the stand-in poweroff was called with, in order. */
  poweredOff(): string[];
  log(): string;
  /** The boot script's pid (its session), once it has written it. */
  pid(): number | undefined;
}

/**
 * Runs a development instance's UserData with bash, as cloud-init would, in `dir`; resolves once
 * the boot script has detached and written its pid. `env` adds to (or overrides) the stand-ins.
 */
export async function bootUserData(cloud: DevCloud, script: string, dir: string, env: Record<string, string>): Promise<BootedMachine> {
  const machine = prepareMachine(cloud, dir);
  writeFileSync(path.join(dir, 'user-data.sh'), script);
  await runToEnd('bash', [path.join(dir, 'user-data.sh')], machineEnv(cloud, machine, env), dir);
  await waitFor(() => machine.pid() !== undefined, 20_000, `the boot script never wrote its pid; its log:\n${machine.log()}`);
  return machine;
}

/** Boots the machine again: cloud-init runs the per-boot scripts (here, the one the UserData installed). */
export async function rebootMachine(cloud: DevCloud, machine: BootedMachine, env: Record<string, string>): Promise<void> {
  const before = machine.pid();
  await runToEnd('bash', [path.join(machine.bootDir, 'caas-dev.sh')], machineEnv(cloud, machine, env), machine.dir);
  await waitFor(() => machine.pid() !== before, 20_000, `the boot script did not start again; its log:\n${machine.log()}`);
}

/** The machine is off: its boot script and everything it started (one session) end. */
export async function powerDown(machine: BootedMachine): Promise<void> {
  const pid = machine.pid();
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGTERM');
  } catch {}
  await waitFor(() => !alive(pid), 10_000, 'the boot script outlived SIGTERM').catch(() => {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {}
  });
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1]?.startsWith('Z');
  } catch {
    return false;
  }
}

export async function waitFor(condition: () => boolean, timeoutMs: number, message: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error(message);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function prepareMachine(cloud: DevCloud, dir: string): BootedMachine {
  const stateDir = path.join(dir, 'state');
  const bootDir = path.join(dir, 'per-boot');
  mkdirSync(path.join(dir, 'tmp'), { recursive: true });
  const marker = path.join(dir, 'powered-off');
  writeFileSync(
    path.join(dir, 'poweroff'),
    // EC2 first, then the marker the tests wait for: once they see it, the instance's state has changed.
    `#!/bin/bash\ncurl -sf -X POST ${JSON.stringify(`${cloud.imdsUrl}/test/poweroff`)} >/dev/null || true\necho "\${CAAS_POWEROFF_REASON:-}" >> ${JSON.stringify(marker)}\n`,
    { mode: 0o755 },
  );
  const read = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8') : '');
  return {
    dir,
    stateDir,
    bootDir,
    poweredOff: () => read(marker).split('\n').filter(Boolean),
    log: () => read(path.join(stateDir, 'log')),
    pid: () => {
      const text = read(path.join(stateDir, 'pid')).trim();
      return text ? Number(text) : undefined;
    },
  };
}

function machineEnv(cloud: DevCloud, machine: BootedMachine, env: Record<string, string>): NodeJS.ProcessEnv {
  return {
    ...process.env,
    TMPDIR: path.join(machine.dir, 'tmp'),
    CAAS_POWEROFF_CMD: path.join(machine.dir, 'poweroff'),
    CAAS_IMDS_URL: cloud.imdsUrl,
    CAAS_DEV_BOOT_DIR: machine.bootDir,
    CAAS_DEV_STATE: machine.stateDir,
    ...env,
  };
}

function runToEnd(command: string, args: string[], env: NodeJS.ProcessEnv, cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: 'ignore' });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${command} ${args.join(' ')} exited with ${code}`))));
  });
}
