import type { MetadataStore } from '../backends/db/index.ts';
import type { MetadataRecord } from '../models/record.ts';
import type { Prepared, PreparedJob } from './prepare.ts';

export type PlanAction = 'RUN' | 'SKIP' | 'RUNNING' | 'INVALID';

export interface PlanEntry {
  action: PlanAction;
  where: string;
  job?: PreparedJob;
  /** The record that decided SKIP or RUNNING, or the failed record a RUN retries. */
  record?: MetadataRecord;
  reason?: string;
}

export const GATE_CHUNK = 1000;

/**
 * Decides what happens to each job of a chunk with ONE store query: succeeded identities are
 * skipped, identities under a live lease are running elsewhere, everything else runs (a failed or
 * expired one as a new attempt). `force` turns SKIP into RUN; a duplicate inside the batch is
 * skipped as such. The claim at execution time re-checks all of this atomically.
 */
export async function planChunk(
  prepared: readonly Prepared[],
  store: MetadataStore,
  options: { force?: boolean; seen?: Map<string, string>; now?: Date },
): Promise<PlanEntry[]> {
  const now = (options.now ?? new Date()).getTime();
  const seen = options.seen ?? new Map<string, string>();
  const ids = prepared.flatMap((p) => (p.ok ? [p.job.identity] : []));
  const records = await store.lookup(ids);
  return prepared.map((p): PlanEntry => {
    if (!p.ok) return { action: 'INVALID', where: p.where, reason: p.reason };
    const { job } = p;
    const first = seen.get(job.identity);
    if (first !== undefined) return { action: 'SKIP', where: job.where, job, reason: `same identity as ${first} in this batch` };
    seen.set(job.identity, job.where);
    const record = records.get(job.identity);
    if (!record) return { action: 'RUN', where: job.where, job };
    if (record.status === 'succeeded') {
      if (options.force) return { action: 'RUN', where: job.where, job, record, reason: 'forced rerun of a succeeded identity' };
      return { action: 'SKIP', where: job.where, job, record, reason: `succeeded ${record.end ?? record.updated}` };
    }
    const leaseLive = record.lease !== null && Date.parse(record.lease.expires) > now;
    if ((record.status === 'running' || record.status === 'claimed') && leaseLive) {
      return {
        action: 'RUNNING',
        where: job.where,
        job,
        record,
        reason: `running elsewhere (${record.lease?.owner.host} pid ${record.lease?.owner.pid})`,
      };
    }
    const previous = record.attempts.at(-1);
    return {
      action: 'RUN',
      where: job.where,
      job,
      record,
      reason:
        record.status === 'failed'
          ? `retry: attempt ${previous?.n ?? '?'} failed (${record.reason ?? 'unknown'})`
          : 'retry: the previous runner lost its lease',
    };
  });
}
