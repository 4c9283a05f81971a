import type { Command } from 'commander';
import { generateSampleCatalog, importCatalog, queryCatalog } from '../../dispatcher/catalog.ts';
import { parseFilter } from '../../wrapper/record-query.ts';
import { catalogOption, positiveInt, settingsOf } from '../settings.ts';
import { formatTable } from '../table.ts';

/** A table is laid out in memory, so it stops at this many rows unless --limit says otherwise. */
const TABLE_LIMIT = 100;

export function registerCatalog(program: Command): void {
  const catalog = program
    .command('catalog')
    .description('The data-asset catalog (data_assets in the metadata DB) that caas dispatch --query searches')
    .addHelpText(
      'after',
      `
Examples:
  $ caas catalog generate-sample               # the demo's spike trains, in the store and the catalog
  $ caas catalog import assets.jsonl           # AIND-shaped documents, one per line
  $ caas catalog query '{"subject.subject_id":"774659"}'   # the assets a dispatch --query would read`,
    );

  catalog
    .command('query')
    .description('List the catalog documents a MongoDB filter matches: the assets `caas dispatch --query` would read')
    .argument('[filter]', 'MongoDB filter as JSON, e.g. \'{"subject.subject_id":"774659"}\' (default: every document)')
    .addOption(catalogOption())
    .option('--limit <n>', `at most this many documents (table default: ${TABLE_LIMIT})`, (v) => positiveInt(v, '--limit', 0))
    .option('--json', 'one whole document per line, in catalog order', false)
    .addHelpText(
      'after',
      `
Examples:
  $ caas catalog query '{"subject.subject_id":"774659"}'
  $ caas catalog query '{"data_description.modality.abbreviation":{"$in":["ecephys"]}}' --json | jq -r .location
  $ caas catalog query --catalog mongodb://docdb.example.org/metadata_index.data_assets '{"subject.subject_id":"774659"}'

Exit codes: 0 (also when nothing matches), 2 invalid filter or flag.`,
    )
    .action(async (filterText: string | undefined, options, command: Command) => {
      const filter = parseFilter(filterText ?? '{}');
      const json = Boolean(options.json);
      const limit: number | undefined = options.limit ?? (json ? undefined : TABLE_LIMIT);
      // One more than the limit tells the table whether documents were left out.
      const documents = queryCatalog(
        { ...settingsOf(command), catalogUrl: options.catalog },
        filter,
        json || limit === undefined ? limit : limit + 1,
      );
      if (json) {
        for await (const doc of documents) process.stdout.write(`${JSON.stringify(doc)}\n`);
        return;
      }
      const rows: string[][] = [];
      for await (const doc of documents) rows.push([String(doc._id), String(doc.name), String(doc.location)]);
      if (rows.length === 0) {
        process.stderr.write(`no catalog documents match ${JSON.stringify(filter)}\n`);
        return;
      }
      const shown = limit !== undefined ? rows.slice(0, limit) : rows;
      process.stdout.write(`${formatTable(['ID', 'NAME', 'LOCATION'], shown)}\n`);
      if (shown.length < rows.length && options.limit === undefined)
        process.stderr.write(`(first ${shown.length} documents; --limit <n> shows more, --json streams all)\n`);
    });

  catalog
    .command('import')
    .description('Load AIND-shaped asset documents (_id, name, location, ...) from JSONL; an existing _id is replaced')
    .argument('<jsonl>', 'JSONL file of asset documents, or - for stdin')
    .addHelpText(
      'after',
      `
Examples:
  $ caas catalog import assets.jsonl
  $ mongoexport --collection data_assets ... | caas catalog import -`,
    )
    .action(async (source: string, _options, command: Command) => {
      const count = await importCatalog(settingsOf(command), source);
      process.stdout.write(`imported ${count} asset${count === 1 ? '' : 's'}\n`);
    });

  catalog
    .command('generate-sample')
    .description('Write the deterministic demo assets (spike trains) to the object store and import them into the catalog')
    .option('--subjects <ids...>', 'subject ids', ['774659', '774660'])
    .option('--sessions <n>', 'sessions per subject', (v) => positiveInt(v, '--sessions'), 3)
    .option('--units <n>', 'units per session', (v) => positiveInt(v, '--units'), 12)
    .option('--seed <n>', 'seed of the simulated spikes (same seed, same bytes)', (v) => positiveInt(v, '--seed'), 1)
    .option('--bucket <name>', 'bucket the assets are written to', 'sample-data')
    .addHelpText(
      'after',
      `
Examples:
  $ caas catalog generate-sample
  $ caas catalog generate-sample --subjects 774659 774660 774661 --sessions 5
  $ caas dispatch --query '{"subject.subject_id":"774659"}' --analysis unit-filter --file-ext .spikes.json`,
    )
    .action(async (options, command: Command) => {
      const result = await generateSampleCatalog(settingsOf(command), {
        subjects: options.subjects,
        sessionsPerSubject: options.sessions,
        unitsPerSession: options.units,
        seed: options.seed,
        bucket: options.bucket,
      });
      process.stdout.write(
        `imported ${result.count} sample assets into ${result.dbUrl} (data in bucket ${result.bucket} of ${result.storeUrl})\n`,
      );
    });
}
