import type { Attempt, AttemptCost, JobLocation, MetadataRecord, Owner } from '../models/record.ts';

/**
 * How a record's attempts change when a runner takes a job over whose runner died. One attempt is
 * one execution: an attempt whose agent is still alive is adopted (reopened under the new runner's
 * lease), not counted again; only a dead one is closed and followed by a new attempt.
 */

/**
 * The new runner's claim opened attempt `placeholder`; the agent of attempt `adopted` is alive, so
 * the placeholder goes and the adopted attempt runs on, with who adopted it and when.
 */
export function adoptAttempt(record: MetadataRecord, adopted: number, placeholder: number, by: Owner, job: JobLocation): MetadataRecord {
  const at = new Date().toISOString();
  return {
    ...record,
    job,
    attempts: record.attempts
      .filter((a) => a.n !== placeholder)
      .map((a): Attempt => {
        if (a.n !== adopted) return a;
        const { lapsed: _, ...open } = a;
        return { ...open, status: 'running', ended: null, reason: null, adopted: [...(a.adopted ?? []), { by, at }] };
      }),
  };
}

/** The earlier attempt is dead: the claim's own attempt, `claimed` while that was being decided, now runs. */
export function startAttempt(record: MetadataRecord, claimed: number): MetadataRecord {
  return { ...record, attempts: record.attempts.map((a): Attempt => (a.n === claimed ? { ...a, status: 'running' } : a)) };
}

/** An adopted attempt died before it finished: it is closed as failed, and a new attempt starts. */
export function replaceDeadAttempt(record: MetadataRecord, dead: number, reason: string, owner: Owner, job: JobLocation): MetadataRecord {
  const at = new Date().toISOString();
  const attempts = record.attempts.map((a): Attempt => (a.n === dead ? { ...a, status: 'failed', ended: at, reason } : a));
  attempts.push({
    n: attempts.length + 1,
    started: at,
    ended: null,
    status: 'running',
    reason: null,
    exit_code: null,
    results: job.results,
    owner,
  });
  return { ...record, job, attempts };
}

/**
 * The attempt a claim has just taken over from a runner that stopped renewing its lease (the claim
 * closed it with a "lease expired" reason), when it had a job folder to look at.
 */
export function lapsedAttempt(record: MetadataRecord, claimed: number): Attempt | undefined {
  // Only a claim of a running record (its lease lapsed) is `claimed` first: failed and forced takeovers start at once.
  if (record.attempts.find((a) => a.n === claimed)?.status !== 'claimed') return undefined;
  const previous = record.attempts.find((a) => a.n === claimed - 1);
  // Records written before attempts carried `lapsed` say so only in the reason.
  if (!previous?.results || !(previous.lapsed || previous.reason?.startsWith('lease expired'))) return undefined;
  return previous;
}

/**
 * A dead attempt is charged to its group's budget like a recorded one: it ran on a machine nobody
 * recorded, so its cost is what it could have cost up to when it was found dead (at most its max
 * runtime). An attempt that already has a cost keeps it.
 */
export function chargeDeadAttempt(record: MetadataRecord, dead: number, cost: AttemptCost): MetadataRecord {
  return { ...record, attempts: record.attempts.map((a): Attempt => (a.n === dead && !a.cost ? { ...a, cost } : a)) };
}
