import path from 'node:path';

/**
 * A group or timestamp as caas names folders with them: letters, digits, ".", "_" or "-", starting
 * with a letter or digit, so neither can climb ("..") nor hide (".x") nor need quoting in a key.
 */
export const FOLDER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/**
 * The NeuroCAAS bucket contract: where every object of a job lives in the analysis bucket.
 * All keys are relative to the bucket; `group` is the user group folder.
 */
export interface JobFolder {
  /** results/job__{bucket}_{timestamp}, relative to the group folder (the NeuroCAAS `resultdir`). */
  resultdir: string;
  /** {group}/results/job__{bucket}_{timestamp}/ */
  results: string;
  logs: string;
  certificate: string;
  stdout: string;
  stderr: string;
  manifest: string;
  /** logs/submission.json: who answers in this job folder (a watcher, or `caas run` itself). */
  marker: string;
  /** logs/job.json: what the analysis is told about its job ($CAAS_JOB), written by the runner. */
  jobDocument: string;
  process: string;
  end: string;
}

/** The keys of one job folder that do not depend on what the job reads. */
export function jobFolder(bucket: string, group: string, timestamp: string): JobFolder {
  const resultdir = `results/job__${bucket}_${timestamp}`;
  const results = `${group}/${resultdir}/`;
  const logs = `${results}logs/`;
  const process = `${results}process_results/`;
  return {
    resultdir,
    results,
    logs,
    certificate: `${logs}certificate.txt`,
    stdout: `${logs}stdout.txt`,
    stderr: `${logs}stderr.txt`,
    manifest: `${logs}manifest.json`,
    marker: `${logs}submission.json`,
    jobDocument: `${logs}job.json`,
    process,
    end: `${process}end.txt`,
  };
}

export interface JobKeys extends JobFolder {
  groupdir: string;
  submit: string;
  config: string;
  status: string;
  configCopy: string;
}

export function jobKeys(bucket: string, group: string, timestamp: string, dataname: string, configname: string): JobKeys {
  const folder = jobFolder(bucket, group, timestamp);
  return {
    ...folder,
    groupdir: group,
    submit: submitKey(group, timestamp),
    config: `${group}/configs/${configname}`,
    status: statusKey(folder.logs, dataname),
    configCopy: `${folder.process}${path.posix.basename(configname)}`,
  };
}

export function submitKey(group: string, timestamp: string): string {
  return `${group}/submissions/${timestamp}_submit.json`;
}

/** logs/DATASET_NAME-{dataname}_STATUS.json, named after the data set's file name, as in NeuroCAAS. */
export function statusKey(logs: string, dataname: string): string {
  return `${logs}DATASET_NAME-${datasetName(dataname)}_STATUS.json`;
}

export function datasetName(dataname: string): string {
  return path.posix.basename(dataname.replace(/\/+$/, '')) || 'dataset';
}

/** A job folder, named by bucket, group and timestamp. */
export interface JobRef {
  bucket: string;
  group: string;
  timestamp: string;
}

/**
 * `bucket/group/timestamp`, or any URL inside a job folder:
 * `s3://bucket/group/results/job__bucket_timestamp/...` (in any store's scheme).
 */
export function parseJobRef(text: string): JobRef | undefined {
  const url = /^[a-z][a-z0-9+.-]*:\/\/([^/]+)\/([^/]+)\/results\/job__([^/]+)(?:\/.*)?$/.exec(text);
  if (url) {
    const [, bucket = '', group = '', folder = ''] = url;
    if (!folder.startsWith(`${bucket}_`)) return undefined;
    return { bucket, group, timestamp: folder.slice(bucket.length + 1) };
  }
  const parts = /^([a-z0-9][a-z0-9.-]*[a-z0-9])\/([A-Za-z0-9][A-Za-z0-9._-]*)\/([A-Za-z0-9][A-Za-z0-9._~-]*)$/.exec(text);
  if (!parts) return undefined;
  return { bucket: parts[1]!, group: parts[2]!, timestamp: parts[3]! };
}
