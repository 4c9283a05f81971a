import { tmpdir } from 'node:os';
import path from 'node:path';
import { storeSettingsFromEnv } from '../backends/storage/index.ts';
import { isSubmitKey } from './submission.ts';
import { type SubmissionOutcome, SubmissionWatcher, WatchRefused } from './watch.ts';

/** The part of an S3 event notification the handler reads. */
export interface S3EventLike {
  Records?: {
    eventName?: string;
    /** Who wrote the object, as S3 saw it: "AWS:" and the IAM principal's unique id (user, or role and session). */
    userIdentity?: { principalId?: string };
    s3?: { bucket?: { name?: string }; object?: { key?: string } };
  }[];
}

/**
 * The cloud path: S3 ObjectCreated events (suffix submit.json) for one object each, answered
 * exactly as the poller answers it. Keys arrive URL-encoded with "+" for spaces, as S3 sends them.
 * The event says who wrote the submit file, which a listing does not: here the group's users apply.
 */
export async function handleS3Event(event: S3EventLike, watcher: SubmissionWatcher): Promise<SubmissionOutcome[]> {
  const outcomes: SubmissionOutcome[] = [];
  for (const record of event.Records ?? []) {
    if (!record.eventName?.startsWith('ObjectCreated') || record.s3?.bucket?.name !== watcher.bucket) continue;
    let key: string;
    try {
      key = decodeURIComponent((record.s3.object?.key ?? '').replace(/\+/g, ' '));
    } catch {
      continue;
    }
    const principal = record.userIdentity?.principalId;
    if (isSubmitKey(key)) outcomes.push(await watcher.process(key, principal ? { user: principal, via: 's3-event' } : undefined));
  }
  return outcomes;
}

/**
 * Entry point for a function runtime: settings from the environment (CAAS_STORE default s3://,
 * CAAS_DB required, CAAS_COMPUTE default ec2, CAAS_HOME default /tmp/caas). The bucket is the event's.
 * The call returns when the job is over, so the function's timeout must cover the analysis'
 * max runtime; if it is cut off, the submission's lease runs out and a polling watcher takes over.
 */
export async function handler(event: S3EventLike): Promise<SubmissionOutcome[]> {
  const dbUrl = durableDbUrl(process.env.CAAS_DB);
  const bucket = event.Records?.find((r) => r.s3?.bucket?.name)?.s3?.bucket?.name;
  if (!bucket) return [];
  const watcher = await SubmissionWatcher.open({
    bucket,
    home: process.env.CAAS_HOME ?? '/tmp/caas',
    storeUrl: process.env.CAAS_STORE ?? 's3://',
    dbUrl,
    compute: process.env.CAAS_COMPUTE ?? 'ec2',
    storeSettings: storeSettingsFromEnv(process.env),
    concurrency: 1,
    leaseMs: Number(process.env.CAAS_LEASE_SECONDS ?? 60) * 1000,
    allowDirty: false,
  });
  try {
    return await handleS3Event(event, watcher);
  } finally {
    await watcher.close();
  }
}

/**
 * The event handler's metadata DB, which must be named and durable. A function runtime's /tmp
 * (where CAAS_HOME points by default) lives as long as one execution environment: records written
 * there are lost, and every environment would gate on its own file, so nothing would stop two
 * invocations from running the same identity twice.
 */
export function durableDbUrl(value: string | undefined): string {
  const how =
    'set CAAS_DB to mongodb://user:pass@host/caas (the DB every watcher and `caas run` of this analysis share), ' +
    'or to sqlite:<file> on durable storage such as an EFS mount';
  if (value === undefined || value.trim() === '') {
    throw new WatchRefused(`CAAS_DB is not set: the S3 event handler keeps no records in a throwaway SQLite file under /tmp; ${how}`);
  }
  if (!value.startsWith('sqlite:')) return value;
  const given = value.replace(/^sqlite:(\/\/)?/, '');
  if (given === '') throw new WatchRefused(`CAAS_DB=${value} names no file (it would be under CAAS_HOME, /tmp/caas by default); ${how}`);
  const file = path.resolve(given);
  const temporary = [...new Set(['/tmp', tmpdir()])].find((dir) => file.startsWith(`${dir}${path.sep}`));
  if (temporary) throw new WatchRefused(`CAAS_DB=${value}: ${file} is under ${temporary}, which a function runtime discards; ${how}`);
  return value;
}
