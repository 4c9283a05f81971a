import type { QueuedJob, QueueSettlement } from '../../models/queued-job.ts';
import type { Owner } from '../../models/record.ts';

export type { QueuedJob, QueueSettlement } from '../../models/queued-job.ts';

/** What `enqueue` did: `accepted` when the job is waiting now because of this call. */
export interface Enqueued {
  accepted: boolean;
  entry: QueuedJob;
}

/**
 * The durable queue of `caas serve` (models/queued-job.ts), in the metadata DB beside the records,
 * so every server on the DB shares it. Taking a job is atomic: two servers never hold it at once.
 */
export interface JobQueue {
  /**
   * Inserts the job as queued; a job of that identity already done or cancelled is queued again;
   * one waiting or taken is left as it is (accepted: false, with the entry as it stands).
   */
  enqueue(job: QueuedJob): Promise<Enqueued>;
  /** Takes the oldest job that is queued and due, or whose taker's lease lapsed, for `owner`; undefined when none. */
  take(owner: Owner, leaseMs: number, now?: Date): Promise<QueuedJob | undefined>;
  /** Extends the lease of a job the owner holds, and returns it (with any cancellation asked for); undefined when lost. */
  renewTaken(id: string, owner: Owner, leaseMs: number): Promise<QueuedJob | undefined>;
  /** Answers a job the owner holds, or puts it back; false when the owner no longer holds it. */
  settle(id: string, owner: Owner, settlement: QueueSettlement): Promise<boolean>;
  /**
   * Cancels a job: a queued one becomes cancelled at once; a taken one is marked, and its taker
   * stops the attempt when it next renews. Undefined when there is no such job waiting or taken.
   */
  cancel(id: string, reason: string, now?: Date): Promise<QueuedJob | undefined>;
  queued(id: string): Promise<QueuedJob | undefined>;
  /** Jobs newest first, optionally of one group only. */
  listQueued(options: { group?: string; limit: number }): Promise<QueuedJob[]>;
  /** How many of a group's jobs of an analysis wait or are taken (the service's per-group limit). */
  countWaiting(analysis: string, group: string): Promise<number>;
}

/** Whether a server may take this job now: queued and due, or taken under a lapsed lease. */
export function takeable(job: QueuedJob, now: Date): boolean {
  if (job.state === 'queued') return Date.parse(job.not_before) <= now.getTime();
  return job.state === 'taken' && job.taken !== null && Date.parse(job.taken.expires) <= now.getTime();
}

/** The entry after `owner` took it. */
export function takenJob(job: QueuedJob, owner: Owner, leaseMs: number, now: Date): QueuedJob {
  return {
    ...job,
    state: 'taken',
    taken: { owner, expires: new Date(now.getTime() + leaseMs).toISOString() },
    tries: job.tries + 1,
    updated: now.toISOString(),
  };
}

/** The entry after its taker settled it. */
export function settledJob(job: QueuedJob, settlement: QueueSettlement, now: Date): QueuedJob {
  return {
    ...job,
    state: settlement.state,
    taken: null,
    outcome: settlement.outcome,
    reason: settlement.reason,
    not_before: (settlement.notBefore ?? now).toISOString(),
    updated: now.toISOString(),
  };
}

/** The entry after a cancellation was asked for. */
export function cancelledJob(job: QueuedJob, reason: string, now: Date): QueuedJob {
  const at = now.toISOString();
  if (job.state === 'queued') return { ...job, state: 'cancelled', outcome: 'cancelled', reason, cancel: { reason, at }, updated: at };
  return { ...job, cancel: { reason, at }, updated: at };
}
