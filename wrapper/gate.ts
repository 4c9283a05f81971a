import { claimVerdict, type MetadataStore } from '../backends/db/index.ts';
import type { MetadataRecord } from '../models/record.ts';
import type { Prepared, PreparedJob } from './prepare.ts';

/** REFUSED: valid, but its group may not start it now (its budget is reached); the reason says why. */
export type PlanAction = 'RUN' | 'SKIP' | 'RUNNING' | 'INVALID' | 'REFUSED';

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
  const now = options.now ?? new Date();
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
    // The same rule the atomic claim applies, so the plan never promises what the claim refuses.
    const verdict = claimVerdict(record, now, options.force ? 'forced' : undefined);
    if (verdict === 'insert') return { action: 'RUN', where: job.where, job };
    if (verdict === 'succeeded')
      return { action: 'SKIP', where: job.where, job, record, reason: `succeeded ${record?.end ?? record?.updated}` };
    if (verdict === 'running') {
      return {
        action: 'RUNNING',
        where: job.where,
        job,
        record,
        reason: `running elsewhere (${record?.lease?.owner.host} pid ${record?.lease?.owner.pid})`,
      };
    }
    const reason =
      record?.status === 'succeeded'
        ? 'forced rerun of a succeeded identity'
        : record?.status === 'failed'
          ? `retry: attempt ${record.attempts.at(-1)?.n ?? '?'} failed (${record.reason ?? 'unknown'})`
          : 'the previous runner stopped renewing its lease: its job is adopted if its agent is alive, else run again';
    return { action: 'RUN', where: job.where, job, record, reason };
  });
}
