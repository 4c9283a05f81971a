import { tmpdir } from 'node:os';
import type { AgentSpec } from '../../models/agent-spec.ts';
import { jobFolder } from '../../models/bucket-contract.ts';
import { type ObjectStore, openStore } from '../storage/index.ts';
import type { LaunchedJob, MachineEnd } from './index.ts';

/** What one look at a remote machine found. */
export type RemoteState =
  | { kind: 'up' }
  /** Waiting in a queue for capacity (AWS Batch): its max runtime has not started. */
  | { kind: 'queued' }
  /** The API does not list it: not yet (eventual consistency after a launch), or not any more. */
  | { kind: 'unlisted' }
  | { kind: 'ended'; why: string };

/** A machine in someone else's cloud, as a launcher can ask after it and end it. */
export interface RemoteMachine {
  /** Instance id, Batch job id, ...: what the status file and the record name. */
  readonly id: string;
  /** One look; throws when the API cannot be asked right now (throttling, a network blip). */
  look(): Promise<RemoteState>;
  /** Ends the machine. Asking twice is harmless. */
  stop(reason: string): Promise<void>;
}

/** The monitors of one launcher: closing the launcher wakes them all, and they stop watching. */
export class MonitorGroup {
  closed = false;
  private readonly wakers = new Set<() => void>();

  close(): void {
    this.closed = true;
    for (const wake of this.wakers) wake();
  }

  /** Sleeps up to ms, or until the group is closed or the waker handed to onWaker is called. */
  async pause(ms: number, onWaker: (wake: () => void) => void): Promise<void> {
    let wake: () => void = () => {};
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
      this.wakers.add(wake);
      onWaker(wake);
      if (this.closed) wake();
    });
    this.wakers.delete(wake);
  }
}

export interface MonitorOptions {
  /** What the machine is called in messages: "instance", "job". */
  noun: string;
  /** Who lists the machines, in messages: "EC2", "AWS Batch". */
  api: string;
  pollMs: number;
  /** When the machine must be gone; the monitor stops it then. A queued machine's deadline moves with its start. */
  deadline: Date;
  maxRuntimeMinutes: number;
  /** Looks during which a fresh machine may be unlisted before it counts as lost. */
  unlistedGraceLooks: number;
  /** Whether the job's end.txt is in the bucket: a machine that wrote it ended the job itself. */
  endWritten(): Promise<boolean>;
  group: MonitorGroup;
  log(line: string): void;
  /** Called once the monitor is done, however it ended. */
  settled?(): void;
}

// One closure on purpose: the loop, cancel and the start signal share the state (cancelled, the
// moving deadline, the waker) that decides, once, how the machine ended.
/**
 * The one watch every remote launcher keeps over its machine (EC2, AWS Batch): poll its state,
 * stop it at the deadline or when cancelled, and, once it is gone, let end.txt say whether the job
 * ended on its own. A look that fails is asked again at the next poll; the deadline still holds.
 */
export function monitorRemote(machine: RemoteMachine, options: MonitorOptions): LaunchedJob {
  let cancelled: string | undefined;
  let wake: () => void = () => {};
  const gone = async (reason: string): Promise<MachineEnd> => {
    const finished = await options.endWritten().catch(() => false);
    return finished ? { exitCode: null } : { exitCode: null, reason };
  };
  let started: () => void = () => {};
  const running = new Promise<void>((resolve) => {
    started = resolve;
  });
  let deadline = options.deadline.getTime();
  const maxRuntimeMs = options.maxRuntimeMinutes * 60_000;
  const ended = (async (): Promise<MachineEnd> => {
    let seen = false;
    let unlisted = 0;
    let queued = false;
    try {
      for (;;) {
        if (options.group.closed)
          return { exitCode: null, reason: cancelled ?? `caas stopped watching the ${options.noun} (launcher closed)` };
        let state: RemoteState | undefined;
        try {
          state = await machine.look();
        } catch {
          state = undefined;
        }
        if (state?.kind === 'queued') {
          seen = true;
          queued = true;
          // Its max runtime starts when it does: until then the deadline keeps its distance.
          deadline = Math.max(deadline, Date.now() + maxRuntimeMs);
        }
        if (state?.kind === 'up') {
          if (queued) deadline = Math.max(deadline, Date.now() + maxRuntimeMs);
          queued = false;
          seen = true;
          started();
        }
        if (state?.kind === 'unlisted' && (seen || ++unlisted > options.unlistedGraceLooks)) {
          return gone(cancelled ?? `${options.noun} lost: ${options.api} no longer lists it`);
        }
        if (state?.kind === 'ended') return gone(cancelled ?? `${options.noun} lost: ${state.why}`);
        const untilDeadline = deadline - Date.now();
        if (untilDeadline <= 0) {
          const timeout = cancelled ?? `timeout: past max runtime of ${options.maxRuntimeMinutes} min`;
          const failed = await machine.stop(timeout).then(
            () => '',
            (error: Error) => ` (stopping ${machine.id} failed: ${error.message}; it stops itself at its max runtime)`,
          );
          return gone(`${timeout}${failed}`);
        }
        await options.group.pause(Math.min(options.pollMs, untilDeadline), (w) => {
          wake = w;
        });
      }
    } finally {
      started();
      options.settled?.();
    }
  })();
  return {
    instance: machine.id,
    running,
    ended,
    cancel: async (reason: string) => {
      cancelled ??= reason;
      // Callers fire and forget; a failed stop is tried again at the deadline, and the machine's own hard stop follows.
      await machine.stop(reason).catch((error: Error) => options.log(`caas: could not stop ${machine.id} (${reason}): ${error.message}`));
      wake();
    },
  };
}

/** Whether a job's end.txt is in its bucket, asked through one store opened on first use. */
export class EndMarkers {
  private store: Promise<ObjectStore> | undefined;

  constructor(private readonly options: { storeUrl: string; store?: ObjectStore }) {
    if (options.store) this.store = Promise.resolve(options.store);
  }

  async written(spec: Pick<AgentSpec, 'bucket' | 'group' | 'timestamp'>): Promise<boolean> {
    this.store ??= openStore(this.options.storeUrl, { home: tmpdir() });
    const { end } = jobFolder(spec.bucket, spec.group, spec.timestamp);
    return (await (await this.store).head(spec.bucket, end)) !== undefined;
  }

  async close(): Promise<void> {
    // A store that never opened has nothing to close (and its failure was answered where it was asked).
    if (this.store && !this.options.store) await (await this.store.catch(() => undefined))?.close();
  }
}

/** One SDK client per region, made on first use; or the one client a test hands in, for every region. */
export class ClientsByRegion<Client extends { destroy(): void }> {
  private readonly clients = new Map<string, Client>();

  constructor(
    private readonly make: (region: string) => Client,
    private readonly given?: Client,
  ) {}

  in(region: string): Client {
    if (this.given) return this.given;
    let client = this.clients.get(region);
    if (!client) {
      client = this.make(region);
      this.clients.set(region, client);
    }
    return client;
  }

  destroy(): void {
    for (const client of this.clients.values()) client.destroy();
  }
}
