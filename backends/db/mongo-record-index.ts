import { type Collection, type Document, type IndexDescription, type Filter as MongoFilter, MongoServerError, type Sort } from 'mongodb';
import type { MetadataRecord } from '../../models/record.ts';
import type { QueryExplanation, QueryOptions } from './index.ts';
import { INDEXED_PATHS, PARAMETERS_ROOT } from './record-index.ts';

/**
 * The same paths the SQLite store indexes, one single-field index each: a compound or a second
 * array field in one index is what MongoDB (and DocumentDB) refuse for multikey paths such as
 * `inputs.files.url`, and single fields keep the count (16 with `_id`) far below DocumentDB's 64.
 */
const RECORD_INDEXES: IndexDescription[] = INDEXED_PATHS.map((path) => ({ key: { [path]: 1 } }));

/**
 * Every parameter, whatever the analysis, as SQLite's entry table has it: a wildcard index. AWS
 * DocumentDB has no wildcard indexes (nor does the wire stand-in the tests may use): there the
 * index is left out, and a filter on parameters is answered by a collection scan, as `--explain`
 * then says. An analysis' own parameter fields could be indexed one by one instead, at the cost of
 * an index build per new analysis; we chose not to build indexes behind the user's back.
 */
const PARAMETERS_INDEX: IndexDescription = { key: { [`${PARAMETERS_ROOT}.$**`]: 1 }, name: 'parameters_wildcard' };

/** Creates the record indexes; idempotent (an index that exists with the same keys is left as it is). */
export async function createRecordIndexes(records: Collection<MetadataRecord>): Promise<{ parameters: boolean }> {
  await records.createIndexes(RECORD_INDEXES);
  try {
    await records.createIndexes([PARAMETERS_INDEX]);
    return { parameters: true };
  } catch (error) {
    // DocumentDB (or another server without wildcard indexes) refuses it: parameters are then not
    // indexed. A network or driver failure is not a refusal: it is reported as it is.
    if (error instanceof MongoServerError) return { parameters: false };
    throw error;
  }
}

/** What the server says of a find: the indexes its winning plan used and the documents it examined. */
export async function explainFind(records: Collection<MetadataRecord>, filter: Document, options: QueryOptions): Promise<QueryExplanation> {
  const cursor = records.find(filter as MongoFilter<MetadataRecord>);
  if (options.sort) cursor.sort(options.sort as Sort);
  if (options.limit !== undefined) cursor.limit(options.limit);
  try {
    const explained = (await cursor.explain('executionStats')) as Document;
    const winning = explained.queryPlanner?.winningPlan;
    const indexes = [...new Set(indexNames(winning))];
    const stats = explained.executionStats ?? {};
    return {
      store: 'mongodb',
      indexes,
      plan:
        indexes.length > 0
          ? `server plan: ${stages(winning).join(' <- ')}`
          : `server plan: ${stages(winning).join(' <- ') || 'unknown'} (no index)`,
      documentsRead: Number(stats.totalDocsExamined ?? 0),
      returned: Number(stats.nReturned ?? 0),
      ...(stats.totalKeysExamined !== undefined ? { candidates: Number(stats.totalKeysExamined) } : {}),
    };
  } catch (error) {
    return {
      store: 'mongodb',
      indexes: [],
      plan: `the server did not explain the query: ${(error as Error).message}`,
      documentsRead: 0,
      returned: 0,
    };
  }
}

function indexNames(stage: Document | undefined): string[] {
  if (!stage || typeof stage !== 'object') return [];
  const own = typeof stage.indexName === 'string' ? [stage.indexName as string] : [];
  const children = [stage.inputStage, ...(Array.isArray(stage.inputStages) ? stage.inputStages : [])].flatMap((s) => indexNames(s));
  return [...own, ...children];
}

function stages(stage: Document | undefined): string[] {
  if (!stage || typeof stage !== 'object' || typeof stage.stage !== 'string') return [];
  return [stage.stage as string, ...stages(stage.inputStage)];
}
