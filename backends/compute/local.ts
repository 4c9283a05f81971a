import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import type { AgentSpec } from '../../models/agent-spec.ts';
import { CAAS_SETTINGS } from '../../models/caas-settings.ts';
import { bundledEntry, touchBundle } from '../bundled-entry.mjs';
import { storeReach } from '../storage/index.ts';
import type { AgentProgram, EarlierMachine, LaunchedJob, Launcher, LaunchRequest, MachineEnd } from './index.ts';
import { DEADLINE_GRACE_MS, LaunchesByAttempt, stopAtDeadline } from './launch-once.ts';

/** An agent process started ahead of its job, waiting for a spec on standard input. */
interface Agent {
  child: ChildProcess;
  workDir: string;
  /** Whether it was started with the host's extra CA certificates (needed for TLS only). */
  tls: boolean;
  stderr: () => string;
  closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * One fresh child process per job, in a fresh temporary folder that is removed afterwards: nothing
 * is shared between jobs, as with one instance per job in the cloud. The next job's process is
 * started while the current one runs (it waits for its spec on stdin), so its start-up is not on
 * any job's critical path; every process still serves exactly one job.
 */
export class LocalLauncher implements Launcher {
  readonly name = 'local';
  private spare: Promise<Agent> | undefined;
  private closing = false;

  private readonly launches = new LaunchesByAttempt();

  constructor(private readonly program: AgentProgram) {}

  launch(request: LaunchRequest): Promise<LaunchedJob> {
    return this.launches.launch(request, async () => stopAtDeadline(await this.start(request), request, DEADLINE_GRACE_MS));
  }

  private async start(request: LaunchRequest): Promise<LaunchedJob> {
    const { spec } = request;
    const tls = needsTls(spec);
    // Taken before any await, so concurrent launches never share one process.
    const waiting = this.spare;
    this.spare = this.closing ? undefined : startAgent(this.program.entry, tls);
    // A spare that fails to start is simply not used: the next launch starts its own.
    this.spare?.catch(() => {});
    let agent = await waiting?.catch(() => undefined);
    if (!agent || agent.tls !== tls || agent.child.exitCode !== null || agent.child.signalCode !== null) {
      if (agent) void discard(agent);
      agent = await startAgent(this.program.entry, tls);
    }
    agent.child.stdin?.end(JSON.stringify(spec));

    let cancelled: string | undefined;
    const { child, workDir, stderr } = agent;
    const ended = agent.closed.then(async ({ code, signal }): Promise<MachineEnd> => {
      // A folder the analysis left unremovable (no write permission) must not turn the job's end into a rejection.
      await rm(workDir, { recursive: true, force: true }).catch(() => {});
      if (cancelled) return { exitCode: code, reason: cancelled };
      if (signal) return { exitCode: null, reason: `agent killed by ${signal}` };
      if (code === 70) return { exitCode: code, reason: `agent crashed: ${stderr().trim().split('\n').slice(-3).join(' | ')}` };
      return { exitCode: code };
    });
    return {
      instance: `local:${child.pid ?? 'unknown'}@${hostname()}`,
      ended,
      cancel: async (reason: string) => {
        cancelled = reason;
        child.kill('SIGTERM');
      },
    };
  }

  /** An agent on this host is stopped like one of ours: SIGTERM, after which it ends its job with end.txt. */
  async stopMachine(machine: EarlierMachine): Promise<boolean> {
    return stopLocalAgent(machine);
  }

