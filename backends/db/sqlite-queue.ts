import type BetterSqlite3 from 'better-sqlite3';
import type { QueuedJob, QueueSettlement } from '../../models/queued-job.ts';
import type { Owner } from '../../models/record.ts';
import { sameOwner } from './index.ts';
import { cancelledJob, type Enqueued, type JobQueue, settledJob, takeable, takenJob } from './queue.ts';

const QUEUE_SCHEMA = `
CREATE TABLE IF NOT EXISTS queue (
  id TEXT PRIMARY KEY,
  analysis TEXT NOT NULL,
  grp TEXT NOT NULL,
  state TEXT NOT NULL,
  queued TEXT NOT NULL,
  due TEXT NOT NULL,
  doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_due ON queue(state, due);
CREATE INDEX IF NOT EXISTS queue_group ON queue(analysis, grp, state);
`;

/**
 * The service's queue in the SQLite file (backends/db/queue.ts). Every write is one BEGIN
 * IMMEDIATE transaction, which serialises writers across processes: a take reads the oldest due
 * job and marks it taken with no other writer in between. `due` is when the job may be taken: its
 * not_before while queued, its lease's end while taken.
 */
export class SqliteQueue implements JobQueue {
  constructor(private readonly db: BetterSqlite3.Database) {
    if (!db.readonly) db.exec(QUEUE_SCHEMA);
  }

  /** A database opened read-only from an older caas has no queue table: nothing is queued. */
  private exists(): boolean {
    return !!this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'queue'").get();
  }

  private read(id: string): QueuedJob | undefined {
    if (!this.exists()) return undefined;
    const row = this.db.prepare<[string], { doc: string }>('SELECT doc FROM queue WHERE id = ?').get(id);
    return row ? (JSON.parse(row.doc) as QueuedJob) : undefined;
  }

  private write(job: QueuedJob): void {
    const due = job.state === 'taken' ? (job.taken?.expires ?? job.not_before) : job.not_before;
    this.db
      .prepare(
        `INSERT INTO queue (id, analysis, grp, state, queued, due, doc) VALUES (@id, @analysis, @grp, @state, @queued, @due, @doc)
         ON CONFLICT(id) DO UPDATE SET analysis = excluded.analysis, grp = excluded.grp, state = excluded.state,
           queued = excluded.queued, due = excluded.due, doc = excluded.doc`,
      )
      .run({ id: job._id, analysis: job.analysis, grp: job.group, state: job.state, queued: job.queued, due, doc: JSON.stringify(job) });
  }

  async enqueue(job: QueuedJob): Promise<Enqueued> {
    return this.db
      .transaction((): Enqueued => {
        const existing = this.read(job._id);
        if (existing && (existing.state === 'queued' || existing.state === 'taken')) return { accepted: false, entry: existing };
        const entry = { ...job, tries: existing?.tries ?? job.tries };
        this.write(entry);
        return { accepted: true, entry };
      })
      .immediate();
  }

  async take(owner: Owner, leaseMs: number, now = new Date()): Promise<QueuedJob | undefined> {
    const iso = now.toISOString();
    return this.db
      .transaction((): QueuedJob | undefined => {
        const row = this.db
          .prepare<[string], { doc: string }>(
            "SELECT doc FROM queue WHERE state IN ('queued', 'taken') AND due <= ? ORDER BY queued, id LIMIT 1",
          )
          .get(iso);
        if (!row) return undefined;
        const job = JSON.parse(row.doc) as QueuedJob;
        if (!takeable(job, now)) return undefined;
        const taken = takenJob(job, owner, leaseMs, now);
        this.write(taken);
        return taken;
      })
      .immediate();
  }

  async renewTaken(id: string, owner: Owner, leaseMs: number): Promise<QueuedJob | undefined> {
    return this.db
      .transaction((): QueuedJob | undefined => {
        const job = this.read(id);
        if (job?.state !== 'taken' || !sameOwner(job.taken?.owner, owner)) return undefined;
        const renewed = { ...job, taken: { owner, expires: new Date(Date.now() + leaseMs).toISOString() } };
        this.write(renewed);
        return renewed;
      })
      .immediate();
  }

  async settle(id: string, owner: Owner, settlement: QueueSettlement): Promise<boolean> {
    return this.db
      .transaction((): boolean => {
        const job = this.read(id);
        if (job?.state !== 'taken' || !sameOwner(job.taken?.owner, owner)) return false;
        this.write(settledJob(job, settlement, new Date()));
        return true;
      })
      .immediate();
  }

  async cancel(id: string, reason: string, now = new Date()): Promise<QueuedJob | undefined> {
    if (!this.exists()) return undefined;
    return this.db
      .transaction((): QueuedJob | undefined => {
        const job = this.read(id);
        if (job?.state !== 'queued' && job?.state !== 'taken') return undefined;
        const cancelled = cancelledJob(job, reason, now);
        this.write(cancelled);
        return cancelled;
      })
      .immediate();
  }

  async queued(id: string): Promise<QueuedJob | undefined> {
    return this.read(id);
  }

  async listQueued(options: { group?: string; limit: number }): Promise<QueuedJob[]> {
    if (!this.exists() || options.limit <= 0) return [];
    const rows =
      options.group === undefined
        ? this.db.prepare<[number], { doc: string }>('SELECT doc FROM queue ORDER BY queued DESC, id LIMIT ?').all(options.limit)
        : this.db
            .prepare<[string, number], { doc: string }>('SELECT doc FROM queue WHERE grp = ? ORDER BY queued DESC, id LIMIT ?')
            .all(options.group, options.limit);
    return rows.map((row) => JSON.parse(row.doc) as QueuedJob);
  }

  async countWaiting(analysis: string, group: string): Promise<number> {
    if (!this.exists()) return 0;
    const row = this.db
      .prepare<[string, string], { n: number }>(
        "SELECT COUNT(*) AS n FROM queue WHERE analysis = ? AND grp = ? AND state IN ('queued', 'taken')",
      )
      .get(analysis, group);
    return row?.n ?? 0;
  }
}
