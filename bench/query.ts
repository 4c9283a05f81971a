/**
 * Provenance queries over 1,000,000 records (~2 KB each) in SQLite: the indexed `find` (the store's
 * own, as `caas query` calls it) beside the full scan it replaced (every record parsed and tested by
 * mingo, the matches sorted in memory), on the same file in the same run, with the same answers.
 * Plus the peak RSS of `caas query` on a filter no index answers (a streaming scan).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { find as mingoFind, Query } from 'mingo';
import { type Database, openDatabase } from '../backends/db/index.ts';
import { RECORD_INDEX_VERSION } from '../backends/db/sqlite-record-index.ts';
import { finishedRecord } from '../fixtures/records.ts';
import type { Filter } from '../models/filter.ts';
import { MetadataRecord } from '../models/record.ts';
import { runCaas } from './caas-cli.ts';
import { type BenchOptions, type BenchReport, check, formatNumber, type Measurement, median, type TargetCheck, verify } from './report.ts';

/** Bumped when the records below change: the cached file is keyed by it and by the index's version. */
const GENERATOR_VERSION = 1;
const OWNER = { host: 'bench-host', pid: 1, run: 'bench' };
const TEMPLATE = finishedRecord({ seed: 'template', parameters: { isi_violations_cutoff: 0.05 } }, OWNER);
const ANALYSES = ['unit-filter', 'spike-sort', 'motion-correction', 'quality-metrics'];
const COMMITS = Array.from({ length: 200 }, (_, i) => createHash('sha1').update(`commit ${i}`).digest('hex'));
const START = Date.parse('2022-01-01T00:00:00Z');
const SPAN_MS = 3 * 365 * 86_400_000;

