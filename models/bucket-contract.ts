import path from 'node:path';

/**
 * A group as caas names folders with it: letters, digits, ".", "_" or "-", starting with a letter
 * or digit, so it can neither climb ("..") nor hide (".x") nor need quoting in a key. A group is a
 * whole path segment; a submitted timestamp is only the tail of one and is checked by
 * `timestampProblem` instead.
 */
export const FOLDER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/**
 * A submitted timestamp's longest form in bytes (UTF-8): the longest name it becomes,
 * `job__{bucket}_{timestamp}~{n}` with a 63-byte bucket, stays far below the 255 bytes Linux allows
 * a file name (the file store keeps keys as files).
 */
export const MAX_TIMESTAMP_BYTES = 100;

/**
 * "~" marks the folders caas makes for the datasets of one submission, `job__{bucket}_{timestamp}~{n}`:
 * a submitted timestamp never holds one, so those folders cannot belong to another submission.
 */
export const DATASET_FOLDER_MARK = '~';

// C0 and C1 controls, DEL, and the Unicode line and paragraph separators: each can end a log line or a listing entry.
// biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
const LINE_BREAKING = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * Why a timestamp from a submit file (or `caas submit --timestamp`) cannot name its job folder,
 * `{group}/results/job__{bucket}_{timestamp}/`, or undefined when it can. NeuroCAAS clients write
 * free text there (`23:05:47.219155condition_0_2`), and the answer must land in exactly that
 * folder, so only what could leave the folder or break its name is refused, never rewritten: a
 * path separator, "..", control characters, "~" (see DATASET_FOLDER_MARK), text that is not
 * Unicode (a lone surrogate has no UTF-8 form, so no key), and more than MAX_TIMESTAMP_BYTES. The
 * timestamp never starts a path segment of a job folder, so a leading "." hides nothing there.
 */
export function timestampProblem(timestamp: string): string | undefined {
  const expected = 'expected text that names the results folder job__{bucket}_{timestamp}/';
  if (timestamp === '') return `empty: ${expected}`;
  if (/[/\\]/.test(timestamp))
    return `"/" and "\\" are path separators that would put the answer outside its job folder: ${expected} without them`;
  if (LINE_BREAKING.test(timestamp)) return `control characters (NUL, newline, ...) are not allowed: ${expected} on one line`;
  if (timestamp.includes('..')) return `".." is not allowed: ${expected} without ".."`;
  if (timestamp.includes(DATASET_FOLDER_MARK)) {
    return `"~" is reserved for the folders of a submission's datasets (job__{bucket}_{timestamp}~1/, ...): ${expected} without "~"`;
  }
  if (LONE_SURROGATE.test(timestamp)) return `a lone surrogate is not Unicode text: ${expected}`;
  const bytes = Buffer.byteLength(timestamp, 'utf8');
  if (bytes > MAX_TIMESTAMP_BYTES) return `${bytes} bytes long: expected at most ${MAX_TIMESTAMP_BYTES} bytes (UTF-8)`;
  return undefined;
}

/** A job folder's timestamp: a submitted one, or one of its dataset folders (`{timestamp}~{n}`). */
export function isJobFolderTimestamp(timestamp: string): boolean {
  return timestampProblem(timestamp.replace(/~[1-9][0-9]*$/, '')) === undefined;
}

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
    const timestamp = folder.slice(bucket.length + 1);
    return isJobFolderTimestamp(timestamp) ? { bucket, group, timestamp } : undefined;
  }
  // The timestamp is the rest of the text, whatever it holds (a NeuroCAAS one has ":" and "."), up to what no job folder can have.
  const parts = /^([a-z0-9][a-z0-9.-]*[a-z0-9])\/([A-Za-z0-9][A-Za-z0-9._-]*)\/([^/]+)$/.exec(text);
  if (!parts || !isJobFolderTimestamp(parts[3]!)) return undefined;
  return { bucket: parts[1]!, group: parts[2]!, timestamp: parts[3]! };
}
