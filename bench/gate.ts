/**
 * The gate: 10k jobs checked against 1M records, caas's batched lookup (the real planChunk: one
 * query per 1,000 jobs) beside one query per job (AIND's approach), on the same store in the same
 * run. SQLite always; MongoDB when MONGODB_URI or MONGOMS_SYSTEM_BINARY provides one.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { MongoClient } from 'mongodb';
import { claimVerdict, type Database, type MetadataStore, openDatabase } from '../backends/db/index.ts';
import { mongoUri, withDatabase } from '../fixtures/mongo.ts';
import { finishedRecord } from '../fixtures/records.ts';
import type { MetadataRecord } from '../models/record.ts';
import { GATE_CHUNK, planChunk } from '../wrapper/gate.ts';
import { buildPreImage, identityOf } from '../wrapper/identity.ts';
import type { Prepared, PreparedJob } from '../wrapper/prepare.ts';
import { type BenchOptions, type BenchReport, check, formatNumber, type Measurement, median, type TargetCheck, verify } from './report.ts';

const OWNER = { host: 'bench-host', pid: 1, run: 'bench' };

/** A succeeded record as a runner leaves it, validated once; each record below is a variant of it. */
const TEMPLATE = finishedRecord({ seed: 'template', parameters: { isi_violations_cutoff: 0.05, analysis_tag: 'bench' } }, OWNER);

/** A record shaped like a real one (pre-image, attempts, manifest, ~2 KB of JSON) with its own identity. */
function record(i: number): MetadataRecord {
  const session = `ecephys_${600000 + (i % 5000)}_2025-01-01_12-00-00_sorted_${i}`;
  const inputs = [
    {
      asset_id: `asset-${i}`,
      name: session,
      location: `s3://aind-open-data/${session}/`,
      files: [
        {
          url: `s3://aind-open-data/${session}/units.spikes.json`,
          etag: createHash('md5').update(String(i)).digest('hex'),
          size: 1000 + i,
        },
      ],
    },
  ];
  const preimage = buildPreImage({ ...TEMPLATE.preimage, inputs });
  const id = identityOf(preimage);
  const results = `s3://caas-unit-filter/caas/results/job__caas-unit-filter_${i}/process_results/`;
  return {
    ...TEMPLATE,
    _id: id,
    preimage,
    inputs: preimage.inputs,
    outputs: {
      manifest: [{ key: `${results.slice(28)}units.filtered.json`, size: 2048 + i, sha256: createHash('sha256').update(id).digest('hex') }],
      output_parameters: { units_kept: i % 300, units_total: 300 },
    },
    attempts: TEMPLATE.attempts.map((a) => ({ ...a, results })),
  };
}

/** Counts the queries a store is asked, so round trips are counted, not assumed. */
function counting(store: MetadataStore): { store: MetadataStore; queries: () => number } {
  let queries = 0;
  const wrapped: MetadataStore = Object.create(store);
  wrapped.lookup = (ids) => {
    queries++;
    return store.lookup(ids);
  };
  wrapped.get = (id) => {
    queries++;
    return store.get(id);
  };
  return { store: wrapped, queries: () => queries };
}

interface GateRun {
  seconds: number;
  queries: number;
  /** How many jobs would run (the rest are skipped as succeeded): both ways must agree. */
  toRun: number;
}

/** caas's gate: planChunk over chunks of GATE_CHUNK jobs, one lookup each. */
async function batched(db: MetadataStore, jobs: readonly Prepared[]): Promise<GateRun> {
  const { store, queries } = counting(db);
  const started = performance.now();
  let toRun = 0;
  const seen = new Map<string, string>();
  for (let i = 0; i < jobs.length; i += GATE_CHUNK) {
    const entries = await planChunk(jobs.slice(i, i + GATE_CHUNK), store, { seen });
    for (const entry of entries) if (entry.action === 'RUN') toRun++;
  }
  return { seconds: (performance.now() - started) / 1000, queries: queries(), toRun };
}

/** The per-job way: ask the store about each identity on its own, then apply the same rule. */
async function perJob(db: MetadataStore, jobs: readonly Prepared[]): Promise<GateRun> {
  const { store, queries } = counting(db);
  const started = performance.now();
  const now = new Date();
  let toRun = 0;
  for (const job of jobs) {
    if (!job.ok) continue;
    const verdict = claimVerdict(await store.get(job.job.identity), now, undefined);
    if (verdict === 'insert' || verdict === 'takeover') toRun++;
  }
  return { seconds: (performance.now() - started) / 1000, queries: queries(), toRun };
}