/** A deterministic pseudo-random number in [0, 1) for record i and a salt. */
function unit(i: number, salt: number): number {
  let x = Math.imul(i ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(salt, 0xc2b2ae35);
  x ^= x >>> 13;
  x = Math.imul(x, 0x27d4eb2f);
  x ^= x >>> 16;
  return (x >>> 0) / 4294967296;
}

/** Record i of the history: its lab's analyses, commits, sessions and parameter sweeps, created in order over three years. */
function benchRecord(i: number, total: number): MetadataRecord {
  const analysis = ANALYSES[i % ANALYSES.length]!;
  const session = `ecephys_${600000 + Math.floor(unit(i, 1) * 20000)}_2024-0${1 + (i % 9)}-1${i % 10}_12-00-00`;
  const files = ['units.spikes.json', 'probe.json', 'sorting.nwb'].map((f, n) => ({
    url: `s3://aind-open-data/${session}/${f}`,
    etag: createHash('md5').update(`${i}/${n}`).digest('hex'),
    size: 1000 + i + n,
  }));
  const inputs = [{ asset_id: `asset-${session}`, name: session, location: `s3://aind-open-data/${session}/`, files }];
  const parameters = {
    isi_violations_cutoff: Math.round(unit(i, 2) * 1000) / 1000,
    presence_ratio: Math.round(unit(i, 3) * 100) / 100,
    mode: unit(i, 4) < 0.5 ? 'strict' : 'lenient',
  };
  const commit = COMMITS[Math.floor(unit(i, 5) * COMMITS.length)]!;
  const created = new Date(START + Math.floor((i / total) * SPAN_MS)).toISOString();
  const end = new Date(Date.parse(created) + 60_000 + Math.floor(unit(i, 6) * 3_600_000)).toISOString();
  const roll = unit(i, 7);
  const status = roll < 0.9 ? 'succeeded' : roll < 0.98 ? 'failed' : 'running';
  const id = createHash('sha256').update(`bench record ${i}`).digest('hex');
  const results = `s3://caas-${analysis}/caas/results/job__caas-${analysis}_${i}/process_results/`;
  const code = { url: `https://github.com/aind/${analysis}.git`, commit };
  return {
    ...TEMPLATE,
    _id: id,
    status,
    analysis: { name: analysis, version: `1.${i % 4}.0` },
    code,
    parameters,
    inputs,
    preimage: { ...TEMPLATE.preimage, analysis: { name: analysis, version: `1.${i % 4}.0` }, code, parameters, inputs },
    created,
    updated: end,
    start: created,
    end: status === 'running' ? null : end,
    exit_code: status === 'failed' ? 1 : status === 'running' ? null : 0,
    reason: status === 'failed' ? 'analysis exited 1' : null,
    outputs: {
      manifest: [{ key: 'units.filtered.json', size: 2048 + i, sha256: createHash('sha256').update(id).digest('hex') }],
      output_parameters: { units_kept: i % 300, units_total: 300 },
    },
    attempts: TEMPLATE.attempts.map((a) => ({ ...a, results, started: created, ended: end })),
  };
}

/** The records' file, made once per generator and index version, and kept under the system's temp folder for the next run. */
async function recordsFile(count: number): Promise<string> {
  const dir = path.join(tmpdir(), 'caas-bench-query');
  const file = path.join(dir, `records-g${GENERATOR_VERSION}-i${RECORD_INDEX_VERSION}-${count}.sqlite`);
  if (existsSync(file)) return file;
  mkdirSync(dir, { recursive: true });
  const partial = `${file}.${process.pid}.partial`;
  rmSync(partial, { force: true });
  MetadataRecord.parse(benchRecord(0, count));
  // The store makes its tables; the records go in as an older caas would have left them (one
  // transaction, no entries), and the next open for writing indexes them, as it would a lab's history.
  await (await openDatabase(`sqlite:${partial}`, { home: dir })).close();
  const raw = new BetterSqlite3(partial);
  raw.pragma('journal_mode = OFF');
  raw.pragma('synchronous = OFF');
  const insert = raw.prepare('INSERT INTO records (id, status, analysis, created, doc) VALUES (?, ?, ?, ?, ?)');
  raw.transaction(() => {
    for (let i = 0; i < count; i++) {
      const r = benchRecord(i, count);
      insert.run(r._id, r.status, r.analysis.name, r.created, JSON.stringify(r));
    }
  })();
  raw.close();
  await (await openDatabase(`sqlite:${partial}`, { home: dir })).close();
  renameSync(partial, file);
  return file;
}

interface Question {
  name: string;
  filter: Filter;
  sort?: Record<string, 1 | -1>;
  limit: number;
}

/** The full scan the index replaced: every record parsed and tested, the matches sorted in memory. */
function scan(file: string, question: Question): { ids: string[]; ms: number } {
  const started = performance.now();
  const db = new BetterSqlite3(file, { readonly: true });
  const query = new Query(question.filter);
  const matches: Record<string, unknown>[] = [];
  for (const text of db.prepare<[], string>('SELECT doc FROM records ORDER BY rowid').pluck().iterate()) {
    const doc = JSON.parse(text) as Record<string, unknown>;
    if (query.test(doc)) {
      matches.push(doc);
      if (!question.sort && matches.length >= question.limit) break;
    }
  }
  db.close();
  const sorted = question.sort ? mingoFind(matches, {}).sort(question.sort).limit(question.limit).all() : matches;
  return { ids: sorted.map((d) => String(d._id)), ms: performance.now() - started };
}

async function indexed(db: Database, question: Question): Promise<{ ids: string[]; ms: number }> {
  const started = performance.now();
  const ids: string[] = [];
  for await (const record of db.find(question.filter, { sort: question.sort, limit: question.limit })) ids.push(record._id);
  return { ids, ms: performance.now() - started };
}

export async function benchQuery(options: BenchOptions): Promise<BenchReport> {
  const count = options.quick ? 20_000 : 1_000_000;
  const t0 = performance.now();
  const file = await recordsFile(count);
  const madeS = (performance.now() - t0) / 1000;
  const sample = benchRecord(Math.floor(count / 2), count);
  const lastWeek = new Date(START + SPAN_MS - 7 * 86_400_000).toISOString();
  // As `caas query` asks: its shortcuts' filters, and the table's default sort (-created) and limit (+1 to know if more remain).
  const questions: Question[] = [
    {
      name: 'by input asset name (--input)',
      filter: {
        $or: ['asset_id', 'name', 'location', 'files.url'].map((k) => ({ [`inputs.${k}`]: sample.inputs[0]!.name })),
      },
      sort: { created: -1 },
      limit: 101,
    },
    {
      name: 'by commit prefix (--commit 7 hex)',
      filter: { 'code.commit': { $regex: `^${sample.code.commit.slice(0, 7)}` } },
      sort: { created: -1 },
      limit: 101,
    },
    {
      name: 'by parameter equality',
      filter: { 'parameters.isi_violations_cutoff': sample.parameters.isi_violations_cutoff },
      sort: { created: -1 },
      limit: 101,
    },
    {
      name: 'by parameter range, --sort -end --limit 10',
      filter: { 'parameters.isi_violations_cutoff': { $lt: 0.05 } },
      sort: { end: -1 },
      limit: 11,
    },
    {
      name: 'by status + since (--status failed --since 7d)',
      filter: { $and: [{ status: 'failed' }, { created: { $gte: lastWeek } }] },
      sort: { created: -1 },
      limit: 101,
    },
  ];
  const measurements: Measurement[] = [
    {
      subject: 'records file',
      value: madeS,
      unit: 's',
      detail: `${count.toLocaleString('en-US')} records, made or reused from ${path.dirname(file)}`,
    },
  ];
  const targets: TargetCheck[] = [];
  const db = await openDatabase(`sqlite:${file}`, { home: path.dirname(file), readOnly: true });
  try {
    for (const question of questions) {
      const baseline = scan(file, question);
      await indexed(db, question); // warm the page cache as the scan just did
      const runs: { ids: string[]; ms: number }[] = [];
      for (let r = 0; r < (options.quick ? 3 : 9); r++) runs.push(await indexed(db, question));
      const ms = median(runs.map((r) => r.ms));
      const same = runs.every((r) => JSON.stringify(r.ids) === JSON.stringify(baseline.ids));
      measurements.push(
        { subject: `caas ${question.name}`, value: ms, unit: 'ms', detail: `median of ${runs.length}, ${runs[0]!.ids.length} records` },
        {
          subject: `full scan ${question.name}`,
          value: baseline.ms,
          unit: 'ms',
          detail: 'mingo over every record (the query before the index)',
        },
      );
      targets.push(
        verify(`${question.name}: same records as the scan`, same ? 'same' : 'DIFFERENT', same),
        check(`${question.name}: <= 100 ms median`, `${formatNumber(ms)} ms`, ms <= 100),
        check(`${question.name}: >= 50x the full scan`, `${formatNumber(baseline.ms / ms)}x`, baseline.ms / ms >= 50),
      );
    }
  } finally {
    await db.close();
  }
  // A filter on a path no index holds: the store reads every record once, keeping none.
  const probe = path.join(options.workDir, 'unindexed.json');
  const run = await runCaas(['--db', `sqlite:${file}`, 'query', '{"outputs.output_parameters.units_kept":299}', '--json'], { probe });
  const { maxRssKiB } = JSON.parse(readFileSync(probe, 'utf8')) as { maxRssKiB: number };
  const rssMiB = maxRssKiB / 1024;
  measurements.push({
    subject: 'caas query on an unindexed path (--json)',
    value: rssMiB,
    unit: 'MiB peak RSS',
    detail: `${formatNumber(run.wallS)} s, full scan`,
  });
  targets.push(check('unindexed filter: <= 300 MB RSS', `${formatNumber(rssMiB)} MiB`, rssMiB * 1.048576 <= 300));
  return {
    name: 'query',
    title: `caas query over ${count.toLocaleString('en-US')} SQLite records (~2 KB each): indexed beside the full scan`,
    measurements,
    targets,
  };
}
