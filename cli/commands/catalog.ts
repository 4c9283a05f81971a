import type { Command } from 'commander';
import { generateSampleCatalog, importCatalog } from '../../dispatcher/catalog.ts';
import { positiveInt, settingsOf } from '../settings.ts';

export function registerCatalog(program: Command): void {
  const catalog = program
    .command('catalog')
    .description('The data-asset catalog (data_assets in the metadata DB) that caas dispatch --query searches')
    .addHelpText(
      'after',
      `
Examples:
  $ caas catalog generate-sample               # the demo's spike trains, in the store and the catalog
  $ caas catalog import assets.jsonl           # AIND-shaped documents, one per line`,
    );

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
