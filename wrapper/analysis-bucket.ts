import type { ObjectStore } from '../backends/storage/index.ts';

/**
 * Makes sure an analysis bucket exists before anything is written to it, for `caas run` and
 * `caas watch` alike. A folder bucket is just made. A missing S3 bucket is not: it is provisioned
 * with the analysis (as NeuroCAAS stacks are), with the region and policies its deployment chose,
 * and a typo in a bucket name must not create a stray bucket. Returns that refusal, saying how to
 * create the bucket, or undefined when the bucket is there.
 */
export async function provideAnalysisBucket(store: ObjectStore, bucket: string): Promise<string | undefined> {
  if (await store.bucketExists(bucket)) return undefined;
  if (store.scheme === 'file') {
    await store.createBucket(bucket);
    return undefined;
  }
  return `analysis bucket ${bucket} does not exist in ${store.url}: create it (aws s3 mb s3://${bucket}) or point the blueprint's bucket at an existing one`;
}
