import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { hashObject, type ObjectStore } from '../backends/storage/index.ts';
import type { JobFolder } from '../models/bucket-contract.ts';
import type { ManifestEntry } from '../models/record.ts';
import { forEachAtMost } from './worker-pool.ts';

/**
 * Files uploaded at once. Results folders are mostly many small files, where one request after
 * another leaves the connection idle between round trips; a large file is multipart inside putFile
 * as well, so the worst case holds this many files' part buffers (8 x 4 x 8 MiB on S3).
 */
const FILES_IN_FLIGHT = 8;

export interface UploadFolderOptions {
  /** Files uploaded at once (default 8). */
  concurrency?: number;
  /** Leaves out the files it returns true for, given their path relative to the folder with '/' separators. */
  skip?: (relativePath: string) => boolean;
}

/**
 * Uploads every file under `dir` (recursively) to `prefix` + its relative path, several at once, and
 * returns their manifest entries in key order. Size and sha256 are those of the bytes uploaded, from
 * the same read. When an upload fails this rejects with an error naming the file, but only after the
 * uploads still in flight have settled, so nothing of this folder lands after the caller moves on
 * (the agent writes end.txt next).
 */
export async function uploadFolder(
  store: ObjectStore,
  bucket: string,
  prefix: string,
  dir: string,
  options: UploadFolderOptions = {},
): Promise<ManifestEntry[]> {
  const concurrency = options.concurrency ?? FILES_IN_FLIGHT;
  if (!Number.isInteger(concurrency) || concurrency < 1)
    throw new Error(`upload concurrency must be a whole number >= 1, got ${concurrency}`);
  const files = (await relativeFiles(dir)).filter((relativePath) => !options.skip?.(relativePath));

  const manifest: ManifestEntry[] = [];
  let failure: Error | undefined;
  await forEachAtMost(
    files,
    concurrency,
    async (relativePath) => {
      const key = prefix + relativePath;
      const localPath = path.join(dir, ...relativePath.split('/'));
      try {
        const { size, sha256 } = await store.putFile(bucket, key, localPath);
        manifest.push({ key, size, sha256 });
      } catch (error) {
        failure ??= new Error(`could not upload ${localPath} to ${key} in bucket ${bucket}: ${(error as Error).message}`, { cause: error });
      }
    },
    // Once one upload has failed the result is a rejection anyway; starting more would only add objects.
    () => failure !== undefined,
  );
  if (failure) throw failure;
  return manifest.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** Regular files only, as the agent always uploaded: a symlink or socket in the results is not an output. */
async function relativeFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)).split(path.sep).join('/'));
}

/**
 * The manifest of everything in the job's process_results, not only what the agent uploaded: a
 * NeuroCAAS script syncs its results there itself (`aws s3 sync . "s3://$bucketname/$groupdir/$processdir"`),
 * and those objects are outputs too, hashed here from the store so the runner verifies them like
 * the others. end.txt is left out: it is written after the manifest, and only by the agent.
 */
export async function withObjectsWrittenThere(
  store: ObjectStore,
  bucket: string,
  folder: Pick<JobFolder, 'process' | 'end'>,
  uploaded: ManifestEntry[],
): Promise<ManifestEntry[]> {
  const known = new Set(uploaded.map((entry) => entry.key));
  const found: ManifestEntry[] = [];
  for await (const object of store.list(bucket, folder.process)) {
    if (known.has(object.key) || object.key === folder.end) continue;
    found.push({ key: object.key, ...(await hashObject(store, bucket, object.key)) });
  }
  return [...uploaded, ...found].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}
