import { analysisRoots, listAnalysisNames, loadAnalysis } from '../analyses/index.ts';
import type { ObjectStore } from '../backends/storage/index.ts';
import type { Analysis } from '../models/analysis.ts';
import { blueprintProblem } from './runnable-analysis.ts';

/**
 * The analysis whose blueprint names this bucket, or the refusal that lists the buckets the
 * analyses do name, or says what is wrong with the blueprint that names it. An analysis that fails
 * to load is passed over: its blueprint is unknown.
 */
export async function analysisOwningBucket(bucket: string, roots = analysisRoots()): Promise<Analysis | string> {
  const known: string[] = [];
  for (const name of listAnalysisNames(roots)) {
    const analysis = await loadAnalysis(name, roots).catch(() => undefined);
    if (!analysis) continue;
    if (analysis.blueprint.bucket === bucket) return blueprintProblem(analysis) ?? analysis;
    known.push(analysis.blueprint.bucket);
  }
  return `no analysis has bucket "${bucket}" in its blueprint: expected one of ${known.join(', ') || '(none found)'}`;
}

/**
 * Makes sure an analysis bucket exists before anything is written to it, for `caas run` and
 * `caas watch` alike. A store with buckets on demand (a folder) just makes it. A missing cloud
 * bucket is not made: it is provisioned with the analysis (as NeuroCAAS stacks are), with the
 * region and policies its deployment chose, and a typo in a bucket name must not create a stray
 * bucket. Returns that refusal, saying how to create the bucket, or undefined when the bucket is there.
 */
export async function provideAnalysisBucket(store: ObjectStore, bucket: string): Promise<string | undefined> {
  if (await store.bucketExists(bucket)) return undefined;
  if (store.capabilities.has('buckets-on-demand')) {
    await store.createBucket(bucket);
    return undefined;
  }
  return `analysis bucket ${bucket} does not exist in ${store.url}: create it (${store.createBucketHint(bucket)}) or point the blueprint's bucket at an existing one`;
}
