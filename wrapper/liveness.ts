import { setTimeout as sleep } from 'node:timers/promises';
import type { Launcher } from '../backends/compute/index.ts';
import { getText, type ObjectStore } from '../backends/storage/index.ts';
import type { Blueprint } from '../models/blueprint.ts';
import { type Heartbeat, StatusFile } from '../models/status.ts';
import type { JobKeys } from './bucket-contract.ts';

/**
 * A heartbeat older than this is stale: a few of its own intervals, and never less than the
 * interval plus 5 s, so a loaded machine that writes late is not taken for a dead one.
 */
export function staleAfterMs(intervalMs: number): number {
  return Math.max(3 * intervalMs, intervalMs + 5000);
}

export function heartbeatFresh(heartbeat: Heartbeat | undefined, now = Date.now()): boolean {
  if (!heartbeat) return false;
  return now - Date.parse(heartbeat.at) <= staleAfterMs(heartbeat.interval_ms);
}

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
  /** Its agent is still at work: follow it rather than start another. */
  | { state: 'alive'; heartbeat?: Heartbeat; why: string }
  | { state: 'dead'; heartbeat?: Heartbeat; why: string };

export async function readHeartbeat(store: ObjectStore, bucket: string, keys: JobKeys): Promise<Heartbeat | undefined> {
  const text = await getText(store, bucket, keys.status).catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    return StatusFile.safeParse(JSON.parse(text)).data?.heartbeat;
  } catch {
    return undefined;
  }
}

/**
 * Whether an earlier attempt is over, alive or dead. Alive: its heartbeat is fresh, or its launcher
 * still sees its machine (an EC2 instance boots for a minute before its agent writes anything).
 * Only an attempt that is neither is dead, and only then may a new one start.
 */
export async function attemptLiveness(earlier: EarlierAttempt, now = Date.now()): Promise<Liveness> {
  const { store, bucket, keys } = earlier;
  if (await store.head(bucket, keys.end)) return { state: 'ended' };
  const heartbeat = await readHeartbeat(store, bucket, keys);
  if (heartbeatFresh(heartbeat, now)) {
    return { state: 'alive', heartbeat, why: `its agent's heartbeat is fresh (${heartbeat!.instance}, ${heartbeat!.at})` };
  }
  const machine = await earlier.launcher
    .machineAlive?.({ identity: earlier.identity, attempt: earlier.attempt, blueprint: earlier.blueprint })
    .catch(() => undefined);
  const silence = heartbeat ? `its heartbeat is stale (last ${heartbeat.at})` : 'it never wrote a heartbeat';
  if (machine === true) return { state: 'alive', heartbeat, why: `${silence}, but its machine is still up` };
  return { state: 'dead', heartbeat, why: `${silence}${machine === false ? ' and its machine is gone' : ''}` };
}

/**
 * Follows an adopted attempt until it ends (end.txt) or dies (no heartbeat and no machine), or
 * until the signal aborts. Polls at the agent's own heartbeat interval.
 */
export async function followAttempt(
  earlier: EarlierAttempt,
  options: { deadline: number; signal?: AbortSignal },
): Promise<Liveness | { state: 'stopped' }> {
  const { signal } = options;
  for (;;) {
    if (signal?.aborted) return { state: 'stopped' };
    if (Date.now() > options.deadline) return { state: 'dead', why: 'it is past its max runtime and still not finished' };
    let liveness: Liveness;
    try {
      liveness = await attemptLiveness(earlier);
    } catch {
      // The store did not answer this time; the next look decides.
      liveness = { state: 'alive', why: 'store unreachable' };
    }
    if (liveness.state !== 'alive') return liveness;
    const pollMs = Math.min(Math.max(liveness.heartbeat?.interval_ms ?? 2000, 200), 15_000);
    await sleep(pollMs, undefined, { signal }).catch(() => {});
  }
}
