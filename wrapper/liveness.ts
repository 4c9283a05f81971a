import { setTimeout as sleep } from 'node:timers/promises';
import type { Launcher } from '../backends/compute/index.ts';
import { getText, type ObjectStore } from '../backends/storage/index.ts';
import type { Blueprint } from '../models/blueprint.ts';
import type { JobKeys } from '../models/bucket-contract.ts';
import { staleAfterMs } from '../models/liveness.ts';
import { Heartbeat } from '../models/status.ts';

/** DescribeInstances is rate-limited per account: a machine is asked about at most this often. */
const MACHINE_PROBE_MS = 15_000;

/** An earlier attempt of a job, as the runner that took its record over sees it. */
export interface EarlierAttempt {
  store: ObjectStore;
  bucket: string;
  keys: JobKeys;
  identity: string;
  attempt: number;
  blueprint: Blueprint;
  launcher: Launcher;
}

export type Liveness =
  /** end.txt is there: the attempt finished, whatever its outcome. */
  | { state: 'ended' }
  /** Its agent is still at work, or nobody can tell it is not: follow it rather than start another. */
  | { state: 'alive'; heartbeat?: Heartbeat; why: string }
  | { state: 'dead'; heartbeat?: Heartbeat; why: string };

/** The heartbeat in a status file and when the store last saw it written (the store's clock). */
export async function readHeartbeat(store: ObjectStore, bucket: string, keys: JobKeys): Promise<{ heartbeat?: Heartbeat; written?: Date }> {
  const [text, info] = await Promise.all([getText(store, bucket, keys.status), store.head(bucket, keys.status)]);
  if (text === undefined) return {};
  let heartbeat: Heartbeat | undefined;
  try {
    // Only the heartbeat is read, and loosely: an agent of a newer caas may say more.
    heartbeat = Heartbeat.strip().safeParse((JSON.parse(text) as { heartbeat?: unknown } | null)?.heartbeat).data;
  } catch {}
  return { heartbeat, written: info?.modified };
}

/**
 * Whether a heartbeat is fresh: its own time or the time the store received it, whichever is
 * later, is recent. Either clock alone could be off; an agent whose clock lags the runner's must
 * not look dead while the store is still receiving its heartbeats.
 */
export function heartbeatFresh(heartbeat: Heartbeat | undefined, written: Date | undefined, now = Date.now()): boolean {
  if (!heartbeat) return false;
  const last = Math.max(Date.parse(heartbeat.at) || 0, written?.getTime() ?? 0);
  return now - last <= staleAfterMs(heartbeat.interval_ms);
}

/**
 * Asks the launcher whether an earlier attempt's machine is still up, at most every
 * MACHINE_PROBE_MS, and says "unknown" when it cannot tell (throttled, no credentials).
 */
export class MachineProbe {
  private last: { at: number; answer: boolean | 'unknown' | undefined } | undefined;

  constructor(private readonly earlier: EarlierAttempt) {}

  async ask(): Promise<boolean | 'unknown' | undefined> {
    if (this.last && Date.now() - this.last.at < MACHINE_PROBE_MS) return this.last.answer;
    const { launcher, identity, attempt, blueprint } = this.earlier;
    const answer = launcher.machineAlive
      ? await launcher.machineAlive({ identity, attempt, blueprint }).catch(() => 'unknown' as const)
      : undefined;
    this.last = { at: Date.now(), answer };
    return answer;
  }
}

/**
 * Whether an earlier attempt is over, alive or dead. Alive: its heartbeat is fresh, or its
 * launcher sees its machine (an EC2 instance boots for a minute before its agent writes anything),
 * or the launcher cannot be asked right now. Only an attempt that is none of these is dead, and
 * only then may a new one start.
 */
export async function attemptLiveness(earlier: EarlierAttempt, probe = new MachineProbe(earlier), now = Date.now()): Promise<Liveness> {
  const { store, bucket, keys } = earlier;
  if (await store.head(bucket, keys.end)) return { state: 'ended' };
  const { heartbeat, written } = await readHeartbeat(store, bucket, keys);
  if (heartbeatFresh(heartbeat, written, now)) {
    return { state: 'alive', heartbeat, why: `its agent's heartbeat is fresh (${heartbeat!.instance}, ${heartbeat!.at})` };
  }
  const machine = await probe.ask();
  const silence = heartbeat ? `its heartbeat is stale (last ${heartbeat.at})` : 'it never wrote a heartbeat';
  if (machine === true) return { state: 'alive', heartbeat, why: `${silence}, but its machine is still up` };
  if (machine === 'unknown') return { state: 'alive', heartbeat, why: `${silence}, and its machine could not be asked about` };
  return { state: 'dead', heartbeat, why: `${silence}${machine === false ? ' and its machine is gone' : ''}` };
}

/**
 * A runner's first look at an attempt it has just taken over, asked again when the store does not
 * answer: giving up on one dropped read would leave the job claimed by no one watching, and the
 * stalled runner would stop a machine that was alive. Only a store that stays silent is an error.
 */
export async function lookAtLapsedAttempt(earlier: EarlierAttempt, tries = 3): Promise<Liveness> {
  for (let tried = 1; ; tried++) {
    try {
      return await attemptLiveness(earlier);
    } catch (error) {
      if (tried >= tries) throw error;
      await sleep(500 * tried);
    }
  }
}

/**
 * Follows an adopted attempt until it ends (end.txt) or dies (no heartbeat and no machine), until
 * its deadline passes, or until the signal aborts. Polls at the agent's own heartbeat interval.
 */
export async function followAttempt(
  earlier: EarlierAttempt,
  options: { deadline: number; signal?: AbortSignal },
): Promise<Liveness | { state: 'stopped' } | { state: 'deadline' }> {
  const { signal } = options;
  const probe = new MachineProbe(earlier);
  for (;;) {
    if (signal?.aborted) return { state: 'stopped' };
    if (Date.now() > options.deadline) return { state: 'deadline' };
    let liveness: Liveness;
    try {
      liveness = await attemptLiveness(earlier, probe);
    } catch {
      // The store did not answer this time; the next look decides.
      liveness = { state: 'alive', why: 'store unreachable' };
    }
    if (liveness.state !== 'alive') return liveness;
    const pollMs = Math.min(Math.max(liveness.heartbeat?.interval_ms ?? 2000, 200), 15_000);
    await sleep(pollMs, undefined, { signal }).catch(() => {});
  }
}
