import path from 'node:path';
import { openDatabase } from '../backends/db/index.ts';
import { openStore, parseObjectUrl } from '../backends/storage/index.ts';
import { CaasError } from '../models/caas-error.ts';
import type { JobLocation, MetadataRecord } from '../models/record.ts';
import { shellQuote } from './shell-quote.ts';
import type { Workspace } from './workspace.ts';

export interface ResultsPlace {
  results: string;
  logs: string;
  /** Local folders, for results in a file store. */
  localResults?: string;
  localLogs?: string;
  /** A shell command that copies the results to ./results. */
  fetch: string;
}

/**
 * Where a job's results and logs are and how to copy them here. A file store's URLs name a bucket
 * and key but not the store's root folder, which only the caller knows (its --store or {home}/buckets).
 */
export function resultsPlace(job: JobLocation, options: { fileRoot?: string; s3Endpoint?: string }): ResultsPlace {
  const results = parseObjectUrl(job.results);
  if (results.scheme === 's3') {
    const endpoint = options.s3Endpoint ? ` --endpoint-url ${shellQuote(options.s3Endpoint)}` : '';
    return { results: job.results, logs: job.logs, fetch: `aws s3 cp --recursive${endpoint} ${shellQuote(job.results)} ./results` };
  }
  const local = (url: string) => {
    const parsed = parseObjectUrl(url);
    return parsed.bucket === '' ? parsed.key : path.join(options.fileRoot ?? '', parsed.bucket, parsed.key);
  };
  const localResults = local(job.results);
  return {
    results: job.results,
    logs: job.logs,
    localResults,
    localLogs: local(job.logs),
    fetch: `cp -R ${shellQuote(localResults.replace(/\/$/, ''))} ./results`,
  };
}

/** No record, or more than one, for what the user typed: invalid input. */
export class RecordLookupError extends CaasError {}

const CANDIDATES = 10;

/**
 * The one record an identity or unique prefix names, and where its results are. An ambiguous prefix
 * lists the identities it starts, so the user can give more digits.
 */
export async function recordByPrefix(given: string, workspace: Workspace): Promise<{ record: MetadataRecord; place?: ResultsPlace }> {
  const prefix = given.trim().toLowerCase();
  if (!/^[0-9a-f]{1,64}$/.test(prefix))
    throw new RecordLookupError(`"${given}" is not an identity: expected hex digits (an identity or its prefix)`);
  const db = await openDatabase(workspace.dbUrl, { home: workspace.home, readOnly: true });
  let record: MetadataRecord | undefined;
  try {
    const ids = await db.idsWithPrefix(prefix, CANDIDATES + 1);
    if (ids.length === 0) throw new RecordLookupError(`no record has an identity starting with ${prefix} (caas query lists the records)`);
    if (ids.length > 1) {
      const listed = ids.slice(0, CANDIDATES).map((id) => `  ${id}`);
      if (ids.length > CANDIDATES) listed.push('  ...');
      throw new RecordLookupError(`${prefix} is ambiguous; it starts these identities, so give more digits:\n${listed.join('\n')}`);
    }
    record = await db.get(ids[0]!);
  } finally {
    await db.close();
  }
  if (!record) throw new RecordLookupError(`record ${prefix} disappeared while reading it`);
  if (!record.job) return { record };
  // file:// results name a bucket and key; the folder holding the buckets is the --store folder, or {home}/buckets.
  const store = await openStore(workspace.storeUrl.startsWith('file:') ? workspace.storeUrl : 'file:', { home: workspace.home });
  try {
    return { record, place: resultsPlace(record.job, { fileRoot: store.root, s3Endpoint: workspace.s3Endpoint }) };
  } finally {
    await store.close();
  }
}
