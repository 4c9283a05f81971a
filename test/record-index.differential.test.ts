import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { find as mingoFind } from 'mingo';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Database, openDatabase, type QueryExplanation } from '../backends/db/index.ts';
import { indexEntries } from '../backends/db/record-index.ts';
import { concluded, owner, recordDraft } from '../fixtures/records.ts';
import type { Filter } from '../models/filter.ts';
import { MetadataRecord } from '../models/record.ts';

/**
 * The indexed `find` of the SQLite store gives exactly what the plain scan gave before it (every
 * record through mingo, in store order, sorted by mingo): the same records in the same order, on
 * random filters over random records. The seed is random per run and printed with any failure;
 * CAAS_INDEX_SEED=<seed> replays a run.
 */
const SEED = Number(process.env.CAAS_INDEX_SEED ?? Math.floor(Math.random() * 2 ** 31));
const CASES = 1200;
const RECORDS = 400;

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const random = rng(SEED);
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
const chance = (p: number) => random() < p;
const some = <T>(items: readonly T[], max: number): T[] => Array.from({ length: Math.floor(random() * (max + 1)) }, () => pick(items));

const ANALYSES = [
  { name: 'unit-filter', version: '1.0.0' },
  { name: 'unit-filter', version: '1.1.0' },
  { name: 'spike-sort', version: '2.0.0' },
];
const COMMITS = ['3f2a9c1', '3f2b000', '3f2a9c9', 'abc1234', 'abd0000', 'ffff000'].map((p) => p.padEnd(40, '0'));
const URLS = ['https://github.com/example/a.git', 'https://github.com/example/b.git'];
const ASSETS = ['ecephys_1', 'ecephys_2', 'ecephys_10', 'behavior_1', 'ECEPHYS_1', 'ecephys_é'];
const TIMES = ['2024-01-01T00:00:00.000Z', '2024-06-01T12:00:00.000Z', '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.001Z'];
const NUMBERS = [0, 0.05, 0.1, 0.5, 1, 2, -1, 10];
const STRINGS = ['0.5', 'a', 'b', 'ab', '', 'z', 'é', '\u{1F600}'];
const PARAMETER_KEYS = ['cutoff', 'mode', 'flags', 'nested', 'channels'];
const OUTPUTS = ['s3://caas-results/lab', 's3://caas-results/other', 'file://results/lab'];

function scalar(): unknown {
  return pick([() => pick(NUMBERS), () => pick(STRINGS), () => chance(0.5), () => null])();
}

/** A parameter value: a scalar, an array of them (sometimes nested), or an object of them. */
function parameterValue(depth = 0): unknown {
  const roll = random();
  if (depth < 2 && roll < 0.15) return some([0, 1, 2], 3).map(() => (chance(0.2) ? [scalar()] : scalar()));
  if (depth < 2 && roll < 0.3) return Object.fromEntries(some(['a', 'b'], 2).map((k) => [k, parameterValue(depth + 1)]));
  return scalar();
}

function randomRecord(i: number): MetadataRecord {
  const inputs = some(ASSETS, 3).map((name, n) => ({
    asset_id: `asset-${name}`,
    name,
    location: `s3://aind-open-data/${name}`,
    ...(chance(0.5)
      ? { files: some(['a.json', 'b.nwb'], 2).map((f) => ({ url: `s3://aind-open-data/${name}/${f}`, etag: `e${n}`, size: n })) }
      : {}),
  }));
  const parameters = Object.fromEntries(some(PARAMETER_KEYS, 3).map((key) => [key, parameterValue()]));
  const draft = recordDraft({ seed: i, analysis: pick(ANALYSES), inputs, parameters, output: pick(OUTPUTS), created: pick(TIMES) });
  const status = pick(['claimed', 'running', 'succeeded', 'failed'] as const);
  return MetadataRecord.parse({
    ...draft,
    _id: createHash('sha256').update(`record ${i}`).digest('hex'),
    status,
    code: { url: pick(URLS), commit: pick(COMMITS) },
    end: status === 'succeeded' || status === 'failed' ? pick(TIMES) : null,
    exit_code: chance(0.5) ? pick([0, 1, 137]) : null,
  });
}

