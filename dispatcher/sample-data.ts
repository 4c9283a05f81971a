/**
 * Deterministic demo data: AIND-shaped ecephys assets with spike trains, their catalog documents,
 * and unit-filter jobs over them. Everything derives from the seed and fixed dates, never from the
 * clock or Math.random, so the same seed gives byte-identical objects, catalog and identities.
 */
import { createHash } from 'node:crypto';
import { type ObjectStore, parseObjectUrl } from '../backends/storage/index.ts';
import { JobInput } from '../models/job-input.ts';

export type Asset = {
  _id: string;
  name: string;
  location: string;
  subject: { subject_id: string };
  data_description: {
    modality: { abbreviation: string }[];
    data_level: 'derived';
    project_name: string;
    creation_time: string;
  };
  created: string;
};

export interface SampleDataOptions {
  bucket?: string;
  subjects?: string[];
  sessionsPerSubject?: number;
  unitsPerSession?: number;
  seed?: number;
}

export const SPIKES_KEY = 'spikes/units.spikes.json';

const FIRST_SESSION = Date.UTC(2024, 2, 4, 10, 0, 0);
const DAY_MS = 86_400_000;
const SESSION_S = 60;
/** The true refractory period of the simulated neurons; contamination adds intervals below it. */
const REFRACTORY_S = 0.002;
/** UUIDv5 namespace of caas sample assets (a fixed random UUID). */
const ASSET_NAMESPACE = '4d7c1f0e-8a53-4c2b-9b1e-6f2d3a5c7e90';

/** mulberry32: a tiny 32-bit PRNG, good enough for simulated spikes and identical everywhere. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A PRNG per (seed, label), so one unit's spikes do not change when another unit is added. */
function streamFor(seed: number, label: string): () => number {
  return mulberry32(createHash('sha256').update(`${seed}/${label}`).digest().readUInt32LE(0));
}

function uuidV5(namespace: string, name: string): string {
  const bytes = createHash('sha1')
    .update(Buffer.from(namespace.replace(/-/g, ''), 'hex'))
    .update(name)
    .digest()
    .subarray(0, 16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x50;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** AIND's acquisition datetime in names: YYYY-MM-DD_HH-MM-SS. */
export function aindDatetime(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19).replace('T', '_').replace(/:/g, '-');
}

/**
 * The fraction of intervals placed inside the refractory period. Every fourth unit is badly
 * contaminated (fails the default 0.05 cutoff; some pass 0.1), every fourth-plus-one a little, the
 * rest are clean, so filtering always has something to keep and something to drop.
 */
function contamination(unitIndex: number, random: () => number): number {
  if (unitIndex % 4 === 3) return 0.08 + 0.22 * random();
  if (unitIndex % 4 === 1) return 0.02 * random();
  return 0;
}

function simulateUnit(random: () => number, contaminationRate: number): number[] {
  const rateHz = 2 + 10 * random();
  const times: number[] = [];
  let t = random() / rateHz;
  while (t < SESSION_S) {
    // Round to 10 µs so the JSON stays short; rounding is monotonic, so times stay sorted.
    times.push(Math.round(t * 1e5) / 1e5);
    const violation = random() < contaminationRate;
    t += violation ? 0.0002 + 0.0012 * random() : REFRACTORY_S - Math.log(1 - random()) / rateHz;
  }
  return times;
}

export async function generateSampleData(
  store: ObjectStore,
  options: SampleDataOptions = {},
): Promise<{ assets: Asset[]; catalogJsonl: string; bucket: string }> {
  const bucket = options.bucket ?? 'sample-data';
  const subjects = options.subjects ?? ['774659', '774660'];
  const sessionsPerSubject = options.sessionsPerSubject ?? 3;
  const unitsPerSession = options.unitsPerSession ?? 12;
  const seed = options.seed ?? 1;

  if (!(await store.bucketExists(bucket))) await store.createBucket(bucket);
  const assets: Asset[] = [];
  for (const [s, subject] of subjects.entries()) {
    for (let k = 0; k < sessionsPerSubject; k++) {
      // Subjects are recorded on alternate days, sessions a week apart, all at fixed times.
      const acquired = FIRST_SESSION + (7 * k + s) * DAY_MS;
      const name = `ecephys_${subject}_${aindDatetime(acquired)}_processed`;
      const units = Array.from({ length: unitsPerSession }, (_, u) => {
        const random = streamFor(seed, `${name}/unit-${u}`);
        return { unit_id: u, spike_times_s: simulateUnit(random, contamination(u, random)) };
      });
      const creationTime = new Date(acquired + DAY_MS).toISOString();
      const asset: Asset = {
        _id: uuidV5(ASSET_NAMESPACE, `${seed}/${name}`),
        name,
        location: `${store.scheme}://${bucket}/${name}/`,
        subject: { subject_id: subject },
        data_description: {
          modality: [{ abbreviation: 'ecephys' }],
          data_level: 'derived',
          project_name: 'Demo Ephys',
          creation_time: creationTime,
        },
        created: creationTime,
      };
      await store.put(bucket, `${name}/${SPIKES_KEY}`, JSON.stringify({ session: name, units }));
      await store.put(bucket, `${name}/metadata.nd.json`, `${JSON.stringify(asset, null, 2)}\n`);
      assets.push(asset);
    }
  }
  return { assets, catalogJsonl: assets.map((a) => `${JSON.stringify(a)}\n`).join(''), bucket };
}

export interface SampleJobOptions {
  /** The store the assets were written to: etag and size of each spike file come from it. */
  store: ObjectStore;
  /** One job per asset and cutoff. */
  cutoffs?: number[];
}

/** unit-filter jobs over the sample assets, validated as JobInput. */
export async function writeSampleJobs(assets: readonly Asset[], options: SampleJobOptions): Promise<JobInput[]> {
  const cutoffs = options.cutoffs ?? [0.05, 0.1];
  const jobs: JobInput[] = [];
  for (const asset of assets) {
    const url = `${asset.location}${SPIKES_KEY}`;
    const { bucket, key } = parseObjectUrl(url);
    const info = await options.store.head(bucket, key);
    if (!info) throw new Error(`${url} does not exist: run generateSampleData on this store first`);
    for (const cutoff of cutoffs) {
      jobs.push(
        JobInput.parse({
          analysis: 'unit-filter',
          inputs: [{ asset_id: asset._id, name: asset.name, location: asset.location, files: [{ url, etag: info.etag, size: info.size }] }],
          parameters: { analysis_tag: 'demo', isi_violations_cutoff: cutoff },
          group: 'demo',
          provenance: { source: 'generator' },
        }),
      );
    }
  }
  return jobs;
}
