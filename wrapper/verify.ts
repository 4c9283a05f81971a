import type { z } from 'zod';
import { hashObject, type ObjectStore } from '../backends/storage/index.ts';
import type { Analysis } from '../models/analysis.ts';
import type { JobKeys } from '../models/bucket-contract.ts';
import { describeIssues } from '../models/issues.ts';
import { ManifestEntry } from '../models/record.ts';
import { StatusFile } from '../models/status.ts';
import { forEachAtMost } from './worker-pool.ts';

/** What a job folder shows once its machine is gone: end.txt, the status, the manifest, the outputs. */
export interface Verification {
  succeeded: boolean;
  /** end.txt exists: the agent finished (whatever the outcome). */
  ended: boolean;
  exitCode: number | null;
  reason: string;
  manifest: ManifestEntry[];
  outputParameters: Record<string, unknown> | null;
  stderrTail: string[];
  start: string | null;
  end: string | null;
}

const STDERR_TAIL = 20;
const HASH_CONCURRENCY = 8;

/** A verdict with nothing established yet: not ended, not succeeded. */
export function emptyVerification(): Verification {
  return {
    succeeded: false,
    ended: false,
    exitCode: null,
    reason: '',
    manifest: [],
    outputParameters: null,
    stderrTail: [],
    start: null,
    end: null,
  };
}

/**
 * Reads a finished job folder and decides whether it succeeded: end.txt must exist, the status file
 * must say SUCCESS, every manifest entry must be there with its size and sha256, and the outputs
 * file must satisfy the analysis' outputs model. Nothing short of that is a success.
 */
export async function verifyJob(store: ObjectStore, bucket: string, keys: JobKeys, analysis: Analysis): Promise<Verification> {
  const verdict = emptyVerification();
  const text = async (key: string) => (await store.get(bucket, key).catch(() => undefined))?.toString('utf8');
  // end.txt first: the agent writes it last, so what is read after it is what the agent left. The
  // rest at once: one round trip to the store instead of three.
  const endInfo = await store.head(bucket, keys.end);
  const [stderr, statusText, manifestText] = await Promise.all([text(keys.stderr), text(keys.status), text(keys.manifest)]);
  verdict.stderrTail = (stderr ?? '')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .slice(-STDERR_TAIL);
  const status = StatusFile.safeParse(JSON.parse(statusText ?? 'null'));
  if (status.success) {
    verdict.exitCode = status.data.exit_code ?? null;
    verdict.start = status.data.job_start;
    verdict.end = status.data.job_finish;
  }
  verdict.ended = endInfo !== undefined;
  if (!verdict.ended) return { ...verdict, reason: 'no end.txt: the job did not finish' };
  if (!status.success) return { ...verdict, reason: 'the status file is missing or unreadable' };
  if (status.data.status !== 'SUCCESS') return { ...verdict, reason: status.data.reason ?? `status ${status.data.status}` };

  let manifest: ManifestEntry[];
  try {
    manifest = ManifestEntry.array().parse(JSON.parse(manifestText ?? 'null'));
  } catch {
    return { ...verdict, reason: `the output manifest ${keys.manifest} is missing or invalid` };
  }
  const outside = manifest.find((entry) => !entry.key.startsWith(keys.process));
  if (outside) return { ...verdict, reason: `manifest entry ${outside.key} lies outside ${keys.process}` };
  // Hashed a few at once (a job may have hundreds of outputs); judged in the manifest's order.
  const hashes: ({ size: number; sha256: string } | undefined)[] = [];
  await forEachAtMost([...manifest.keys()], HASH_CONCURRENCY, async (index) => {
    hashes[index] = await hashObject(store, bucket, manifest[index]!.key).catch(() => undefined);
  });
  for (const [index, entry] of manifest.entries()) {
    const stored = hashes[index];
    if (stored === undefined) return { ...verdict, reason: `output ${entry.key} is missing` };
    if (stored.size !== entry.size || stored.sha256 !== entry.sha256) {
      return { ...verdict, reason: `output ${entry.key} does not match its manifest (size or sha256)` };
    }
  }
  // Whatever lies in process_results is an output of this job and must be one the agent listed and hashed.
  const listed = new Set(manifest.map((entry) => entry.key));
  for await (const object of store.list(bucket, keys.process)) {
    if (object.key !== keys.end && !listed.has(object.key)) {
      return { ...verdict, reason: `output ${object.key} is not in the manifest: it was written after the agent listed the outputs` };
    }
  }
  verdict.manifest = manifest;
  if (analysis.outputs) {
    const key = keys.process + analysis.outputs.file;
    if (!listed.has(key)) return { ...verdict, reason: `outputs file ${analysis.outputs.file} is missing from the manifest` };
    let value: unknown;
    try {
      value = JSON.parse((await text(key)) ?? '');
    } catch {
      return { ...verdict, reason: `outputs file ${analysis.outputs.file} is missing or not JSON` };
    }
    const parsed = (analysis.outputs.model as z.ZodType).safeParse(value);
    if (!parsed.success) return { ...verdict, reason: `outputs file ${analysis.outputs.file}: ${describeIssues(parsed.error)}` };
    verdict.outputParameters = parsed.data as Record<string, unknown>;
  }
  return { ...verdict, succeeded: true, exitCode: verdict.exitCode ?? 0, reason: 'exit code 0, outputs verified' };
}
