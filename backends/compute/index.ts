import type { AgentSpec } from '../../models/agent-spec.ts';
import type { Blueprint } from '../../models/blueprint.ts';

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
  /** Resolves when the machine is done: the agent exited, or the instance is gone. */
  readonly ended: Promise<MachineEnd>;
  /** Stop the machine now (deadline passed, runner shutting down). */
  cancel(reason: string): Promise<void>;
}

/** Where a job runs. The only part of caas that knows about machines. */
export interface Launcher {
  readonly name: string;
  launch(request: LaunchRequest): Promise<LaunchedJob>;
  close(): Promise<void>;
}

export interface LauncherOptions {
  /** Store URL and endpoint the agent must open (EC2 needs them in UserData). */
  storeUrl: string;
  s3Endpoint?: string;
}

export async function openLauncher(name: string, options: LauncherOptions): Promise<Launcher> {
  if (name === 'local') {
    const { LocalLauncher } = await import('./local.ts');
    return new LocalLauncher();
  }
  if (name === 'inline') {
    const { InlineLauncher } = await import('./inline.ts');
    return new InlineLauncher();
  }
  if (name === 'ec2') {
    const { Ec2Launcher } = await import('./ec2.ts');
    return new Ec2Launcher(options);
  }
  throw new Error(
    `--compute "${name}" is not supported: use local (an agent process per job), inline (the agent in this process, the analysis in its own) or ec2 (an instance per job)`,
  );
}

/** A machine caas started, as its tags (caas:identity, caas:deadline, ...) describe it. */
export interface CaasMachine {
  id: string;
  state: string;
  tags: Record<string, string>;
}

/** The live machines of a compute backend, for `caas reap`. */
export interface Fleet {
  /** Machines tagged caas:identity that are starting or running. */
  list(): Promise<CaasMachine[]>;
  terminate(ids: readonly string[]): Promise<void>;
  close(): void;
}

export async function openFleet(name: string, options: { region: string }): Promise<Fleet> {
  if (name === 'ec2') {
    const { Ec2Fleet } = await import('./ec2.ts');
    return new Ec2Fleet(options.region);
  }
  throw new Error(`no fleet for compute "${name}": only ec2 machines outlive their runner`);
}
