import type { z } from 'zod';
import type { AgentSpec } from '../../models/agent-spec.ts';
import { Blueprint } from '../../models/blueprint.ts';
import { CaasError } from '../../models/caas-error.ts';
import type { DevInstance } from '../../models/dev-instance.ts';
import type { Heartbeat } from '../../models/status.ts';
import { storeReach } from '../storage/index.ts';
import { BatchSection } from './batch-section.ts';
import type { JobProcesses } from './job-processes.ts';

export interface LaunchRequest {
  /** Already checked against its schema by the runner (wrapper/execute.ts). */
  spec: AgentSpec;
  identity: string;
  attempt: number;
  analysis: string;
  group: string;
  blueprint: Blueprint;
  instanceType: string;
  /** When the machine must be gone whatever happens (start + max runtime). */
  deadline: Date;
}

export interface MachineEnd {
  /** The agent's exit code when known (local), null when the machine just went away. */
  exitCode: number | null;
  /** Why the machine ended when that is not the agent's own verdict (timeout, instance lost, ...). */
  reason?: string;
}

export interface LaunchedJob {
  /** pid or instance id, for the status file and the record. */
  readonly instance: string;
  /**
   * Resolves when the machine starts the job, for launchers whose machines wait in a queue first
   * (AWS Batch): the max runtime counts from then. Without it the job starts at launch.
   */
  readonly running?: Promise<void>;
  /** Resolves when the machine is done: the agent exited, or the instance is gone. Never rejects. */
  readonly ended: Promise<MachineEnd>;
  /** Stop the machine now (deadline passed, runner shutting down). */
  cancel(reason: string): Promise<void>;
}

/** The machine an earlier attempt of a job started, for a runner that takes the job over. */
export interface EarlierMachine {
  identity: string;
  attempt: number;
  blueprint: Blueprint;
  /** What the agent last said about itself, when it said anything. */
  heartbeat?: Heartbeat;
}

/**
 * Where a job runs. The only part of caas that knows about machines. Launching is idempotent per
 * (identity, attempt): the same request twice never starts two machines.
 */
export interface Launcher {
  readonly name: string;
  launch(request: LaunchRequest): Promise<LaunchedJob>;
  /**
   * Whether the machine of an earlier attempt is still up, for launchers whose machines can be
   * asked (EC2). Without it, the attempt's heartbeat alone says whether it is alive.
   */
  machineAlive?(machine: EarlierMachine): Promise<boolean>;
  /**
   * Why this launcher cannot run an analysis' jobs (a blueprint setting it needs), asked before
   * anything is created or claimed; undefined when it can.
   */
  refuse?(analysis: string, blueprint: Blueprint): string | undefined;
  /** Stops the machine of an adopted attempt (the adopting runner was told to stop), where it can be reached. */
  stopMachine?(machine: EarlierMachine, reason: string): Promise<boolean>;
  /**
   * False when a job's machine dies with its runner (inline): nothing can run on after the runner,
   * so its group's slot is not held for the machine. Absent: machines may outlive their runner.
   */
  readonly outlivesRunner?: boolean;
  close(): Promise<void>;
}

/**
 * The agent a launcher starts for a job. The wrapper hands it in (wrapper/agent-program.ts), so no
 * backend imports the wrapper: launchers only know how to start a program somewhere.
 */
export interface AgentProgram {
  /** The agent's entry module, for launchers that start it as a process on this machine. */
  entry: string;
  /** Runs the agent in this process, for launchers that do (inline); resolves to its exit code. */
  run(spec: AgentSpec, workDir: string, options: { cancel: AbortSignal; processes: JobProcesses }): Promise<number>;
}

export interface LauncherOptions {
  /** The store the agent must open, its settings in the URL (EC2 needs it in UserData). */
  storeUrl: string;
  /** What the machine's own programs need to reach the store (an S3 endpoint, say), exported before the agent starts. */
  storeEnvironment?: Record<string, string>;
  /** Launchers that start the agent on this machine need it; remote ones start the copy on their image. */
  agent?: AgentProgram;
}

/** The agent program a launcher that starts it here cannot do without. */
export function requireAgent(name: string, options: LauncherOptions): AgentProgram {
  if (!options.agent) throw new Error(`the ${name} launcher starts the agent on this machine: pass LauncherOptions.agent`);
  return options.agent;
}

/** --compute names no launcher: the user's input, exit 2. */
export class UnknownComputeError extends CaasError {}

/** The launcher cannot work with what it was given (a store its machines cannot reach): the user's input, exit 2. */
export class ComputeConfigError extends CaasError {}

/**
 * A launcher's own settings in the blueprint, under one top-level key. Wherever an analysis is
 * loaded to run, a present section is checked with this schema, and a key no launcher owns is
 * refused (a typo must not pass as a section).
 */
