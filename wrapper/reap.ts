import {
  DescribeInstancesCommand,
  type DescribeInstancesCommandInput,
  type EC2Client,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import type { MetadataStore } from '../backends/db/index.ts';

export interface Reapable {
  instance: string;
  state: string;
  analysis: string;
  identity: string;
  /** Every reason the instance should not exist any more, most telling first. */
  why: string[];
}

const TERMINATE_BATCH = 100;

/**
 * caas instances nobody is waiting for: past their deadline, or whose record no longer says a
 * runner holds the job (finished, failed, taken over by a newer attempt, or a lease that lapsed
 * because the runner died). Their results would never be recorded, so they only cost money.
 */
export async function findReapable(ec2: EC2Client, db: Pick<MetadataStore, 'lookup'>, now: Date): Promise<Reapable[]> {
  const instances: { id: string; state: string; tags: Map<string, string> }[] = [];
  const input: DescribeInstancesCommandInput = {
    Filters: [
      { Name: 'tag-key', Values: ['caas:identity'] },
      { Name: 'instance-state-name', Values: ['pending', 'running'] },
    ],
  };
  do {
    const page = await ec2.send(new DescribeInstancesCommand(input));
    for (const reservation of page.Reservations ?? []) {
      for (const instance of reservation.Instances ?? []) {
        if (!instance.InstanceId) continue;
        const tags = new Map((instance.Tags ?? []).map((t) => [t.Key ?? '', t.Value ?? '']));
        instances.push({ id: instance.InstanceId, state: instance.State?.Name ?? 'unknown', tags });
      }
    }
    input.NextToken = page.NextToken;
  } while (input.NextToken);

  const records = await db.lookup([...new Set(instances.map((i) => i.tags.get('caas:identity') ?? ''))]);
  const reapable: Reapable[] = [];
  for (const { id, state, tags } of instances) {
    const identity = tags.get('caas:identity') ?? '';
    const why: string[] = [];
    const deadline = Date.parse(tags.get('caas:deadline') ?? '');
    if (deadline <= now.getTime()) why.push(`past its deadline ${tags.get('caas:deadline')}`);
    const record = records.get(identity);
    if (!record) why.push('no record for its identity');
    else if (record.status !== 'running') why.push(`its record is ${record.status}`);
    else {
      const expires = record.lease ? Date.parse(record.lease.expires) : 0;
      if (expires <= now.getTime()) why.push(`lease expired${record.lease ? ` at ${record.lease.expires}` : ''}: its runner is gone`);
      const current = record.attempts.at(-1)?.n;
      const attempt = Number(tags.get('caas:attempt'));
      if (current !== undefined && Number.isInteger(attempt) && attempt > 0 && attempt !== current) {
        why.push(`attempt ${attempt} was superseded by attempt ${current}`);
      }
    }
    if (why.length > 0) reapable.push({ instance: id, state, analysis: tags.get('caas:analysis') ?? '-', identity, why });
  }
  return reapable;
}

export async function terminateInstances(ec2: EC2Client, instanceIds: readonly string[]): Promise<void> {
  for (let start = 0; start < instanceIds.length; start += TERMINATE_BATCH) {
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: instanceIds.slice(start, start + TERMINATE_BATCH) }));
  }
}