const PATHS = [
  'status',
  'analysis.name',
  'analysis.version',
  'created',
  'end',
  'code.commit',
  'code.url',
  'inputs.name',
  'inputs.asset_id',
  'inputs.location',
  'inputs.files.url',
  'preimage.output',
  ...PARAMETER_KEYS.map((k) => `parameters.${k}`),
  'parameters.nested.a',
  'parameters.flags.0',
  'parameters',
  'inputs.0.name',
  'exit_code',
  'compute.backend',
];

function valueFor(field: string): unknown {
  if (field === 'status') return pick(['claimed', 'running', 'succeeded', 'failed', 'x']);
  if (field.startsWith('analysis.')) return pick([...ANALYSES.map((a) => a.name), ...ANALYSES.map((a) => a.version)]);
  if (field === 'created' || field === 'end') return pick([...TIMES, '2024', null]);
  if (field === 'code.commit') return pick([...COMMITS, '3f2a']);
  if (field === 'code.url') return pick(URLS);
  if (field.startsWith('inputs.')) {
    const name = pick(ASSETS);
    return pick([name, `asset-${name}`, `s3://aind-open-data/${name}`, `s3://aind-open-data/${name}/a.json`]);
  }
  if (field === 'preimage.output') return pick(OUTPUTS);
  return scalar();
}

/** A condition on one field, in one of the forms people write (and some they should not). */
function condition(field: string): unknown {
  const v = () => valueFor(field);
  switch (Math.floor(random() * 14)) {
    case 0:
    case 1:
      return v();
    case 2:
      return { $eq: v() };
    case 3:
      return { $in: some([0], 3).map(v) };
    case 4:
      return { [pick(['$gt', '$gte', '$lt', '$lte'])]: v() };
    case 5:
      return { [pick(['$gt', '$gte'])]: v(), [pick(['$lt', '$lte'])]: v() };
    case 6:
      return { $exists: pick([true, false, 1, 0]) };
    case 7: {
      const text = String(v() ?? '') || 'a';
      return {
        $regex: pick([`^${text.slice(0, 4)}`, `^${text.slice(0, 3)}?`, `^${text.slice(0, 2)}.*`, text.slice(1, 4), `^a|^3`]),
        ...(chance(0.2) ? { $options: pick(['i', '', 'm']) } : {}),
      };
    }
    case 8:
      return { $ne: v() };
    case 9:
      return { $nin: some([0], 2).map(v) };
    case 10:
      return { $not: { [pick(['$gt', '$lt'])]: v() } };
    case 11:
      return { $size: pick([0, 1, 2]) };
    case 12:
      return { $type: pick(['string', 'number', 'array', 'null', 'bool', 'object']) };
    default:
      return { $gte: pick(NUMBERS), $lte: pick(NUMBERS) };
  }
}

function randomFilter(depth = 0): Filter {
  const filter: Filter = {};
  for (let n = 0; n < 1 + Math.floor(random() * 2); n++) {
    const roll = random();
    if (depth < 2 && roll < 0.12)
      filter.$and = some([0], 2)
        .map(() => randomFilter(depth + 1))
        .concat([randomFilter(depth + 1)]);
    else if (depth < 2 && roll < 0.24)
      filter.$or = some([0], 2)
        .map(() => randomFilter(depth + 1))
        .concat([randomFilter(depth + 1)]);
    else if (depth < 2 && roll < 0.28) filter.$nor = [randomFilter(depth + 1)];
    else {
      const field = pick(PATHS);
      filter[field] = condition(field);
    }
  }
  return filter;
}

function randomOptions(): { sort?: Record<string, 1 | -1>; limit?: number } {
  const sort = chance(0.45)
    ? { [pick(['created', 'end', 'status', 'analysis.name', 'parameters.cutoff', 'code.commit'])]: pick([1, -1] as const) }
    : undefined;
  const limit = chance(0.6) ? pick([1, 2, 5, 20]) : undefined;
  return { ...(sort ? { sort } : {}), ...(limit !== undefined ? { limit } : {}) };
}

const home = mkdtempSync(path.join(tmpdir(), 'caas-record-index-'));
const file = path.join(home, 'metadata.sqlite');
let db: Database;
let stored: Record<string, unknown>[];

/** The scan as it was: every record in store (rowid) order through mingo, sorted and cut by mingo. */
function scanned(filter: Filter, options: { sort?: Record<string, 1 | -1>; limit?: number }): string[] {
  let cursor = mingoFind(stored, filter);
  if (options.sort) cursor = cursor.sort(options.sort);
  if (options.limit !== undefined) cursor = cursor.limit(options.limit);
  return cursor.all().map((doc) => String(doc._id));
}

