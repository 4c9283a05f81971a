import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { etagOfFile, type ObjectStore, objectUrl } from '../backends/storage/index.ts';
import { submitKey, timestampProblem } from '../models/bucket-contract.ts';
import { CaasError } from '../models/caas-error.ts';
import type { SubmitFile } from '../models/submit.ts';
import { sha256Hex } from './identity.ts';
import { confineKey, folderKeys, isGroupName } from './submission.ts';

/** The client side (`caas submit`): refused before anything is written. */
export class SubmitRefused extends CaasError {}

export interface ClientSubmission {
  bucket: string;
  group: string;
  /** Local data files, uploaded to {group}/inputs/. */
  data: string[];
  /** Local config file, uploaded to {group}/configs/. */
  config: string;
  timestamp?: string;
  instanceType?: string;
}

export interface Submitted {
  key: string;
  sha256: string;
  timestamp: string;
  submit: SubmitFile;
  /** URL of the job folder the answer will be in. */
  folder: string;
}

/**
 * Uploads the data and the config (skipping files already there with the same content, which keeps
 * their etags, hence identities, unchanged), then writes the submit file last, put-if-absent: the
 * watcher reacts to the submit file, so everything it names exists by then.
 */
export async function submitFiles(store: ObjectStore, request: ClientSubmission, out: (line: string) => void): Promise<Submitted> {
  const { bucket, group } = request;
  if (!isGroupName(group)) throw new SubmitRefused(`--group "${group}" is not a group name: letters, digits, ".", "_" or "-"`);
  if (!(await store.bucketExists(bucket))) {
    const how = store.capabilities.has('buckets-on-demand')
      ? `\`caas watch --bucket ${bucket}\` creates it`
      : `it is created with the analysis: ${store.createBucketHint(bucket)}, then \`caas watch --bucket ${bucket}\``;
    throw new SubmitRefused(`bucket ${bucket} does not exist: is the analysis deployed? (${how})`);
  }
  const timestamp = request.timestamp ?? newTimestamp();
  const problem = timestampProblem(timestamp);
  if (problem !== undefined) throw new SubmitRefused(`--timestamp ${JSON.stringify(timestamp)}: ${problem}`);
  const key = submitKey(group, timestamp);
  const folder = folderKeys(bucket, group, timestamp);
  if (await store.head(bucket, key)) throw new SubmitRefused(`${key} already exists: pick another --timestamp (or leave it out)`);
  for await (const used of store.list(bucket, folder.prefix)) {
    throw new SubmitRefused(`timestamp ${timestamp} is already used (${used.key} exists): pick another --timestamp (or leave it out)`);
  }
  const upload = async (file: string, area: 'inputs' | 'configs') => {
    const name = path.basename(file);
    const confined = confineKey(name, { bucket, group, area });
    if (!confined.ok) throw new SubmitRefused(`${file}: the file name ${confined.reason}; rename it`);
    const local = await etagOfFile(file).catch((error: Error) => {
      throw new SubmitRefused(`${file}: ${error.message}`);
    });
    const there = await store.head(bucket, confined.key);
    if (there?.etag === local) out(`${confined.key} is already there (same content)`);
    else {
      await store.putFile(bucket, confined.key, file);
      out(`uploaded ${file} to ${objectUrl(store.scheme, bucket, confined.key)}`);
    }
    return confined.key;
  };
  const datanames: string[] = [];
  for (const file of request.data) datanames.push(await upload(file, 'inputs'));
  const configname = await upload(request.config, 'configs');
  const submit: SubmitFile = {
    dataname: datanames.length === 1 ? datanames[0]! : datanames,
    configname,
    timestamp,
    ...(request.instanceType ? { instance_type: request.instanceType } : {}),
  };
  const body = `${JSON.stringify(submit, null, 2)}\n`;
  if (!(await store.putIfAbsent(bucket, key, body)))
    throw new SubmitRefused(`${key} appeared meanwhile: submit again with another --timestamp`);
  out(`submitted ${objectUrl(store.scheme, bucket, key)}`);
  return { key, sha256: sha256Hex(body), timestamp, submit, folder: objectUrl(store.scheme, bucket, folder.prefix) };
}

/** Sortable, unique enough for one user: 20240131T235959123Z-1a2b. */
function newTimestamp(): string {
  const at = new Date().toISOString().replace(/[-:]/g, '').replace('.', '');
  return `${at}-${randomBytes(2).toString('hex')}`;
}
