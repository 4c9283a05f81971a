/**
 * The upload benchmark (issue #8): a results folder of mixed file sizes to s3rver, the agent's
 * uploader (uploadFolder) against the plain way, one whole-file PutObject after another. Both run in
 * the same process against the same server, each into a fresh bucket, in alternating order; the best
 * round of each counts. What each stored is then listed and compared, untimed.
 */

import { createCipheriv, createHash } from 'node:crypto';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { type ObjectStore, openStore } from '../backends/storage/index.ts';
import { mulberry32 } from '../dispatcher/sample-data.ts';
import { startS3rver } from '../fixtures/s3rver.ts';
import type { ManifestEntry } from '../models/record.ts';
import { uploadFolder } from '../wrapper/upload.ts';
import { type BenchOptions, type BenchReport, check, formatNumber, type Measurement } from './report.ts';

const MB = 1_000_000;
const WRITE_CHUNK = 1024 * 1024;
const S3_PART_SIZE = 8 * 1024 * 1024;

/** The folder's make-up: a few large recordings, dozens of mid-size arrays, hundreds of small files. */
interface FolderPlan {
  totalBytes: number;
  large: number;
  medium: number;
  small: number;
  rounds: number;
}

const FULL: FolderPlan = { totalBytes: 200 * MB, large: 3, medium: 30, small: 400, rounds: 2 };
const QUICK: FolderPlan = { totalBytes: 20 * MB, large: 1, medium: 2, small: 60, rounds: 1 };

interface GeneratedFile {
  relativePath: string;
  size: number;
  sha256: string;
}

type Contender = 'uploadFolder' | 'sequential PUTs';