export interface BlueprintSection {
  key: string;
  schema: z.ZodType;
  /** What the section is for, in `caas schema blueprint` and in errors. */
  description: string;
}

/** One kind of machine jobs can run on: what `--compute <name>` opens. */
export interface LauncherKind {
  /**
   * The --compute name, which also becomes the record's compute.backend and the machine's name in
   * heartbeats ({name}@{host}).
   */
  name: string;
  /** What a job gets, in a few words, for --compute's help and errors: "an instance per job". */
  description: string;
  /** Imports the launcher's file only now, so a kind nobody asked for costs nothing (the AWS SDK). */
  open(options: LauncherOptions): Promise<Launcher>;
  /** For kinds whose machines outlive their runner: their live machines in a region, for `caas reap`. */
  fleet?(region: string): Promise<Fleet>;
  blueprint?: BlueprintSection;
}

const launcherKinds = new Map<string, LauncherKind>();

/**
 * Makes `--compute <name>` open this kind, `caas reap` see its fleet and blueprints accept its
 * section. The built-in kinds register at the end of this file; a test, or a program embedding
 * caas, registers its own before it runs anything.
 */
export function registerLauncher(kind: LauncherKind): void {
  if (!/^[a-z][a-z0-9-]*$/.test(kind.name)) throw new Error(`launcher name "${kind.name}": use lowercase letters, digits and "-"`);
  if (launcherKinds.has(kind.name)) throw new Error(`a launcher named "${kind.name}" is already registered`);
  // local.ts tells its own agents from others' by a heartbeat machine that starts with "local".
  if (kind.name !== 'local' && kind.name.startsWith('local')) throw new Error(`launcher name "${kind.name}" may not start with "local"`);
  const key = kind.blueprint?.key;
  if (key !== undefined) {
    if (key in Blueprint.shape)
      throw new Error(`blueprint section "${key}" of launcher ${kind.name} would shadow the blueprint's own field`);
    const owner = [...launcherKinds.values()].find((other) => other.blueprint?.key === key);
    if (owner) throw new Error(`blueprint section "${key}" of launcher ${kind.name} is already launcher ${owner.name}'s`);
  }
  launcherKinds.set(kind.name, kind);
}

/** "a (what), b (what) or c (what)". */
function listKinds(kinds: readonly LauncherKind[]): string {
  const items = kinds.map((kind) => `${kind.name} (${kind.description})`);
  return items.length > 1 ? `${items.slice(0, -1).join(', ')} or ${items.at(-1)}` : (items[0] ?? '(none registered)');
}

/** The registered launchers with what each gives a job, for --compute's help. */
export function describeLaunchers(): string {
  return listKinds([...launcherKinds.values()]);
}

/** Throws UnknownComputeError unless a launcher of this name is registered: callers check before any side effect. */
export function checkComputeName(name: string): void {
  if (!launcherKinds.has(name)) throw new UnknownComputeError(`--compute "${name}" is not supported: use ${describeLaunchers()}`);
}

export async function openLauncher(name: string, options: LauncherOptions): Promise<Launcher> {
  checkComputeName(name);
  return launcherKinds.get(name)!.open(options);
}

/** A machine caas started, as its tags (caas:identity, caas:deadline, ...) describe it. */
export interface CaasMachine {
  id: string;
  state: string;
  tags: Record<string, string>;
}

/** The live machines of a compute backend, for `caas reap`. */
export interface Fleet {
  /** What one machine is called: "instance", "job". */
  readonly noun: string;
  /** Machines tagged caas:identity that are starting or running. */
  list(): Promise<CaasMachine[]>;
  terminate(ids: readonly string[]): Promise<void>;
  close(): void;
}

/** The launchers whose machines outlive their runner, so `caas reap` can look for them. */
export function fleetNames(): string[] {
  return [...launcherKinds.values()].filter((kind) => kind.fleet).map((kind) => kind.name);
}

/** Throws UnknownComputeError unless this launcher has a fleet `caas reap` can look at. */
export function checkFleetName(name: string): void {
  if (launcherKinds.get(name)?.fleet) return;
  const fleets = [...launcherKinds.values()].filter((kind) => kind.fleet);
  throw new UnknownComputeError(
    `--compute "${name}" has no machines to reap: use ${fleets.map((kind) => kind.name).join(', ')} (comma-separated), whose machines outlive their runner; the others' end with it`,
  );
}

export async function openFleet(name: string, options: { region: string }): Promise<Fleet> {
  checkFleetName(name);
  return launcherKinds.get(name)!.fleet!(options.region);
}

