import type { ObjectStore } from '../backends/storage/index.ts';
import { statusKey } from '../models/bucket-contract.ts';
import type { MetadataRecord } from '../models/record.ts';
import type { StatusFile } from '../models/status.ts';
import type { CertificateNotes } from './certificate-notes.ts';
import type { FolderKeys, SubmittedDataset } from './submission.ts';

/** How one dataset of a submission ended, as its folder answers it. */
export interface DatasetResult {
  /** rejected: not started, for its group's budget or instance_limit. */
  outcome: 'succeeded' | 'failed' | 'answered' | 'rejected';
  reason: string;
  results?: string;
}

/** The analysis bucket the watcher answers in, and the certificate lines it appends there. */
export interface AnswerBucket {
  store: ObjectStore;
  bucket: string;
  notes: CertificateNotes;
}

/**
 * The status file of a dataset no agent ran (answered from a record, or failed before an agent
 * wrote one): clients read every folder's status the same way.
 */
export function watcherStatus(dataset: SubmittedDataset, status: 'SUCCESS' | 'FAILED', reason: string, at = new Date()): StatusFile {
  const now = at.toISOString();
  return {
    status,
    reason,
    input: dataset.dataname,
    instance: 'none: caas watcher',
    command: '',
    job_start: now,
    job_finish: now,
    cpu_usage: null,
    memory_usage: null,
    std: [],
    exit_code: null,
  };
}

export async function writeWatcherStatus(
  where: AnswerBucket,
  folder: FolderKeys,
  dataset: SubmittedDataset,
  status: 'SUCCESS' | 'FAILED',
  reason: string,
): Promise<void> {
  const body = watcherStatus(dataset, status, reason);
  await where.store.put(where.bucket, statusKey(folder.logs, dataset.key), `${JSON.stringify(body, null, 2)}\n`);
}

/** caas-link.json: where the results of the earlier identical job are, and what produced them. */
export function recordLink(record: MetadataRecord) {
  return {
    answered_from: record._id,
    results: record.job?.results ?? null,
    logs: record.job?.logs ?? null,
    analysis: record.analysis,
    code: record.code,
    recorded: record.end ?? record.updated,
  };
}

/** Identical data and config succeeded before: link its results from this folder instead of running. */
export async function answerFromRecord(
  where: AnswerBucket,
  folder: FolderKeys,
  dataset: SubmittedDataset,
  record: MetadataRecord,
): Promise<DatasetResult> {
  const results = record.job?.results ?? '(not recorded)';
  await where.store.put(where.bucket, folder.link, `${JSON.stringify(recordLink(record), null, 2)}\n`);
  await writeWatcherStatus(where, folder, dataset, 'SUCCESS', `answered from record ${record._id}`);
  await where.notes.append(folder, `identical data and config: answered from record ${record._id}, results at ${results}`);
  await where.store.put(where.bucket, folder.end, `SUCCESS\nanswered from record ${record._id}\nresults at ${results}\n`);
  return { outcome: 'answered', reason: `identical data and config: answered from record ${record._id}`, results };
}
