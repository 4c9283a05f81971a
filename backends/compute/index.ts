import type { AgentSpec } from '../../models/agent-spec.ts';
import type { Blueprint } from '../../models/blueprint.ts';
import { CaasError } from '../../models/caas-error.ts';
import type { Heartbeat } from '../../models/status.ts';
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

export const COMPUTE_NAMES = ['local', 'inline', 'ec2', 'batch'] as const;

/** Throws UnknownComputeError unless openLauncher knows the name: callers check before any side effect. */
export function checkComputeName(name: string): void {
  if (!(COMPUTE_NAMES as readonly string[]).includes(name)) {
    throw new UnknownComputeError(
      `--compute "${name}" is not supported: use local (an agent process per job), inline (the agent in this process, the analysis in its own), ec2 (an instance per job) or batch (an AWS Batch job per job)`,
    );
  }
}

export async function openLauncher(name: string, options: LauncherOptions): Promise<Launcher> {
  checkComputeName(name);
  if (name === 'local') {
    const { LocalLauncher } = await import('./local.ts');
    return new LocalLauncher(requireAgent(name, options));
  }
  if (name === 'inline') {
    const { InlineLauncher } = await import('./inline.ts');
    return new InlineLauncher(requireAgent(name, options));
  }
  if (name === 'ec2') {
    const { Ec2Launcher } = await import('./ec2.ts');
    return new Ec2Launcher(options);
  }
  if (name === 'batch') {
    const { BatchLauncher } = await import('./batch.ts');
    return new BatchLauncher(options);
  }
  throw new Error(`compute "${name}" is listed in COMPUTE_NAMES but has no launcher`);
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

/** The compute backends whose machines outlive their runner, so `caas reap` can look for them. */
export const FLEET_NAMES = ['ec2', 'batch'] as const;

export async function openFleet(name: string, options: { region: string }): Promise<Fleet> {
  if (name === 'ec2') {
    const { Ec2Fleet } = await import('./ec2.ts');
    return new Ec2Fleet(options.region);
  }
  if (name === 'batch') {
    const { BatchFleet } = await import('./batch.ts');
    return new BatchFleet(options.region);
  }
  throw new UnknownComputeError(
    `no fleet for compute "${name}": machines of ${FLEET_NAMES.join(' and ')} outlive their runner, the others end with it`,
  );
}
