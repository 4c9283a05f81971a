import type { Command } from 'commander';
import { openDatabase, type QueryExplanation } from '../../backends/db/index.ts';
import type { MetadataRecord } from '../../models/record.ts';
import { project, valuesAt } from '../../wrapper/projection.ts';
import { buildFilter, parseFields, parseFilter, parseSort } from '../../wrapper/record-query.ts';
import { positiveInt, settingsOf } from '../settings.ts';
import { formatTable, shortId, truncate } from '../table.ts';

/** A table is laid out in memory, so it stops at this many rows unless --limit says otherwise. */
const TABLE_LIMIT = 100;
const PARAMETERS_WIDTH = 40;

export function registerQuery(program: Command): void {
  program
    .command('query')
    .description('List the records that match a MongoDB filter (the same filter language on SQLite and MongoDB)')
    .argument('[filter]', 'MongoDB filter as JSON, e.g. \'{"status":"failed"}\' (default: every record)')
    .option('--analysis <name>', 'records of this analysis')
    .option('--input <asset>', 'records that read this asset (asset id, asset name, location or file URL)')
    .option('--commit <sha>', 'records made by this analysis commit (a prefix of 4+ hex digits is enough)')
    .option('--status <status>', 'claimed, running, succeeded or failed (comma-separated for several)')
    .option('--since <when>', 'records created since an ISO date or a span back from now (30m, 12h, 7d, 2w)')
    .option('--sort <keys>', 'sort keys: field, -field, field:1 or field:-1, comma-separated (table default: -created)')
    .option('--limit <n>', `at most this many records (table default: ${TABLE_LIMIT})`, (v) => positiveInt(v, '--limit', 0))
    .option('--fields <paths>', 'dotted paths to show instead of the default columns, e.g. status,parameters.wait,code.commit')
    .option('--json', 'one JSON record per line (the whole record, or the --fields projection plus _id)', false)
    .option('--explain', 'after the records, say on stderr which index answered and how many documents were read', false)
    .addHelpText(
      'after',
      `
Examples:
  $ caas query '{"status":"failed"}'
  $ caas query --analysis unit-filter --since 7d
  $ caas query '{"parameters.isi_violations_cutoff":{"$lt":0.5}}' --sort -end --limit 10
  $ caas query --input ecephys_774659_2025-01-01_00-00-00 --fields status,parameters,code.commit
  $ caas query --commit 3f2a9c1 --json | jq -r ._id
  $ caas query --input ecephys_774659_2025-01-01_00-00-00 --explain

Default columns: identity (first 12 hex digits), status, analysis, inputs, parameters, commit, end.
JSON lines stream in store order unless --sort is given.
Exit codes: 0 (also when nothing matches), 2 invalid filter or flag.`,
    )
    .action(async (filterText: string | undefined, options, command: Command) => {
      const settings = settingsOf(command);
      const json = Boolean(options.json);
      const filter = buildFilter(parseFilter(filterText ?? '{}'), {
        analysis: options.analysis,
        input: options.input,
        commit: options.commit,
        status: options.status,
        since: options.since,
      });
      const sort: Record<string, 1 | -1> | undefined = options.sort ? parseSort(options.sort) : json ? undefined : { created: -1 };
      const fields = options.fields ? parseFields(options.fields) : undefined;
      const limit: number | undefined = options.limit ?? (json ? undefined : TABLE_LIMIT);
      const db = await openDatabase(settings.dbUrl, { home: settings.home, readOnly: true });
      try {
        const out = (line: string) => process.stdout.write(`${line}\n`);
        // One more than the limit tells the table whether records were left out.
        const explain = options.explain ? (e: QueryExplanation) => process.stderr.write(explanationText(e)) : undefined;
        const records = db.find(filter, { sort, limit: json || limit === undefined ? limit : limit + 1, explain });
        if (json) {
          for await (const record of records) out(JSON.stringify(fields ? project(record, fields) : record));
          return;
        }
        const rows: MetadataRecord[] = [];
        for await (const record of records) rows.push(record);
        if (rows.length === 0) {
          process.stderr.write(`no records match ${JSON.stringify(filter)}\n`);
          return;
        }
        const shown = limit !== undefined ? rows.slice(0, limit) : rows;
        out(
          fields
            ? formatTable(
                fields,
                shown.map((r) => fields.map((f) => cell(valuesAt(r, f)))),
              )
            : defaultTable(shown),
        );
        if (shown.length < rows.length && options.limit === undefined)
          process.stderr.write(`(first ${shown.length} records; --limit <n> shows more, --json streams all)\n`);
      } finally {
        await db.close();
      }
    });
}

function explanationText(e: QueryExplanation): string {
  return [
    `explain: ${e.store}, ${e.plan}`,
    `  indexes: ${e.indexes.length > 0 ? e.indexes.join(', ') : 'none (full scan)'}`,
    ...(e.sort ? [`  sort: ${e.sort}`] : []),
    `  documents read: ${e.documentsRead}${e.candidates !== undefined ? ` (of ${e.candidates} candidates from the index)` : ''}, returned: ${e.returned}`,
    '',
  ].join('\n');
}

function defaultTable(records: MetadataRecord[]): string {
  const keyParameters = varyingParameters(records);
  const rows = records.map((r) => [
    shortId(r._id),
    r.status,
    r.analysis.name,
    r.inputs.map((i) => i.name).join('+'),
    truncate(
      Object.entries(r.parameters)
        .filter(([k]) => keyParameters.get(r.analysis.name)?.has(k) ?? true)
        .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
        .join(','),
      PARAMETERS_WIDTH,
    ),
    r.code.commit.slice(0, 8) + (r.code.dirty ? '+dirty' : ''),
    r.end ? r.end.replace(/\.\d+Z$/, 'Z') : '-',
  ]);
  return formatTable(['IDENTITY', 'STATUS', 'ANALYSIS', 'INPUTS', 'PARAMETERS', 'COMMIT', 'END'], rows);
}

/**
 * The key parameters of each analysis in the listing: those whose values differ between its records.
 * A sweep then shows what was swept rather than the constants; an analysis whose records agree on
 * every parameter has no entry, and all of its parameters are shown.
 */
function varyingParameters(records: MetadataRecord[]): Map<string, Set<string>> {
  const seen = new Map<string, Map<string, Set<string>>>();
  for (const r of records) {
    const values = seen.get(r.analysis.name) ?? new Map<string, Set<string>>();
    seen.set(r.analysis.name, values);
    const keys = new Set([...values.keys(), ...Object.keys(r.parameters)]);
    for (const key of keys) {
      const set = values.get(key) ?? new Set<string>();
      set.add(key in r.parameters ? JSON.stringify(r.parameters[key]) : '(absent)');
      values.set(key, set);
    }
  }
  const varying = new Map<string, Set<string>>();
  for (const [analysis, values] of seen) {
    const keys = [...values].filter(([, v]) => v.size > 1).map(([k]) => k);
    if (keys.length > 0) varying.set(analysis, new Set(keys));
  }
  return varying;
}

function cell(values: unknown[]): string {
  if (values.length === 0) return '-';
  return values.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))).join(',');
}