async function found(filter: Filter, options: { sort?: Record<string, 1 | -1>; limit?: number }, explain?: (e: QueryExplanation) => void) {
  const ids: string[] = [];
  for await (const record of db.find(filter, { ...options, explain })) ids.push(record._id);
  return ids;
}

beforeAll(async () => {
  db = await openDatabase(`sqlite:${file}`, { home });
  const records = Array.from({ length: RECORDS }, (_, i) => randomRecord(i));
  // Most records come in by import; the rest through the runner's write paths (claim, finish, takeover).
  await db.importRecords(records.slice(0, RECORDS - 40));
  for (const record of records.slice(RECORDS - 40)) {
    const who = owner(`run-${record._id.slice(0, 6)}`);
    await db.claim(record._id, { draft: { ...record, status: 'claimed', end: null }, owner: who, leaseMs: 60_000 });
    if (chance(0.7)) await db.finish(record._id, who, concluded(pick(['succeeded', 'failed'] as const)));
  }
  const raw = new BetterSqlite3(file, { readonly: true });
  stored = raw
    .prepare<[], string>('SELECT doc FROM records ORDER BY rowid')
    .pluck()
    .all()
    .map((doc) => JSON.parse(doc) as Record<string, unknown>);
  raw.close();
});

afterAll(async () => {
  await db.close();
  if (!process.env.KEEP) rmSync(home, { recursive: true, force: true });
});

describe(`indexed queries on SQLite answer as the scan did (seed ${SEED}; CAAS_INDEX_SEED=${SEED} replays)`, () => {
  it(`${CASES} random filters, sorts and limits over ${RECORDS} random records: the same records in the same order`, async () => {
    let indexed = 0;
    let walked = 0;
    for (let n = 0; n < CASES; n++) {
      const filter = randomFilter();
      const options = randomOptions();
      let explanation: QueryExplanation | undefined;
      const actual = await found(filter, options, (e) => {
        explanation = e;
      });
      const expected = scanned(filter, options);
      if (JSON.stringify(actual) !== JSON.stringify(expected)) {
        throw new Error(
          `seed ${SEED}, case ${n}: find(${JSON.stringify(filter)}, ${JSON.stringify(options)}) gave ${actual.length} records, the scan ${expected.length}\n` +
            `plan: ${explanation?.plan}; sort: ${explanation?.sort}\nreplay with CAAS_INDEX_SEED=${SEED}`,
        );
      }
      if (explanation?.indexes.some((i) => i.startsWith('record_entries'))) indexed++;
      if (explanation?.sort?.startsWith('read in the index order')) walked++;
    }
    // The cases must exercise the index, not only the fallback to a scan.
    expect(indexed).toBeGreaterThan(CASES / 3);
    expect(walked).toBeGreaterThan(0);
  });

  it('the entries on file are exactly those of each record after imports, claims and finishes', () => {
    const raw = new BetterSqlite3(file, { readonly: true });
    try {
      const rows = raw
        .prepare<[], { rid: number; path: string; kind: number; value: string | number }>(
          'SELECT e.rid, p.path, e.kind, e.value FROM record_entries e JOIN record_index_paths p ON p.id = e.pid',
        )
        .all();
      const onFile = new Map<number, Set<string>>();
      for (const row of rows) {
        const set = onFile.get(row.rid) ?? new Set();
        set.add(`${row.path} ${row.kind} ${JSON.stringify(row.value)}`);
        onFile.set(row.rid, set);
      }
      const docs = raw.prepare<[], { rid: number; doc: string }>('SELECT rowid AS rid, doc FROM records').all();
      for (const { rid, doc } of docs) {
        const expected = new Set(
          indexEntries(JSON.parse(doc) as MetadataRecord).map((e) => `${e.path} ${e.kind} ${JSON.stringify(e.value)}`),
        );
        expect([...(onFile.get(rid) ?? [])].sort()).toEqual([...expected].sort());
      }
      expect(raw.prepare('SELECT count(*) AS n FROM record_index_pending').get()).toEqual({ n: 0 });
    } finally {
      raw.close();
    }
  });
});

