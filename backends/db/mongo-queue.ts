import { type Collection, type Filter as MongoFilter, MongoServerError } from 'mongodb';
import type { QueuedJob, QueueSettlement } from '../../models/queued-job.ts';
import type { Owner } from '../../models/record.ts';
import { cancelledJob, type Enqueued, type JobQueue, settledJob, takeable, takenJob } from './queue.ts';

const DUPLICATE_KEY = 11000;
/** A take retries when another server took the job it read first; each round sees a newer queue. */
const TAKE_ROUNDS = 10;

/** Matches the job only while `owner` holds it (fields one by one: key order must not matter). */
function takenBy(id: string, owner: Owner): MongoFilter<QueuedJob> {
  return { _id: id, state: 'taken', 'taken.owner.host': owner.host, 'taken.owner.pid': owner.pid, 'taken.owner.run': owner.run };
}

/** Matches the job only if nobody has written it since it was read as `seen`. */
function unchanged(seen: QueuedJob): MongoFilter<QueuedJob> {
  return { _id: seen._id, state: seen.state, updated: seen.updated, tries: seen.tries, 'taken.expires': seen.taken?.expires ?? null };
}

/**
 * The service's queue in MongoDB (backends/db/queue.ts), atomic without transactions as claims
 * are: a new job is an insert the unique `_id` lets one server win; every change after that is a
 * replace conditioned on the entry being exactly what was read, so of two servers taking the same
 * job one matches and the other reads again.
 */
export class MongoQueue implements JobQueue {
  constructor(private readonly jobs: Collection<QueuedJob>) {}

  static indexes(jobs: Collection<QueuedJob>): Promise<string[]> {
    return jobs.createIndexes([{ key: { state: 1, queued: 1 } }, { key: { analysis: 1, group: 1, state: 1 } }]);
  }

  async enqueue(job: QueuedJob): Promise<Enqueued> {
    for (let round = 0; round < TAKE_ROUNDS; round++) {
      try {
        await this.jobs.insertOne(job);
        return { accepted: true, entry: job };
      } catch (error) {
        if (!(error instanceof MongoServerError && error.code === DUPLICATE_KEY)) throw error;
      }
      const existing = await this.jobs.findOne({ _id: job._id });
      if (!existing) continue;
      if (existing.state === 'queued' || existing.state === 'taken') return { accepted: false, entry: existing };
      const entry = { ...job, tries: existing.tries };
      if ((await this.jobs.replaceOne(unchanged(existing), entry)).matchedCount === 1) return { accepted: true, entry };
    }
    throw new Error(`queueing ${job._id} kept losing races with other servers; try again`);
  }

  async take(owner: Owner, leaseMs: number, now = new Date()): Promise<QueuedJob | undefined> {
    const iso = now.toISOString();
    const due: MongoFilter<QueuedJob> = {
      $or: [
        { state: 'queued', not_before: { $lte: iso } },
        { state: 'taken', 'taken.expires': { $lte: iso } },
      ],
    };
    for (let round = 0; round < TAKE_ROUNDS; round++) {
      const candidates = await this.jobs.find(due).sort({ queued: 1, _id: 1 }).limit(8).toArray();
      if (candidates.length === 0) return undefined;
      for (const seen of candidates) {
        if (!takeable(seen, now)) continue;
        const taken = takenJob(seen, owner, leaseMs, now);
        if ((await this.jobs.replaceOne(unchanged(seen), taken)).matchedCount === 1) return taken;
      }
    }
    return undefined;
  }

  async renewTaken(id: string, owner: Owner, leaseMs: number): Promise<QueuedJob | undefined> {
    const expires = new Date(Date.now() + leaseMs).toISOString();
    const result = await this.jobs.updateOne(takenBy(id, owner), { $set: { 'taken.expires': expires } });
    if (result.matchedCount !== 1) return undefined;
    return (await this.jobs.findOne(takenBy(id, owner))) ?? undefined;
  }

  async settle(id: string, owner: Owner, settlement: QueueSettlement): Promise<boolean> {
    const job = await this.jobs.findOne(takenBy(id, owner));
    if (!job) return false;
    const settled = settledJob(job, settlement, new Date());
    // A cancellation asked for meanwhile changes `updated`: read again and settle over it.
    for (let round = 0; round < TAKE_ROUNDS; round++) {
      const seen = round === 0 ? job : await this.jobs.findOne(takenBy(id, owner));
      if (!seen) return false;
      if (
        (await this.jobs.replaceOne({ ...takenBy(id, owner), updated: seen.updated }, { ...settled, cancel: seen.cancel })).matchedCount ===
        1
      )
        return true;
    }
    return false;
  }

  async cancel(id: string, reason: string, now = new Date()): Promise<QueuedJob | undefined> {
    for (let round = 0; round < TAKE_ROUNDS; round++) {
      const job = await this.jobs.findOne({ _id: id });
      if (job?.state !== 'queued' && job?.state !== 'taken') return undefined;
      const cancelled = cancelledJob(job, reason, now);
      if ((await this.jobs.replaceOne(unchanged(job), cancelled)).matchedCount === 1) return cancelled;
    }
    throw new Error(`cancelling ${id} kept losing races with servers taking it; try again`);
  }

  async queued(id: string): Promise<QueuedJob | undefined> {
    return (await this.jobs.findOne({ _id: id })) ?? undefined;
  }

  listQueued(options: { group?: string; limit: number }): Promise<QueuedJob[]> {
    if (options.limit <= 0) return Promise.resolve([]);
    const filter: MongoFilter<QueuedJob> = options.group === undefined ? {} : { group: options.group };
    return this.jobs.find(filter).sort({ queued: -1, _id: 1 }).limit(options.limit).toArray();
  }

  countWaiting(analysis: string, group: string): Promise<number> {
    return this.jobs.countDocuments({ analysis, group, state: { $in: ['queued', 'taken'] } });
  }
}
