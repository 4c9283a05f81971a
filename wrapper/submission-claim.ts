import { getText, type ObjectStore } from '../backends/storage/index.ts';
import type { Owner } from '../models/record.ts';
import { type FolderKeys, parseMarker, type SubmissionMarker, type SubmitRead } from './submission.ts';

export type Claim = { kind: 'won' } | { kind: 'done' } | { kind: 'elsewhere'; until: number } | { kind: 'conflict'; reason: string };

/** The marker this owner claims a submission's job folder with, its lease running from now. */
export function newMarker(read: SubmitRead, owner: Owner, leaseMs: number, now = Date.now()): SubmissionMarker {
  return {
    submit_key: read.key,
    submit_sha256: read.sha256,
    owner,
    claimed: new Date(now).toISOString(),
    lease_expires: new Date(now + leaseMs).toISOString(),
  };
}

/**
 * Why the folder needs nothing more for this submit file, read from its marker alone (no git, no
 * claim): a restarted watcher rereads every submit file, and recognises the settled ones this way.
 */
export async function settledAnswer(store: ObjectStore, bucket: string, folder: FolderKeys, read: SubmitRead): Promise<string | undefined> {
  const existing = parseMarker(await getText(store, bucket, folder.marker));
  if (existing?.written_by !== undefined && existing.submit_key === read.key) return `a job of ${existing.written_by}, not a submission`;
  if (existing?.submit_key === read.key && existing.submit_sha256 === read.sha256 && (await store.head(bucket, folder.end))) {
    return 'already processed';
  }
  return undefined;
}

/**
 * Who answers in this job folder. The marker is written with put-if-absent, so of two watchers
 * (or a watcher and its restarted self) exactly one wins a fresh folder. A marker for the same
 * submit file whose lease ran out belongs to a watcher that died: it is taken over, and the
 * metadata DB's own claim keeps the compute itself exactly-once even if two take it over at once.
 * A folder holding another submission, or files of a job without a marker, is never written to.
 * The marker's owner is the claimant: a live lease of that same run is its own, not another's.
 */
export async function claimJobFolder(
  store: ObjectStore,
  bucket: string,
  folder: FolderKeys,
  marker: SubmissionMarker,
  leaseMs: number,
): Promise<Claim> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const existing = parseMarker(await getText(store, bucket, folder.marker));
    if (existing) {
      if (existing.submit_key !== marker.submit_key) {
        return {
          kind: 'conflict',
          reason: `timestamp ${folder.timestamp} is already used by ${existing.submit_key}: submit again with a new timestamp`,
        };
      }
      if (existing.submit_sha256 !== marker.submit_sha256) {
        return {
          kind: 'conflict',
          reason: `timestamp ${folder.timestamp} was already used by an earlier version of this submit file: submit again with a new timestamp`,
        };
      }
      if (await store.head(bucket, folder.end)) return { kind: 'done' };
      const until = Date.parse(existing.lease_expires);
      if (existing.owner.run !== marker.owner.run && until > Date.now()) return { kind: 'elsewhere', until };
      await writeMarker(store, bucket, folder, marker);
      return { kind: 'won' };
    }
    const other = await firstKey(store, bucket, folder.prefix);
    if (other !== undefined) {
      // Every writer puts the marker first, so objects in the folder may be those of a watcher that
      // claimed it since the marker was read above: only a folder still without one is another job's.
      if ((await getText(store, bucket, folder.marker)) !== undefined) continue;
      return { kind: 'conflict', reason: `timestamp ${folder.timestamp} is already used by another job (${other} exists)` };
    }
    if (await store.putIfAbsent(bucket, folder.marker, `${JSON.stringify(marker, null, 2)}\n`)) return { kind: 'won' };
  }
  return { kind: 'elsewhere', until: Date.now() + leaseMs };
}

/** Renews the marker's lease while its owner works on the submission. */
export function keepMarker(store: ObjectStore, bucket: string, folder: FolderKeys, marker: SubmissionMarker, leaseMs: number) {
  const timer = setInterval(
    () => {
      // Once end.txt is there no watcher touches the folder again, and nothing is written after it.
      const renew = async () => {
        if (await store.head(bucket, folder.end)) return clearInterval(timer);
        await writeMarker(store, bucket, folder, { ...marker, lease_expires: new Date(Date.now() + leaseMs).toISOString() });
      };
      void renew().catch(() => {});
    },
    Math.max(50, Math.floor(leaseMs / 3)),
  );
  return { stop: () => clearInterval(timer) };
}

async function firstKey(store: ObjectStore, bucket: string, prefix: string): Promise<string | undefined> {
  for await (const info of store.list(bucket, prefix)) return info.key;
  return undefined;
}

function writeMarker(store: ObjectStore, bucket: string, folder: FolderKeys, marker: SubmissionMarker): Promise<void> {
  return store.put(bucket, folder.marker, `${JSON.stringify(marker, null, 2)}\n`);
}
