import { mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { find as mingoFind } from 'mingo';
import { compileFilter } from '../../models/filter.ts';
import type { GroupSlot } from '../../models/group-slot.ts';
import type { MetadataRecord, Owner } from '../../models/record.ts';
import {
  adoptedSlot,
  type ClaimOutcome,
  type ClaimRequest,
  claimedRecord,
  claimVerdict,
  type Database,
  DatabaseUrlError,
  type DbOptions,
  type Filter,
  type GroupSpend,
  orphanedSlotOf,
  type QueryOptions,
  type SlotRequest,
  sameOwner,
  slotLive,
  slotNumbers,
  takenSlot,
} from './index.ts';
import { SqliteQueue } from './sqlite-queue.ts';
import { SqliteRecordIndex } from './sqlite-record-index.ts';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS records (
  id TEXT PRIMARY KEY,
  status TEXT NOT NULL,
  analysis TEXT NOT NULL,
  created TEXT NOT NULL,
  doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_status ON records(status);
CREATE INDEX IF NOT EXISTS records_analysis ON records(analysis);
CREATE INDEX IF NOT EXISTS records_created ON records(created);
CREATE TABLE IF NOT EXISTS data_assets (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  created TEXT,
  doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS data_assets_created ON data_assets(created);
CREATE TABLE IF NOT EXISTS slots (
  id TEXT PRIMARY KEY,
  analysis TEXT NOT NULL,
  grp TEXT NOT NULL,
  doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS slots_group ON slots(analysis, grp);
`;

const COLUMNS = ['id', 'status', 'analysis', 'created', 'doc'];

/**
 * Whether a database is caas's ('caas': it has the records table) or still empty ('empty': no
 * tables). Anything else is someone else's file, and closed and refused (DatabaseUrlError).
 */
function ownTables(db: BetterSqlite3.Database, file: string): 'caas' | 'empty' {
  const refuse = (what: string): never => {
    db.close();
    throw new DatabaseUrlError(
      `${file} ${what}: expected a caas metadata DB (tables records and data_assets, made by caas), or a new file; point --db (or CAAS_DB) at another file`,
    );
  };
  let tables: string[];
  try {
    tables = db.prepare<[], string>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").pluck().all();
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') return refuse('is not an SQLite database');
    throw error;
  }
  if (tables.length === 0) return 'empty';
  const columns = tables.includes('records') ? db.prepare<[], string>("SELECT name FROM pragma_table_info('records')").pluck().all() : [];
  if (COLUMNS.every((c) => columns.includes(c))) return 'caas';
  return refuse(`is an SQLite database of something else (tables ${tables.slice(0, 5).join(', ')}${tables.length > 5 ? ', ...' : ''})`);
}

/** SQLite parameters per statement stay far below the limit; one query per chunk of identities. */
const LOOKUP_CHUNK = 5000;
const SCAN_PAGE = 2000;
/** Rows per transaction when importing: one fsync per batch, not per row. */
const IMPORT_BATCH = 5000;

/**
 * The embedded metadata DB: one row per identity (indexed status, analysis, created) holding the
 * record as JSON. Rollback-journal mode (not WAL) so that a read-only open creates no side files:
 * a dry run leaves the workspace byte-identical (a writer leaves an empty metadata.sqlite-journal).
 * Claims run in BEGIN IMMEDIATE transactions, which serialise writers across processes.
 */
export class SqliteDatabase implements Database {
  readonly queue: SqliteQueue;
  private readonly index: SqliteRecordIndex;

  private constructor(
    readonly url: string,
    private readonly db: BetterSqlite3.Database,
    writable: boolean,
  ) {
    this.queue = new SqliteQueue(db);
    // Indexed queries (sqlite-record-index.ts): built or caught up when opened for writing, only read otherwise.
    this.index = writable ? SqliteRecordIndex.attach(db) : SqliteRecordIndex.readOnly(db);
  }

  /**
   * A file with no tables (new, or 0 bytes, which SQLite itself reads as an empty database) is an
   * empty metadata DB: read-only it reads as no records, like a missing file; opened for writing it
   * gets caas's tables. A file that is not SQLite, or an SQLite DB with other tables, is refused
   * (DatabaseUrlError) before anything is written to it.
   */
  static open(url: string, options: DbOptions): SqliteDatabase {
    const given = url.replace(/^sqlite:(\/\/)?/, '');
    const file = path.resolve(given === '' ? path.join(options.home, 'metadata.sqlite') : given);
    if (options.readOnly) {
      const size = statSync(file, { throwIfNoEntry: false })?.size;
      let db: BetterSqlite3.Database | undefined;
      if (size !== undefined && size > 0) {
        db = new BetterSqlite3(file, { readonly: true, fileMustExist: true, timeout: 30_000 });
        if (ownTables(db, file) === 'caas') return new SqliteDatabase(`sqlite:${file}`, db, false);
        db.close();
      }
      if (options.mustExist) {
        throw new DatabaseUrlError(
          size === undefined
            ? `no metadata DB at ${file}: point --db (or CAAS_DB) at the database the runners use`
            : `${file} is an empty database (${size === 0 ? '0 bytes' : 'no tables'}), not the one the runners use: point --db (or CAAS_DB) at that`,
        );
      }
      const empty = new BetterSqlite3(':memory:');
      empty.exec(SCHEMA);
      return new SqliteDatabase(`sqlite:${file}`, empty, false);
    }
    mkdirSync(path.dirname(file), { recursive: true });
    const db = new BetterSqlite3(file, { timeout: 30_000 });
    ownTables(db, file);
    // TRUNCATE, not DELETE: a commit empties the journal instead of removing it, so each of the few
    // transactions of a job does not create and delete a file (on ext4 a new inode costs more the
    // more were freed just before; 7 ms of a no-op job at --concurrency 4, issue 17). Equally safe:
    // an empty journal is not a hot one, and under synchronous = FULL the truncation is synced.
    db.pragma('journal_mode = TRUNCATE');
    db.pragma('synchronous = FULL');
    db.exec(SCHEMA);
    return new SqliteDatabase(`sqlite:${file}`, db, true);
  }

  async lookup(ids: readonly string[]): Promise<Map<string, MetadataRecord>> {
    const found = new Map<string, MetadataRecord>();
    const statement = this.db.prepare<[string], { id: string; doc: string }>(
      'SELECT id, doc FROM records WHERE id IN (SELECT value FROM json_each(?))',
    );
    for (let i = 0; i < ids.length; i += LOOKUP_CHUNK) {
      for (const row of statement.iterate(JSON.stringify(ids.slice(i, i + LOOKUP_CHUNK)))) {
        found.set(row.id, JSON.parse(row.doc) as MetadataRecord);
      }
    }
    return found;
  }

  private read(id: string): MetadataRecord | undefined {
    const row = this.db.prepare<[string], { doc: string }>('SELECT doc FROM records WHERE id = ?').get(id);
    return row ? (JSON.parse(row.doc) as MetadataRecord) : undefined;
  }

  /** Writes a record and its index entries; `previous` is the record as read in the same transaction (none: an insert). */
  private write(record: MetadataRecord, previous: MetadataRecord | undefined): void {
    const insert = previous === undefined;
    const wasPending = !insert && this.index.pendingBeforeWrite(record._id);
    const sql = insert
      ? 'INSERT INTO records (id, status, analysis, created, doc) VALUES (@id, @status, @analysis, @created, @doc)'
      : 'UPDATE records SET status = @status, analysis = @analysis, created = @created, doc = @doc WHERE id = @id';
    this.db.prepare(sql).run({
      id: record._id,
      status: record.status,
      analysis: record.analysis.name,
      created: record.created,
      doc: JSON.stringify(record),
    });
    this.index.reindex(record._id, previous, record, wasPending);
  }

  async claim(id: string, request: ClaimRequest): Promise<ClaimOutcome> {
    const now = request.now ?? new Date();
    const run = this.db.transaction((): ClaimOutcome => {
      const existing = this.read(id);
      const verdict = claimVerdict(existing, now, request.force, request.plannedAt);
      if (existing && verdict !== 'insert' && verdict !== 'takeover') return { won: false, record: existing, state: verdict };
      const record = claimedRecord(existing, request, now);
      this.write(record, existing);
      return { won: true, record, attempt: record.attempts.length };
    });
    return run.immediate();
  }

  async renew(id: string, owner: Owner, leaseMs: number): Promise<boolean> {
    return this.db
      .transaction(() => {
        const record = this.read(id);
        if (record?.status !== 'running' || !sameOwner(record.lease?.owner, owner)) return false;
        this.write({ ...record, lease: { owner, expires: new Date(Date.now() + leaseMs).toISOString() } }, record);
        return true;
      })
      .immediate();
  }

  update(id: string, owner: Owner, change: (record: MetadataRecord) => MetadataRecord): Promise<boolean> {
    return this.rewrite(id, owner, (record) => ({ ...change(record), lease: record.lease }));
  }

  finish(id: string, owner: Owner, update: (record: MetadataRecord) => MetadataRecord): Promise<boolean> {
    return this.rewrite(id, owner, (record) => ({ ...update(record), lease: null }));
  }

  /** Rewrites a record its owner holds, in one transaction; false when it does not hold it (any more). */
  private async rewrite(id: string, owner: Owner, change: (record: MetadataRecord) => MetadataRecord): Promise<boolean> {
    return this.db
      .transaction(() => {
        const record = this.read(id);
        if (record?.status !== 'running' || !sameOwner(record.lease?.owner, owner)) return false;
        this.write({ ...change(record), updated: new Date().toISOString() }, record);
        return true;
      })
      .immediate();
  }

  async get(id: string): Promise<MetadataRecord | undefined> {
    return this.read(id);
  }

  async importRecords(records: AsyncIterable<MetadataRecord> | Iterable<MetadataRecord>): Promise<number> {
    const insert = this.db.prepare(
      'INSERT INTO records (id, status, analysis, created, doc) VALUES (@id, @status, @analysis, @created, @doc) ON CONFLICT(id) DO NOTHING',
    );
    const flush = this.db.transaction((rows: MetadataRecord[]) => {
      let inserted = 0;
      for (const record of rows) {
        const changes = insert.run({
          id: record._id,
          status: record.status,
          analysis: record.analysis.name,
          created: record.created,
          doc: JSON.stringify(record),
        }).changes;
        if (changes > 0) this.index.reindex(record._id, undefined, record);
        inserted += changes;
      }
      return inserted;
    });
    let inserted = 0;
    let batch: MetadataRecord[] = [];
    for await (const record of records) {
      batch.push(record);
      if (batch.length >= IMPORT_BATCH) {
        inserted += flush(batch);
        batch = [];
      }
    }
    return inserted + flush(batch);
  }

  async idsWithPrefix(prefix: string, limit: number): Promise<string[]> {
    const rows = this.db
      .prepare<[string, string, number], { id: string }>('SELECT id FROM records WHERE id >= ? AND id < ? ORDER BY id LIMIT ?')
      .all(prefix, `${prefix}\uffff`, limit);
    return rows.map((r) => r.id);
  }

  find(filter: Filter, options: QueryOptions = {}): AsyncIterable<MetadataRecord> {
    return this.index.find(filter, options);
  }

  async takeSlot(request: SlotRequest): Promise<GroupSlot | undefined> {
    const now = request.now ?? new Date();
    // One IMMEDIATE transaction: read the group's slots and take one, with no other writer in between.
    return this.db
      .transaction((): GroupSlot | undefined => {
        const held = new Map(this.slotsOf(request.analysis, request.group).map((slot) => [slot.n, slot]));
        const orphaned = orphanedSlotOf(held.values(), request, now);
        if (orphaned) {
          const adopted = adoptedSlot(orphaned, request, now);
          this.db.prepare('UPDATE slots SET doc = ? WHERE id = ?').run(JSON.stringify(adopted), adopted._id);
          return adopted;
        }
        for (const n of slotNumbers(request, held.size)) {
          const seen = held.get(n);
          if (seen && slotLive(seen, now)) continue;
          const slot = takenSlot(request, n, now);
          this.db
            .prepare('INSERT INTO slots (id, analysis, grp, doc) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET doc = excluded.doc')
            .run(slot._id, slot.analysis, slot.group, JSON.stringify(slot));
          return slot;
        }
        return undefined;
      })
      .immediate();
  }

  async renewSlot(id: string, owner: Owner, leaseMs: number, machineUntil?: Date): Promise<boolean> {
    return this.db
      .transaction(() => {
        const slot = this.slot(id);
        if (!slot || !sameOwner(slot.owner, owner)) return false;
        const renewed = {
          ...slot,
          expires: new Date(Date.now() + leaseMs).toISOString(),
          ...(machineUntil ? { machine_until: machineUntil.toISOString() } : {}),
        };
        this.db.prepare('UPDATE slots SET doc = ? WHERE id = ?').run(JSON.stringify(renewed), id);
        return true;
      })
      .immediate();
  }

  async releaseSlot(id: string, owner: Owner): Promise<boolean> {
    return this.db
      .transaction(() => {
        const slot = this.slot(id);
        if (!slot || !sameOwner(slot.owner, owner)) return false;
        this.db.prepare('DELETE FROM slots WHERE id = ?').run(id);
        return true;
      })
      .immediate();
  }

  async liveSlots(analysis: string, group: string, now = new Date()): Promise<GroupSlot[]> {
    return this.slotsOf(analysis, group)
      .filter((slot) => slotLive(slot, now))
      .sort((a, b) => a.n - b.n);
  }

  async groupSpend(analysis: string, group: string, since?: Date): Promise<GroupSpend> {
    // Summed in SQL over the analysis' rows (indexed), so a budget check parses no record in JavaScript.
    const row = this.db
      .prepare<[string, string, string | null, string | null], { usd: number; attempts: number }>(
        `SELECT COALESCE(SUM(json_extract(a.value, '$.cost.usd')), 0) AS usd, COUNT(*) AS attempts
         FROM records r, json_each(r.doc, '$.attempts') a
         WHERE r.analysis = ? AND json_extract(r.doc, '$.job.group') = ?
           AND json_type(a.value, '$.cost') = 'object'
           AND (? IS NULL OR json_extract(a.value, '$.ended') >= ?)`,
      )
      .get(analysis, group, since?.toISOString() ?? null, since?.toISOString() ?? null);
    return { usd: row?.usd ?? 0, attempts: row?.attempts ?? 0 };
  }

  private slot(id: string): GroupSlot | undefined {
    const row = this.db.prepare<[string], { doc: string }>('SELECT doc FROM slots WHERE id = ?').get(id);
    return row ? (JSON.parse(row.doc) as GroupSlot) : undefined;
  }

  private slotsOf(analysis: string, group: string): GroupSlot[] {
    // A database made by an older caas, opened read-only, has no slots table yet: no slot is held.
    if (!this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'slots'").get()) return [];
    return this.db
      .prepare<[string, string], { doc: string }>('SELECT doc FROM slots WHERE analysis = ? AND grp = ?')
      .all(analysis, group)
      .map((row) => JSON.parse(row.doc) as GroupSlot);
  }

  async importAssets(assets: AsyncIterable<Record<string, unknown>> | Iterable<Record<string, unknown>>): Promise<number> {
    const upsert = this.db.prepare(
      'INSERT INTO data_assets (id, name, created, doc) VALUES (@id, @name, @created, @doc) ON CONFLICT(id) DO UPDATE SET name = excluded.name, created = excluded.created, doc = excluded.doc',
    );
    const flush = this.db.transaction((rows: Record<string, unknown>[]) => {
      for (const asset of rows) {
        upsert.run({
          id: String(asset._id),
          name: String(asset.name),
          created: asset.created == null ? null : String(asset.created),
          doc: JSON.stringify(asset),
        });
      }
    });
    let count = 0;
    let batch: Record<string, unknown>[] = [];
    for await (const asset of assets) {
      batch.push(asset);
      if (batch.length >= IMPORT_BATCH) {
        flush(batch);
        count += batch.length;
        batch = [];
      }
    }
    flush(batch);
    return count + batch.length;
  }

  findAssets(filter: Filter, options: QueryOptions = {}): AsyncIterable<Record<string, unknown>> {
    // Catalog order is _id order, so the same query over the same catalog always streams the same way.
    return this.scan<Record<string, unknown>>('data_assets', 'id', filter, options);
  }

  async getAssets(ids: readonly string[]): Promise<Map<string, Record<string, unknown>>> {
    const found = new Map<string, Record<string, unknown>>();
    const statement = this.db.prepare<[string], { id: string; doc: string }>(
      'SELECT id, doc FROM data_assets WHERE id IN (SELECT value FROM json_each(?))',
    );
    for (let i = 0; i < ids.length; i += LOOKUP_CHUNK) {
      for (const row of statement.iterate(JSON.stringify(ids.slice(i, i + LOOKUP_CHUNK)))) {
        found.set(row.id, JSON.parse(row.doc) as Record<string, unknown>);
      }
    }
    return found;
  }

  /**
   * Streams documents through a mingo filter, reading pages by key so no statement stays open while
   * the consumer works (better-sqlite3 allows nothing else on a connection mid-iteration). Sorting
   * needs the matches in memory; filtering alone does not.
   */
  private async *scan<T>(table: 'records' | 'data_assets', key: 'rowid' | 'id', filter: Filter, options: QueryOptions): AsyncIterable<T> {
    const query = compileFilter(filter);
    const page = this.db.prepare<[string | number], { k: string | number; doc: string }>(
      `SELECT ${key} AS k, doc FROM ${table} WHERE ${key} > ? ORDER BY ${key} LIMIT ${SCAN_PAGE}`,
    );
    const matching = function* (this: SqliteDatabase) {
      let after: string | number = key === 'rowid' ? -1 : '';
      for (;;) {
        const rows = page.all(after);
        for (const row of rows) {
          const doc = JSON.parse(row.doc) as Record<string, unknown>;
          if (query.test(doc)) yield doc;
        }
        if (rows.length < SCAN_PAGE) return;
        after = (rows[rows.length - 1] as { k: string | number }).k;
      }
    }.bind(this);
    if (options.limit === 0) return;
    if (options.sort && Object.keys(options.sort).length > 0) {
      let cursor = mingoFind([...matching()], {}).sort(options.sort);
      if (options.limit !== undefined) cursor = cursor.limit(options.limit);
      for (const doc of cursor) yield doc as T;
      return;
    }
    let emitted = 0;
    for (const doc of matching()) {
      yield doc as T;
      if (options.limit !== undefined && ++emitted >= options.limit) return;
    }
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}
