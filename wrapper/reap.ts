import type { CaasMachine } from '../backends/compute/index.ts';
import type { MetadataStore } from '../backends/db/index.ts';

export interface Reapable {
  instance: string;
  state: string;
  analysis: string;
  identity: string;
  /** Every reason the instance should not exist any more, most telling first. */
  why: string[];
}

/**
 * caas instances nobody is waiting for: past their deadline, or whose record no longer says the
 * job is theirs (finished, failed, or taken over by a newer attempt). Their results would never be
 * recorded, so they only cost money. A lease that lapsed because the runner died is no reason:
 * the next run adopts the instance and records what it computes.
 */
export async function findReapable(instances: readonly CaasMachine[], db: Pick<MetadataStore, 'lookup'>, now: Date): Promise<Reapable[]> {
  const records = await db.lookup([...new Set(instances.map((i) => i.tags['caas:identity'] ?? ''))]);
  const reapable: Reapable[] = [];
  for (const { id, state, tags } of instances) {
    const identity = tags['caas:identity'] ?? '';
    const why: string[] = [];
    const deadline = Date.parse(tags['caas:deadline'] ?? '');
    if (deadline <= now.getTime()) why.push(`past its deadline ${tags['caas:deadline']}`);
    const record = records.get(identity);
    if (!record) why.push('no record for its identity');
    else if (record.status !== 'running') why.push(`its record is ${record.status}`);
    else {
      // A `claimed` attempt is a runner still deciding whether to adopt this instance: not superseded yet.
      const current = record.attempts.findLast((a) => a.status !== 'claimed')?.n;
      const attempt = Number(tags['caas:attempt']);
      if (current !== undefined && Number.isInteger(attempt) && attempt > 0 && attempt !== current) {
        why.push(`attempt ${attempt} was superseded by attempt ${current}`);
      }
    }
    if (why.length > 0) reapable.push({ instance: id, state, analysis: tags['caas:analysis'] ?? '-', identity, why });
  }
  return reapable;
}