describe('the index of an existing database', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'caas-record-index-old-'));
  const old = path.join(dir, 'metadata.sqlite');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const filter = { 'inputs.name': 'ecephys_2', status: { $in: ['succeeded', 'failed'] } };
  const ids = async (database: Database) => {
    let explanation: QueryExplanation | undefined;
    const out: string[] = [];
    const explain = (e: QueryExplanation) => {
      explanation = e;
    };
    for await (const r of database.find(filter, { explain })) out.push(r._id);
    return { out, explanation: explanation! };
  };

  it('is built at the first open for writing, answers as the scan, and a second open changes nothing', async () => {
    const records = Array.from({ length: 60 }, (_, i) => randomRecord(10_000 + i));
    const first = await openDatabase(`sqlite:${old}`, { home: dir });
    await first.importRecords(records);
    await first.close();
    // The database as a caas without the index left it: no index tables, no triggers.
    const raw = new BetterSqlite3(old);
    raw.exec(
      'DROP TRIGGER record_index_on_insert; DROP TRIGGER record_index_on_update; DROP TABLE record_entries; DROP TABLE record_index_pending; DROP TABLE record_index_state; DROP TABLE record_index_paths;',
    );
    raw.close();
    const expected = mingoFind(records as never[], filter)
      .all()
      .map((r) => String((r as { _id: string })._id));

    const readOnly = await openDatabase(`sqlite:${old}`, { home: dir, readOnly: true });
    const scanned = await ids(readOnly);
    await readOnly.close();
    expect(scanned.out).toEqual(expected);
    expect(scanned.explanation.plan).toMatch(/^full scan/);

    for (const round of [1, 2]) {
      const reopened = await openDatabase(`sqlite:${old}`, { home: dir });
      const answer = await ids(reopened);
      await reopened.close();
      expect(answer.out, `open ${round}`).toEqual(expected);
      expect(answer.explanation.indexes).toContain('record_entries(inputs.name)');
      expect(answer.explanation.documentsRead).toBe(answer.explanation.candidates);
    }
    const check = new BetterSqlite3(old, { readonly: true });
    const count = check.prepare<[], number>('SELECT count(*) FROM record_entries').pluck().get();
    const expectedCount = records.reduce((n, r) => n + indexEntries(r).length, 0);
    check.close();
    expect(count).toBe(expectedCount);
  });

  it('finds a record another writer added without its entries (an older caas): the trigger keeps it a candidate', async () => {
    const extra = randomRecord(20_000);
    extra.inputs = [{ asset_id: 'asset-ecephys_2', name: 'ecephys_2', location: 's3://aind-open-data/ecephys_2' }];
    extra.status = 'failed';
    const raw = new BetterSqlite3(old);
    raw
      .prepare('INSERT INTO records (id, status, analysis, created, doc) VALUES (?, ?, ?, ?, ?)')
      .run(extra._id, extra.status, extra.analysis.name, extra.created, JSON.stringify(extra));
    raw.close();
    const readOnly = await openDatabase(`sqlite:${old}`, { home: dir, readOnly: true });
    const answer = await ids(readOnly);
    await readOnly.close();
    expect(answer.out).toContain(extra._id);
    expect(answer.explanation.indexes).toContain('record_entries(inputs.name)');
  });

  it('a record another writer added without its entries, then written by this store (a claim takes it over), is found with all its entries', async () => {
    const extra = randomRecord(30_000);
    extra.inputs = [{ asset_id: 'asset-ecephys_3', name: 'ecephys_3', location: 's3://aind-open-data/ecephys_3' }];
    extra.status = 'failed';
    const store = await openDatabase(`sqlite:${old}`, { home: dir });
    const raw = new BetterSqlite3(old);
    raw
      .prepare('INSERT INTO records (id, status, analysis, created, doc) VALUES (?, ?, ?, ?, ?)')
      .run(extra._id, extra.status, extra.analysis.name, extra.created, JSON.stringify(extra));
    raw.close();
    const byName = { 'inputs.name': 'ecephys_3' };
    const found = async (database: typeof store) => {
      const out: string[] = [];
      for await (const r of database.find(byName)) out.push(r._id);
      return out;
    };
    expect(await found(store)).toEqual([extra._id]);

    const claim = await store.claim(extra._id, { draft: extra as never, owner: { host: 'h', pid: 1, run: 'takeover' }, leaseMs: 60_000 });
    expect(claim.won).toBe(true);
    expect(await found(store), 'after the takeover').toEqual([extra._id]);
    await store.close();
    const readOnly = await openDatabase(`sqlite:${old}`, { home: dir, readOnly: true });
    expect(await found(readOnly), 'and in a new open').toEqual([extra._id]);
    await readOnly.close();
  });
});
