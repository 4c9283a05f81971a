import path from 'node:path';

/**
 * The NeuroCAAS bucket contract: where every object of a job lives in the analysis bucket.
 * All keys are relative to the bucket; `group` is the user group folder.
 */
export interface JobKeys {
  groupdir: string;
  /** results/job__{bucket}_{timestamp}, relative to the group folder (the NeuroCAAS `resultdir`). */
  resultdir: string;
  submit: string;
  config: string;
  results: string;
  logs: string;
  certificate: string;
  status: string;
  stdout: string;
  stderr: string;
  manifest: string;
  /** logs/submission.json: who answers in this job folder (a watcher, or `caas run` itself). */
  marker: string;
  process: string;
  configCopy: string;
  end: string;
}

export function jobKeys(bucket: string, group: string, timestamp: string, dataname: string, configname: string): JobKeys {
  const resultdir = `results/job__${bucket}_${timestamp}`;
  const results = `${group}/${resultdir}/`;
  const logs = `${results}logs/`;
  const process = `${results}process_results/`;
  return {
    groupdir: group,
    resultdir,
    submit: submitKey(group, timestamp),
    config: `${group}/configs/${configname}`,
    results,
    logs,
    certificate: `${logs}certificate.txt`,
    status: `${logs}DATASET_NAME-${datasetName(dataname)}_STATUS.json`,
    stdout: `${logs}stdout.txt`,
    stderr: `${logs}stderr.txt`,
    manifest: `${logs}manifest.json`,
    marker: `${logs}submission.json`,
    process,
    configCopy: `${process}${path.posix.basename(configname)}`,
    end: `${process}end.txt`,
  };
}

export function submitKey(group: string, timestamp: string): string {
  return `${group}/submissions/${timestamp}_submit.json`;
}

/** The status file is named after the data set's file name, as in NeuroCAAS. */
export function datasetName(dataname: string): string {
  return path.posix.basename(dataname.replace(/\/+$/, '')) || 'dataset';
}
