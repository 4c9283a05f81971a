import { openDatabase } from '../backends/db/index.ts';
import { ObjectLocator, openStore } from '../backends/storage/index.ts';
import { CaasError } from '../models/caas-error.ts';
import type { JobLocation, MetadataRecord } from '../models/record.ts';
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
 * Where a job's results and logs are and how to copy them here, asked of the store each URL is in.
 * A file store's URLs name a bucket and key but not the store's root folder, which only the caller
 * knows (its --store or {home}/buckets): the locator's primary store is that one.
 */
export async function resultsPlace(job: JobLocation, locator: ObjectLocator): Promise<ResultsPlace> {
  const results = await locator.locate(job.results);
  const logs = await locator.locate(job.logs);
  // A folder URL stays one: path.join would drop its trailing "/".
  const local = (at: typeof results) => at.store.localPath && `${at.store.localPath(at.bucket, at.key)}${at.key.endsWith('/') ? '/' : ''}`;
  const localResults = local(results);
  const localLogs = local(logs);
  return {
    results: job.results,
    logs: job.logs,
    ...(localResults && localLogs ? { localResults, localLogs } : {}),
    fetch: results.store.copyCommand(results.bucket, results.key, './results'),
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
  const options = { home: workspace.home, settings: workspace.storeSettings };
  const store = await openStore(workspace.storeUrl, options);
  const locator = new ObjectLocator(store, options);
  try {
    return { record, place: await resultsPlace(record.job, locator) };
  } finally {
    await locator.close();
    await store.close();
  }
}
