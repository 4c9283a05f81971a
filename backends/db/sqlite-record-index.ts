import type BetterSqlite3 from 'better-sqlite3';
import { find as mingoFind, type Query } from 'mingo';
import { compileFilter, type Filter } from '../../models/filter.ts';
import type { MetadataRecord } from '../../models/record.ts';
import { describePlan, type FilterPlan, planFilter, planPaths } from './filter-plan.ts';
import type { QueryExplanation, QueryOptions } from './index.ts';
import { type IndexEntry, indexEntries, Kind, SORTABLE_PATHS } from './record-index.ts';

/**
 * Bumped whenever indexEntries changes what it records: an index built by other rules is rebuilt
 * at the next open for writing, and not trusted by a read-only open meanwhile.
 */
export const RECORD_INDEX_VERSION = '1';

/**
 * The entry table: one row per (path, kind, value, record), so equality, `$in`, ranges and
 * prefixes on any indexed path are one index range each, and a record's values at a path are read
 * in sort order without reading the record. Records are named by rowid (8 bytes, not the 64-hex
 * identity). `record_index_pending` lists records written since their entries were: triggers add
 * every insert and rewrite, whoever makes it (an older caas, a hand edit); this store removes them
 * in the same transaction as it writes their entries. A query treats pending records as candidates,
 * so it never misses a record the index does not know yet.
 */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS record_index_paths (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS record_entries (
  pid INTEGER NOT NULL,
  kind INTEGER NOT NULL,
  value NOT NULL,
  rid INTEGER NOT NULL,
  PRIMARY KEY (pid, kind, value, rid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS record_index_pending (rid INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS record_index_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS record_index_on_insert AFTER INSERT ON records
  BEGIN INSERT OR IGNORE INTO record_index_pending (rid) VALUES (new.rowid); END;
CREATE TRIGGER IF NOT EXISTS record_index_on_update AFTER UPDATE OF doc ON records
  BEGIN INSERT OR IGNORE INTO record_index_pending (rid) VALUES (new.rowid); END;
`;

/** Records indexed per transaction while catching up at open: a long backfill never holds the write lock for long. */
const BACKFILL_BATCH = 20_000;
/** How long one backfill batch may hold the write lock, roughly: the batch size follows it. */
const BACKFILL_LOCK_MS = 1000;
const BACKFILL_CACHE_KIB = 512 * 1024;
/** Records read per statement when fetching candidates or scanning. */
const FETCH_CHUNK = 500;
/** Fewer candidates than this are read and sorted in memory; more are read in the sort key's index order. */
const SORT_WALK_FROM = 2000;
const WALK_PAGE_MAX = 8192;

type Row = { rid: number; doc: string };

/**
 * The SQLite store's index over its records (docs/provenance.md#indexed-queries), and the queries
 * that use it. It lives beside the `records` table and shares the store's connection and
 * transactions: SqliteDatabase calls `reindex` inside each write's transaction.
 */
export class SqliteRecordIndex {
  private readonly pathIds = new Map<string, number>();

  private constructor(
    private readonly db: BetterSqlite3.Database,
    /** False when the index cannot be trusted (a read-only open of a database whose index is missing or of other rules). */
    readonly usable: boolean,
  ) {}

  /** Creates the index (opened for writing) and indexes every record it does not know yet; idempotent. */
  static attach(db: BetterSqlite3.Database): SqliteRecordIndex {
    db.exec(SCHEMA);
    const index = new SqliteRecordIndex(db, true);
    db.transaction(() => {
      const version = db.prepare<[], string>("SELECT value FROM record_index_state WHERE key = 'version'").pluck().get();
      if (version === RECORD_INDEX_VERSION) return;
      // First open by this version: every record is pending until its entries are written by these rules.
      db.exec('DELETE FROM record_entries; INSERT OR IGNORE INTO record_index_pending (rid) SELECT rowid FROM records;');
      db.prepare(
        "INSERT INTO record_index_state (key, value) VALUES ('version', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
      ).run(RECORD_INDEX_VERSION);
    }).immediate();
    index.catchUp();
    return index;
  }

  /** The index of a database opened read-only, used only when it was built by these rules. */
  static readOnly(db: BetterSqlite3.Database): SqliteRecordIndex {
    const tables = db
      .prepare<[], string>(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('record_entries', 'record_index_pending', 'record_index_state', 'record_index_paths')",
      )
      .pluck()
      .all();
    const version =
      tables.length === 4 ? db.prepare<[], string>("SELECT value FROM record_index_state WHERE key = 'version'").pluck().get() : undefined;
    return new SqliteRecordIndex(db, version === RECORD_INDEX_VERSION);
  }

  /**
   * Writes the entries of every pending record, a batch per transaction, each batch's entries in
   * key order. A large backfill (a whole history at the first open) writes all over the entry
   * table, so it runs with a page cache of BACKFILL_CACHE_KIB instead of SQLite's 2 MB.
   */
  private catchUp(): void {
    const pending = this.db.prepare<[number], number>('SELECT rid FROM record_index_pending ORDER BY rid LIMIT ?').pluck();
    const doc = this.db.prepare<[number], string>('SELECT doc FROM records WHERE rowid = ?').pluck();
    const insert = this.db.prepare('INSERT OR IGNORE INTO record_entries (pid, kind, value, rid) VALUES (?, ?, ?, ?)');
    const batch = this.db.transaction((rids: number[]) => {
      const rows: [number, number, string | number, number][] = [];
      for (const rid of rids) {
        const text = doc.get(rid);
        if (text !== undefined)
          for (const e of indexEntries(JSON.parse(text) as MetadataRecord)) rows.push([this.pathId(e.path), e.kind, e.value, rid]);
        this.done(rid);
      }
      rows.sort((a, b) => a[0] - b[0] || a[1] - b[1] || (a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : 0) || a[3] - b[3]);
      for (const row of rows) insert.run(...row);
    });
    if (!this.db.prepare('SELECT 1 FROM record_index_pending LIMIT 1').get()) return;
    const cache = this.db.pragma('cache_size', { simple: true });
    this.db.pragma(`cache_size = -${BACKFILL_CACHE_KIB}`);
    try {
      // Each batch holds the write lock: it is kept near a second, well inside the busy timeout
      // that other runners' claims and lease renewals wait for, whatever the disk's speed.
      let size = BACKFILL_BATCH / 10;
      for (;;) {
        const rids = pending.all(size);
        if (rids.length === 0) return;
        const started = performance.now();
        batch.immediate(rids);
        const tookMs = performance.now() - started;
        if (tookMs > BACKFILL_LOCK_MS) size = Math.max(100, Math.floor(size / 2));
        else if (tookMs < BACKFILL_LOCK_MS / 4) size = Math.min(BACKFILL_BATCH, size * 2);
      }
    } finally {
      this.db.pragma(`cache_size = ${cache}`);
    }
  }

  /**
   * Brings a record's entries up to date after it was written: call inside the write's
   * transaction, with the record as it was before (undefined for an insert). Entries of the
   * previous version that the new one lacks are deleted; a stale entry left by another writer only
   * makes its record a candidate more, which the check then drops.
   */
  reindex(id: string, previous: MetadataRecord | undefined, record: MetadataRecord, wasPending = false): void {
    const rid = this.db.prepare<[string], number>('SELECT rowid FROM records WHERE id = ?').pluck().get(id);
    if (rid === undefined) return;
    this.writeEntries(rid, previous ? indexEntries(previous) : [], indexEntries(record), wasPending);
    this.done(rid);
  }

  /**
   * Whether a record was pending before this write: another writer (an older caas, a hand edit)
   * changed it without its entries, so the entries of its previous version may not be on file.
   * Asked before the write, whose own trigger marks it pending too.
   */
  pendingBeforeWrite(id: string): boolean {
    return (
      this.db
        .prepare<[string], number>('SELECT 1 FROM record_index_pending WHERE rid = (SELECT rowid FROM records WHERE id = ?)')
        .pluck()
        .get(id) !== undefined
    );
  }

  private done(rid: number): void {
    this.db.prepare('DELETE FROM record_index_pending WHERE rid = ?').run(rid);
  }

  /** `insertAll`: the entries of `before` may not be on file (a pending record): every entry of `after` is written. */
  private writeEntries(rid: number, before: IndexEntry[], after: IndexEntry[], insertAll = false): void {
    const key = (e: IndexEntry) => `${e.path}\u0000${e.kind}\u0000${typeof e.value}\u0000${e.value}`;
    const kept = new Set(after.map(key));
    const old = new Set(insertAll ? [] : before.map(key));
    const remove = this.db.prepare('DELETE FROM record_entries WHERE pid = ? AND kind = ? AND value = ? AND rid = ?');
    const insert = this.db.prepare('INSERT OR IGNORE INTO record_entries (pid, kind, value, rid) VALUES (?, ?, ?, ?)');
    for (const entry of before) if (!kept.has(key(entry))) remove.run(this.pathId(entry.path), entry.kind, entry.value, rid);
    for (const entry of after) if (!old.has(key(entry))) insert.run(this.pathId(entry.path), entry.kind, entry.value, rid);
  }

  private pathId(path: string): number {
    const known = this.pathIds.get(path) ?? this.lookupPath(path);
    if (known !== undefined) return known;
    const id = Number(this.db.prepare('INSERT INTO record_index_paths (path) VALUES (?)').run(path).lastInsertRowid);
    this.pathIds.set(path, id);
    return id;
  }

  /** A path's id, or undefined when no record ever had a value there. */
  private lookupPath(path: string): number | undefined {
    const id = this.db.prepare<[string], number>('SELECT id FROM record_index_paths WHERE path = ?').pluck().get(path);
    if (id !== undefined) this.pathIds.set(path, id);
    return id;
  }

  /**
   * The records matching a filter, in store order (rowid) or the sort's. The index names the
   * candidates, mingo checks each against the whole filter; with a sort and a limit only the top
   * `limit` are kept, read in the sort key's index order or held in a buffer of about twice that.
   */
  async *find(filter: Filter, options: QueryOptions = {}): AsyncIterable<MetadataRecord> {
    const query = compileFilter(filter);
    const plan = this.usable ? planFilter(filter) : ({ op: 'all' } as const);
    const explanation: QueryExplanation = {
      store: 'sqlite',
      indexes: planPaths(plan).map((p) => `record_entries(${p})`),
      plan: plan.op === 'all' ? 'full scan of records (no indexed clause in the filter)' : `index: ${describePlan(plan)}`,
      documentsRead: 0,
      returned: 0,
    };
    try {
      if (options.limit === 0) return;
      const candidates = plan.op === 'all' ? undefined : this.candidates(plan);
      if (candidates) explanation.candidates = candidates.length;
      const read = (docs: Iterable<Record<string, unknown>>) => this.matching(docs, query, explanation);
      const sortKeys = Object.keys(options.sort ?? {});
      let out: Iterable<Record<string, unknown>>;
      if (sortKeys.length === 0) out = read(this.documents(candidates));
      else if (options.limit !== undefined && this.walkable(sortKeys, candidates)) {
        const key = sortKeys[0]!;
        explanation.sort = `read in the index order of ${key}`;
        explanation.indexes.push(`record_entries(${key})`);
        out = read(this.inSortOrder(key, options.sort![key]!, candidates));
      } else {
        explanation.sort = options.limit === undefined ? 'every match sorted in memory' : `top ${options.limit} kept in memory`;
        out = topK(read(this.documents(candidates)), options.sort!, options.limit);
      }
      for (const doc of out) {
        yield doc as MetadataRecord;
        explanation.returned++;
        if (options.limit !== undefined && explanation.returned >= options.limit) return;
      }
    } finally {
      options.explain?.(explanation);
    }
  }

  private *matching(docs: Iterable<Record<string, unknown>>, query: Query, explanation: QueryExplanation) {
    for (const doc of docs) {
      explanation.documentsRead++;
      if (query.test(doc)) yield doc;
    }
  }

  /** A single sort key the records hold once, with every candidate indexed (none pending), and many candidates. */
  private walkable(keys: string[], candidates: number[] | undefined): boolean {
    if (!this.usable || keys.length !== 1 || !SORTABLE_PATHS.has(keys[0]!)) return false;
    if (this.db.prepare('SELECT 1 FROM record_index_pending LIMIT 1').get()) return false;
    return candidates === undefined || candidates.length >= SORT_WALK_FROM;
  }

  /** The rowids the plan selects, ascending, with every pending record. */
  private candidates(plan: FilterPlan): number[] {
    const params: (string | number)[] = [];
    const sql = this.planSql(plan, params);
    return this.db
      .prepare<(string | number)[], number>(`SELECT rid FROM (${sql}) UNION SELECT rid FROM record_index_pending ORDER BY 1`)
      .pluck()
      .all(...params);
  }

  private planSql(plan: FilterPlan, params: (string | number)[]): string {
    if (plan.op === 'all' || plan.op === 'and' || plan.op === 'or') return this.compoundSql(plan, params);
    const leaf = this.leafSql(plan, params);
    // Records where a shorter path holds an array in an array: mingo reaches into it by any longer path.
    const prefixes = plan.path
      .split('.')
      .slice(0, -1)
      .map((_, i, parts) => this.lookupPath(parts.slice(0, i + 1).join('.')))
      .filter((pid) => pid !== undefined);
    if (prefixes.length === 0) return leaf;
    params.push(Kind.nestedArray, ...prefixes);
    return `${leaf} UNION SELECT rid FROM record_entries WHERE kind = ? AND pid IN (${prefixes.map(() => '?').join(', ')})`;
  }

  private compoundSql(plan: Extract<FilterPlan, { op: 'all' | 'and' | 'or' }>, params: (string | number)[]): string {
    switch (plan.op) {
      case 'all':
        return 'SELECT rowid AS rid FROM records';
      case 'and':
      case 'or':
        return plan.parts
          .map((part) => `SELECT rid FROM (${this.planSql(part, params)})`)
          .join(plan.op === 'and' ? ' INTERSECT ' : ' UNION ');
    }
  }

  private leafSql(plan: Extract<FilterPlan, { op: 'equals' | 'range' | 'exists' }>, params: (string | number)[]): string {
    switch (plan.op) {
      case 'equals': {
        if (plan.values.length === 0) return 'SELECT rid FROM record_entries WHERE 0';
        const pid = this.lookupPath(plan.path) ?? -1;
        return plan.values
          .map((v) => {
            params.push(pid, v.kind, v.value);
            return 'SELECT rid FROM record_entries WHERE pid = ? AND kind = ? AND value = ?';
          })
          .join(' UNION ');
      }
      case 'range': {
        params.push(this.lookupPath(plan.path) ?? -1, plan.kind);
        let sql = 'SELECT rid FROM record_entries WHERE pid = ? AND kind = ?';
        if (plan.lower) {
          sql += ` AND value ${plan.lower.inclusive ? '>=' : '>'} ?`;
          params.push(plan.lower.value);
        }
        if (plan.upper) {
          sql += ` AND value ${plan.upper.inclusive ? '<=' : '<'} ?`;
          params.push(plan.upper.value);
        }
        return sql;
      }
      case 'exists': {
        params.push(this.lookupPath(plan.path) ?? -1);
        const parent = plan.path.includes('.') ? this.lookupPath(plan.path.slice(0, plan.path.lastIndexOf('.'))) : undefined;
        if (parent === undefined) return 'SELECT rid FROM record_entries WHERE pid = ?';
        // mingo also says a path exists when an array on the way is empty or holds objects without it ({"a.b.c"} in {"a":[{"b":[]}]}):
        // its parent is then present, as an object or array.
        params.push(parent, Kind.present);
        return 'SELECT rid FROM record_entries WHERE pid = ? UNION SELECT rid FROM record_entries WHERE pid = ? AND kind = ?';
      }
    }
  }

  /** The candidates' documents in rowid order, or every record's, a chunk per statement (none stays open between yields). */
  private *documents(candidates: number[] | undefined): Iterable<Record<string, unknown>> {
    if (candidates) {
      for (let i = 0; i < candidates.length; i += FETCH_CHUNK) yield* this.fetch(candidates.slice(i, i + FETCH_CHUNK));
      return;
    }
    const page = this.db.prepare<[number], Row>(
      `SELECT rowid AS rid, doc FROM records WHERE rowid > ? ORDER BY rowid LIMIT ${FETCH_CHUNK}`,
    );
    let after = -1;
    for (;;) {
      const rows = page.all(after);
      for (const row of rows) yield JSON.parse(row.doc) as Record<string, unknown>;
      if (rows.length < FETCH_CHUNK) return;
      after = rows[rows.length - 1]!.rid;
    }
  }

  /** These records' documents, in the order given. */
  private fetch(rids: number[]): Record<string, unknown>[] {
    const rows = this.db
      .prepare<[string], Row>('SELECT rowid AS rid, doc FROM records WHERE rowid IN (SELECT value FROM json_each(?))')
      .all(JSON.stringify(rids));
    const byRid = new Map(rows.map((row) => [row.rid, row.doc]));
    return rids.flatMap((rid) => {
      const doc = byRid.get(rid);
      return doc === undefined ? [] : [JSON.parse(doc) as Record<string, unknown>];
    });
  }

  /**
   * Documents in the order of their value at `path` (MongoDB's: null, numbers, strings; equal
   * values in rowid order, as a stable sort of the store order gives), read a page of entries at
   * a time. A page ends on a whole group of equal values, so ties are ordered within the page.
   */
  private *inSortOrder(path: string, direction: 1 | -1, candidates: number[] | undefined): Iterable<Record<string, unknown>> {
    const pid = this.lookupPath(path);
    if (pid === undefined) return;
    const wanted = candidates ? new Set(candidates) : undefined;
    const order = direction === 1 ? 'ASC' : 'DESC';
    const beyond = direction === 1 ? '>' : '<';
    type Entry = { kind: number; value: string | number; rid: number };
    const first = this.db.prepare<[number, number], Entry>(
      `SELECT kind, value, rid FROM record_entries WHERE pid = ? AND kind <= ${Kind.string} ORDER BY kind ${order}, value ${order} LIMIT ?`,
    );
    const next = this.db.prepare<[number, number, string | number, number], Entry>(
      `SELECT kind, value, rid FROM record_entries WHERE pid = ? AND kind <= ${Kind.string} AND (kind, value) ${beyond} (?, ?) ORDER BY kind ${order}, value ${order} LIMIT ?`,
    );
    const group = this.db
      .prepare<[number, number, string | number], number>(
        'SELECT rid FROM record_entries WHERE pid = ? AND kind = ? AND value = ? ORDER BY rid',
      )
      .pluck();
    const emitted = new Set<number>();
    let size = 256;
    let last: Entry | undefined;
    for (;;) {
      const rows = last ? next.all(pid, last.kind, last.value, size) : first.all(pid, size);
      if (rows.length === 0) return;
      const ordered: number[] = [];
      let i = 0;
      while (i < rows.length) {
        const head = rows[i]!;
        let j = i;
        while (j < rows.length && rows[j]!.kind === head.kind && rows[j]!.value === head.value) j++;
        // The last group may go on past the page: read it whole.
        const rids =
          j === rows.length
            ? group.all(pid, head.kind, head.value)
            : rows
                .slice(i, j)
                .map((r) => r.rid)
                .sort((a, b) => a - b);
        for (const rid of rids) if ((!wanted || wanted.has(rid)) && !emitted.has(rid)) ordered.push(rid);
        i = j;
      }
      for (const rid of ordered) emitted.add(rid);
      for (let k = 0; k < ordered.length; k += FETCH_CHUNK) yield* this.fetch(ordered.slice(k, k + FETCH_CHUNK));
      last = rows[rows.length - 1];
      size = Math.min(size * 2, WALK_PAGE_MAX);
    }
  }
}

/**
 * The first `limit` documents in sort order, holding at most about twice that many: mingo sorts
 * the buffer whenever it fills and keeps the top. Its sort is stable and the buffer keeps the
 * earlier documents first, so ties come out in store order, as sorting every match would give.
 */
function* topK(docs: Iterable<Record<string, unknown>>, sort: Record<string, 1 | -1>, limit: number | undefined) {
  const cap = limit === undefined ? Number.POSITIVE_INFINITY : Math.max(2 * limit, 1000);
  let buffer: Record<string, unknown>[] = [];
  const trim = () => {
    let cursor = mingoFind(buffer, {}).sort(sort);
    if (limit !== undefined) cursor = cursor.limit(limit);
    buffer = cursor.all() as Record<string, unknown>[];
  };
  for (const doc of docs) {
    buffer.push(doc);
    if (buffer.length >= cap) trim();
  }
  trim();
  yield* buffer;
}