async function measure(
  label: string,
  db: Database,
  sizes: { records: number; jobs: number },
  rounds: number,
): Promise<{ measurements: Measurement[]; targets: TargetCheck[] }> {
  const fill = function* () {
    for (let i = 0; i < sizes.records; i++) yield record(i);
  };
  const setup = performance.now();
  const inserted = await db.importRecords(fill());
  const setupS = (performance.now() - setup) / 1000;
  // Half the jobs are recorded already (spread over the whole DB), half are new.
  const jobs: Prepared[] = Array.from({ length: sizes.jobs }, (_, k) => {
    const identity =
      k % 2 === 0 ? record(Math.floor((k * sizes.records) / sizes.jobs))._id : createHash('sha256').update(`new-${k}`).digest('hex');
    return { ok: true, job: { identity, where: `jobs.jsonl:${k + 1}` } as PreparedJob };
  });
  const ours: GateRun[] = [];
  const theirs: GateRun[] = [];
  await batched(db, jobs.slice(0, GATE_CHUNK));
  await perJob(db, jobs.slice(0, GATE_CHUNK));
  for (let round = 0; round < rounds; round++) {
    ours.push(await batched(db, jobs));
    theirs.push(await perJob(db, jobs));
  }
  const oursS = median(ours.map((r) => r.seconds));
  const theirsS = median(theirs.map((r) => r.seconds));
  const ratio = theirsS / oursS;
  const agree = ours.every((r) => r.toRun === sizes.jobs / 2) && theirs.every((r) => r.toRun === sizes.jobs / 2);
  const detail = `${formatNumber(sizes.jobs)} jobs, ${formatNumber(sizes.records)} records, median of ${rounds}`;
  return {
    measurements: [
      { subject: `${label}: caas batched gate`, value: oursS, unit: 's', detail: `${ours[0]!.queries} queries; ${detail}` },
      { subject: `${label}: one query per job (baseline)`, value: theirsS, unit: 's', detail: `${theirs[0]!.queries} queries; ${detail}` },
      { subject: `${label}: batched vs per job`, value: ratio, unit: 'x faster' },
      { subject: `${label}: import ${formatNumber(inserted)} records (setup, untimed)`, value: setupS, unit: 's' },
    ],
    targets: [
      verify(
        `${label}: both ways plan ${formatNumber(sizes.jobs / 2)} to run`,
        agree ? 'agree' : 'DISAGREE',
        agree && inserted === sizes.records,
      ),
      check(`${label}: batched gate <= 0.5 s`, `${formatNumber(oursS)} s`, oursS <= 0.5),
      check(`${label}: batched >= 20x faster than per job`, `${formatNumber(ratio)}x`, ratio >= 20),
    ],
  };
}

export async function benchGate(options: BenchOptions): Promise<BenchReport> {
  const sizes = options.quick ? { records: 100_000, jobs: 2_000 } : { records: 1_000_000, jobs: 10_000 };
  const rounds = options.quick ? 2 : 3;
  const report: BenchReport = {
    name: 'gate',
    title: `gate: ${formatNumber(sizes.jobs)} jobs against ${formatNumber(sizes.records)} records`,
    measurements: [],
    targets: [],
    skipped: [],
  };
  const sqlite = await openDatabase(`sqlite:${path.join(options.workDir, 'gate.sqlite')}`, { home: options.workDir });
  try {
    const result = await measure('SQLite', sqlite, sizes, rounds);
    report.measurements.push(...result.measurements);
    report.targets.push(...result.targets);
  } finally {
    await sqlite.close();
  }
  const mongo = await mongoUri();
  if (!mongo.uri) {
    report.skipped!.push(`MongoDB: ${mongo.reason}`);
    return report;
  }
  const url = withDatabase(mongo.uri, `caas_bench_gate_${process.pid}`);
  const db = await openDatabase(url, { home: options.workDir });
  try {
    const result = await measure('MongoDB', db, sizes, rounds);
    report.measurements.push(...result.measurements);
    report.targets.push(...result.targets);
  } finally {
    await db.close();
    const client = await MongoClient.connect(url);
    await client.db().dropDatabase();
    await client.close();
    await mongo.stop();
  }
  return report;
}