export async function benchUpload(options: BenchOptions): Promise<BenchReport> {
  const plan = options.quick ? QUICK : FULL;
  const folder = path.join(options.workDir, 'results');
  let server: Awaited<ReturnType<typeof startS3rver>> | undefined;
  let store: ObjectStore | undefined;
  let client: S3Client | undefined;
  try {
    const files = await writeResultsFolder(folder, plan);
    server = await startS3rver();
    store = await openStore(`s3://?endpoint=${server.endpoint}`, { home: options.workDir });
    client = new S3Client({
      region: 'us-east-1',
      endpoint: server.endpoint,
      // As S3Store configures its client for S3-compatible servers: path-style, no flexible checksums.
      forcePathStyle: true,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    const s3Store = store;
    const s3Client = client;

    const seconds: Record<Contender, number[]> = { uploadFolder: [], 'sequential PUTs': [] };
    const stored: Array<{ contender: Contender; bucket: string; sizes: Map<string, number> }> = [];
    const manifestProblems: string[] = [];
    const run: Record<Contender, (bucket: string) => Promise<void>> = {
      uploadFolder: async (bucket) => {
        const manifest = await uploadFolder(s3Store, bucket, '', folder);
        manifestProblems.push(...compareManifest(manifest, files));
      },
      'sequential PUTs': async (bucket) => {
        for (const file of files) {
          const body = await readFile(path.join(folder, ...file.relativePath.split('/')));
          await s3Client.send(new PutObjectCommand({ Bucket: bucket, Key: file.relativePath, Body: body }));
        }
      },
    };
    for (let round = 1; round <= plan.rounds; round++) {
      // Alternating which goes first, so neither always meets a warm (or a cluttered) server.
      const order: Contender[] = round % 2 === 1 ? ['uploadFolder', 'sequential PUTs'] : ['sequential PUTs', 'uploadFolder'];
      for (const contender of order) {
        const bucket = `bench-${contender === 'uploadFolder' ? 'uploader' : 'baseline'}-${round}`;
        await s3Store.createBucket(bucket);
        const started = performance.now();
        await run[contender](bucket);
        seconds[contender].push((performance.now() - started) / 1000);
        stored.push({ contender, bucket, sizes: await listSizes(s3Store, bucket) });
      }
    }

    const totalBytes = files.reduce((sum, file) => sum + file.size, 0);
    const ours = Math.min(...seconds.uploadFolder);
    const baseline = Math.min(...seconds['sequential PUTs']);
    const ratio = baseline / ours;
    const expected = new Map(files.map((file) => [file.relativePath, file.size]));
    const storeProblems = stored.flatMap(({ contender, bucket, sizes }) =>
      compareSizes(sizes, expected).map((problem) => `${contender} (bucket ${bucket}): ${problem}`),
    );
    const multipart = files.filter((file) => file.size > S3_PART_SIZE).length;
    const measured = (contender: Contender, best: number): Measurement[] => [
      { subject: contender, value: best, unit: 's', detail: roundsDetail(seconds[contender]) },
      { subject: contender, value: totalBytes / MB / best, unit: 'MB/s' },
    ];
    return {
      name: 'upload',
      title: `Upload: a ${formatNumber(totalBytes / MB)} MB results folder of ${files.length} files to s3rver, uploadFolder vs sequential single PUTs`,
      measurements: [
        ...measured('uploadFolder', ours),
        ...measured('sequential PUTs', baseline),
        {
          subject: 'results folder',
          value: files.length,
          unit: 'files',
          detail: `${makeUp(files)}; ${multipart} over the 8 MiB part size`,
        },
        { subject: 'results folder', value: totalBytes / MB, unit: 'MB' },
      ],
      targets: [
        check(
          'uploadFolder faster than sequential single PUTs (ratio > 1)',
          `${formatNumber(ratio)}x (${formatNumber(baseline)} s / ${formatNumber(ours)} s)`,
          ratio > 1,
        ),
        check(
          'both uploads store the same keys with the same sizes as the folder',
          storeProblems.length === 0 ? `${stored.length} buckets x ${files.length} keys, all equal` : storeProblems.slice(0, 3).join('; '),
          storeProblems.length === 0,
        ),
        check(
          "uploadFolder's manifest gives each file's size and sha256",
          manifestProblems.length === 0 ? `${files.length} entries, all equal` : manifestProblems.slice(0, 3).join('; '),
          manifestProblems.length === 0,
        ),
      ],
      notes: [
        'uploadFolder: 8 files in flight, files over 8 MiB multipart with 4 parts in flight; sequential: one PutObject per file, whole body',
        's3rver runs on 127.0.0.1 and writes to local disk: there is no network round trip for overlapping requests to hide, as there is on S3 (tens of ms per request), and s3rver and this process share the CPUs, so the ratio here is a floor',
      ],
    };
  } finally {
    client?.destroy();
    await store?.close();
    await server?.stop();
    await rm(options.workDir, { recursive: true, force: true });
  }
}

/** "3 of 24-35 MB, 30 of 1.1-4.9 MB, 400 of 0.001-0.1 MB": the folder as generated. */
function makeUp(files: GeneratedFile[]): string {
  const groups = new Map<string, number[]>();
  for (const file of files) {
    const group = file.relativePath.split('/')[0]!;
    groups.set(group, [...(groups.get(group) ?? []), file.size]);
  }
  return [...groups.entries()]
    .sort(([, a], [, b]) => Math.max(...b) - Math.max(...a))
    .map(([, sizes]) => `${sizes.length} of ${formatNumber(Math.min(...sizes) / MB)}-${formatNumber(Math.max(...sizes) / MB)} MB`)
    .join(', ');
}

function roundsDetail(seconds: number[]): string {
  return seconds.length === 1 ? '1 round' : `best of ${seconds.length} rounds (${seconds.map((s) => `${formatNumber(s)} s`).join(', ')})`;
}

/** Deterministic sizes, so every run uploads the same folder; the large files take what is left. */
function planSizes(plan: FolderPlan): Array<{ relativePath: string; size: number }> {
  const random = mulberry32(8);
  const between = (low: number, high: number) => low + Math.floor(random() * (high - low + 1));
  const files: Array<{ relativePath: string; size: number }> = [];
  for (let i = 0; i < plan.small; i++) {
    const name = `qc/session-${i % 10}/${i % 3 === 0 ? 'raster' : 'metrics'}-${String(i).padStart(3, '0')}.${i % 3 === 0 ? 'png' : 'json'}`;
    files.push({ relativePath: name, size: between(1_000, 100_000) });
  }
  for (let i = 0; i < plan.medium; i++) {
    files.push({ relativePath: `units/shank-${i % 4}/waveforms-${String(i).padStart(2, '0')}.npy`, size: between(1 * MB, 5 * MB) });
  }
  const left = plan.totalBytes - files.reduce((sum, file) => sum + file.size, 0);
  const weights = Array.from({ length: plan.large }, () => 0.8 + 0.4 * random());
  const weightSum = weights.reduce((sum, weight) => sum + weight, 0);
  let given = 0;
  weights.forEach((weight, i) => {
    const size = i === plan.large - 1 ? left - given : Math.round((left * weight) / weightSum);
    given += size;
    files.push({ relativePath: `raw/segment-${i}.dat`, size });
  });
  const smallestLarge = Math.min(...files.slice(plan.small + plan.medium).map((file) => file.size));
  // Without a file over the part size the benchmark would not exercise multipart at all.
  if (!(smallestLarge > S3_PART_SIZE)) throw new Error(`upload benchmark plan leaves a large file of only ${smallestLarge} bytes`);
  return files.sort((a, b) => (a.relativePath < b.relativePath ? -1 : 1));
}

/** Pseudo-random bytes (AES-256-CTR keystream, keyed by the path): incompressible, and the same every run. */
async function writeResultsFolder(folder: string, plan: FolderPlan): Promise<GeneratedFile[]> {
  const key = createHash('sha256').update('caas upload benchmark').digest();
  const zeros = Buffer.alloc(WRITE_CHUNK);
  const generated: GeneratedFile[] = [];
  for (const { relativePath, size } of planSizes(plan)) {
    const file = path.join(folder, ...relativePath.split('/'));
    await mkdir(path.dirname(file), { recursive: true });
    const keystream = createCipheriv('aes-256-ctr', key, createHash('sha256').update(relativePath).digest().subarray(0, 16));
    const hash = createHash('sha256');
    const handle = await open(file, 'w');
    try {
      for (let left = size; left > 0; left -= WRITE_CHUNK) {
        const chunk = keystream.update(left >= WRITE_CHUNK ? zeros : zeros.subarray(0, left));
        hash.update(chunk);
        await handle.write(chunk);
      }
    } finally {
      await handle.close();
    }
    generated.push({ relativePath, size, sha256: hash.digest('hex') });
  }
  return generated;
}

async function listSizes(store: ObjectStore, bucket: string): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  for await (const info of store.list(bucket, '')) sizes.set(info.key, info.size);
  return sizes;
}

function compareSizes(stored: Map<string, number>, expected: Map<string, number>): string[] {
  const problems: string[] = [];
  for (const [key, size] of expected) {
    const got = stored.get(key);
    if (got === undefined) problems.push(`${key} missing`);
    else if (got !== size) problems.push(`${key} has ${got} bytes, expected ${size}`);
  }
  for (const key of stored.keys()) if (!expected.has(key)) problems.push(`${key} is not in the folder`);
  return problems;
}

function compareManifest(manifest: ManifestEntry[], files: GeneratedFile[]): string[] {
  const problems: string[] = [];
  const byKey = new Map(manifest.map((entry) => [entry.key, entry]));
  if (manifest.length !== files.length) problems.push(`${manifest.length} manifest entries for ${files.length} files`);
  for (const file of files) {
    const entry = byKey.get(file.relativePath);
    if (!entry) problems.push(`${file.relativePath} not in the manifest`);
    else if (entry.size !== file.size || entry.sha256 !== file.sha256)
      problems.push(`${file.relativePath}: manifest says ${entry.size} bytes, sha256 ${entry.sha256.slice(0, 12)}…`);
  }
  return problems;
}