/** What `caas dev launch` asks for: one development instance of an analysis, for its owner. */
export interface DevLaunchRequest {
  analysis: string;
  owner: string;
  /** Its EC2 settings (profile, subnet, security groups, volume, region). */
  blueprint: Blueprint;
  ami: string;
  instanceType: string;
  /** When it stops itself, unless extended. */
  expiry: Date;
  /** The key pair to ssh in with. */
  keyName?: string;
  /** The store `caas dev test` leaves jobs in, its settings in the URL, and what the instance needs to reach it. */
  storeUrl: string;
  storeEnvironment?: Record<string, string>;
  /** The same token for a retried call returns the instance the first call started. */
  clientToken: string;
}

/** An image made of a development instance, as the cloud describes it. */
export interface DevImage {
  id: string;
  /** pending, available, failed, ... */
  state: string;
  reason?: string;
}

/**
 * The development instances of a region (`caas dev`): machines a developer works on, which stop
 * themselves at their expiry, run test jobs, and are saved as the image an analysis' jobs boot.
 */
export interface DevInstances {
  /** Those of an analysis (of one owner, when given) that are not terminated or terminating. */
  list(analysis: string, owner?: string): Promise<DevInstance[]>;
  /** Any instance by id (undefined when there is none); its analysis is "" when it has no caas:dev tag. */
  get(id: string): Promise<DevInstance | undefined>;
  launch(request: DevLaunchRequest): Promise<DevInstance>;
  setExpiry(id: string, expiry: Date): Promise<void>;
  markSaved(id: string, image: string): Promise<void>;
  stop(id: string): Promise<void>;
  start(id: string): Promise<void>;
  terminate(id: string): Promise<void>;
  createImage(id: string, options: { name: string; description: string; analysis: string }): Promise<string>;
  image(id: string): Promise<DevImage | undefined>;
  close(): void;
}

/** The development instances of a region; the cloud's SDK is loaded only now. */
export async function openDevInstances(region: string): Promise<DevInstances> {
  return new (await import('./dev-instances.ts')).Ec2DevInstances(region);
}

function blueprintSections(): BlueprintSection[] {
  return [...launcherKinds.values()].flatMap((kind) => (kind.blueprint ? [kind.blueprint] : []));
}

/** The blueprint as the registered launchers make it: its own fields, their sections, no other key (`caas schema blueprint`). */
export function blueprintSchema() {
  const sections: Record<string, z.ZodType> = {};
  for (const section of blueprintSections()) sections[section.key] = section.schema.optional().describe(section.description);
  return Blueprint.safeExtend(sections).strict();
}

/**
 * Every problem of a blueprint, each with the path of the bad field (`batch.job_queue`): the
 * blueprint's own fields, each registered launcher's section by its schema, and every other
 * top-level key, listed with the fields and sections it may have meant.
 */
export function blueprintIssues(data: unknown): z.core.$ZodIssue[] {
  const parsed = blueprintSchema().safeParse(data);
  if (parsed.success) return [];
  const sections = blueprintSections();
  const expected =
    `unknown key: expected a blueprint field (${Object.keys(Blueprint.shape).join(', ')}) or a launcher's section ` +
    `(${sections.map((section) => `${section.key}: ${section.description}`).join('; ') || 'no launcher has one'})`;
  return parsed.error.issues.flatMap((issue): z.core.$ZodIssue[] =>
    issue.code === 'unrecognized_keys' && issue.path.length === 0
      ? issue.keys.map((key) => ({ code: 'custom', path: [key], message: expected, input: undefined }))
      : [issue],
  );
}

// The built-in launchers, in the order --compute's help lists them. Each one's file is imported when
// it is opened, so a run on the defaults never loads the AWS SDK.
registerLauncher({
  name: 'local',
  description: 'an agent process per job',
  open: async (options) => {
    // Its agents are other processes: a store that lives in this process's memory is out of their reach.
    if (storeReach(options.storeUrl) === 'process') {
      throw new ComputeConfigError(
        `--compute local starts an agent process per job, which cannot open "${options.storeUrl}": use --compute inline`,
      );
    }
    return new (await import('./local.ts')).LocalLauncher(requireAgent('local', options));
  },
});
registerLauncher({
  name: 'inline',
  description: 'the agent in this process, the analysis in its own: for many short jobs',
  open: async (options) => new (await import('./inline.ts')).InlineLauncher(requireAgent('inline', options)),
});
registerLauncher({
  name: 'ec2',
  description: 'an instance per job',
  open: async (options) => new (await import('./ec2.ts')).Ec2Launcher(options),
  fleet: async (region) => new (await import('./ec2.ts')).Ec2Fleet(region),
});
registerLauncher({
  name: 'batch',
  description: "an AWS Batch job per job, from the blueprint's batch section",
  open: async (options) => new (await import('./batch.ts')).BatchLauncher(options),
  fleet: async (region) => new (await import('./batch.ts')).BatchFleet(region),
  blueprint: { key: 'batch', schema: BatchSection, description: 'for --compute batch: the queue and job definition the jobs go to' },
});