  async close(): Promise<void> {
    this.closing = true;
    const spare = await this.spare?.catch(() => undefined);
    this.spare = undefined;
    if (spare) await discard(spare);
  }
}

/**
 * Stops an agent this host started for an earlier attempt, named by its heartbeat (host and pid),
 * when that agent is on this host and the pid is still a caas agent's (pids are reused).
 */
function stopLocalAgent(machine: EarlierMachine): boolean {
  const heartbeat = machine.heartbeat;
  if (!heartbeat?.instance.startsWith('local') || heartbeat.host !== hostname() || heartbeat.pid === process.pid) return false;
  try {
    const environ = readFileSync(`/proc/${heartbeat.pid}/environ`, 'latin1');
    if (!environ.includes('\0CAAS_AGENT_TEMPORARY_WORKDIR=1\0') && !environ.startsWith('CAAS_AGENT_TEMPORARY_WORKDIR=1\0')) return false;
  } catch {
    return false;
  }
  try {
    process.kill(heartbeat.pid, 'SIGTERM');
    return true;
  } catch {
    return false;
  }
}

/**
 * An agent that talks to no TLS endpoint (its store and inputs all on this machine) starts without
 * NODE_EXTRA_CA_CERTS: Node 20 parses that bundle at every start, ~80 ms on hosts with a large
 * one. The agent hands it back to the analysis, which may well use the network.
 */
function needsTls(spec: AgentSpec): boolean {
  return [spec.store, ...spec.inputs].some((url) => storeReach(url) !== 'machine');
}

/**
 * The runner's environment less caas's own settings: the agent needs none of them (its spec says
 * everything), and its analysis, running as the same user, could read them in /proc/<ppid>/environ.
 */
function withoutCaasSettings(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([name]) => !CAAS_SETTINGS.test(name)));
}

async function startAgent(entry: string, tls: boolean): Promise<Agent> {
  const workDir = await mkdtemp(path.join(tmpdir(), 'caas-job-'));
  // The agent removes its folder itself: it may outlive this runner (and be adopted by the next one).
  const env: NodeJS.ProcessEnv = {
    ...withoutCaasSettings(process.env),
    CAAS_AGENT_SPEC_STDIN: '1',
    CAAS_AGENT_SPEC_VALIDATED: '1',
    CAAS_AGENT_TEMPORARY_WORKDIR: '1',
  };
  delete env.CAAS_AGENT_SPEC;
  delete env.CAAS_AGENT_SPEC_FILE;
  if (!tls && env.NODE_EXTRA_CA_CERTS !== undefined) {
    env.CAAS_AGENT_NODE_EXTRA_CA_CERTS = env.NODE_EXTRA_CA_CERTS;
    delete env.NODE_EXTRA_CA_CERTS;
  }
  const bundle = await agentBundle(entry);
  // The runner lives on (a long batch, `caas serve`): each agent it starts marks the bundle as in use.
  if (bundle) touchBundle(bundle);
  const args = bundle ? [bundle] : ['--import', import.meta.resolve('tsx'), entry];
  const child = spawn(process.execPath, args, { cwd: workDir, env, stdio: ['pipe', 'ignore', 'pipe'] });
  // A runner that dies without close() leaves the spare's stdin at EOF, and the spare exits.
  child.stdin?.on('error', () => {});
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-4000);
  });
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('error', (error) => {
      stderr += `agent could not start: ${error.message}`;
      resolve({ code: 70, signal: null });
    });
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  return { child, workDir, tls, stderr: () => stderr, closed };
}

/** Ends a spare that will get no job: an empty stdin makes it exit at once. */
async function discard(agent: Agent): Promise<void> {
  agent.child.stdin?.end();
  await agent.closed;
  await rm(agent.workDir, { recursive: true, force: true });
}

const agentBundles = new Map<string, Promise<string | undefined>>();

/**
 * How to start the agent: from its bundle (backends/bundled-entry.mjs), a few tens of ms for an agent
 * on the file store, or through tsx (~0.9 s of CPU, which would dominate short jobs by the hundred)
 * when no bundle can be had. Looked up once per runner.
 */
function agentBundle(agentEntry: string): Promise<string | undefined> {
  let bundle = agentBundles.get(agentEntry);
  if (!bundle) {
    bundle = bundledEntry(agentEntry, 'agent');
    agentBundles.set(agentEntry, bundle);
  }
  return bundle;
}
