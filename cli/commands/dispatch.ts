import { type Command, Option } from 'commander';
import { runDispatch, summaryLine } from '../../dispatcher/dispatch.ts';
import { DispatchProgress } from '../progress.ts';
import { catalogOption, positiveInt, settingsOf } from '../settings.ts';

export function registerDispatch(program: Command): void {
  program
    .command('dispatch')
    .description('Turn a dataset query (catalog filter, CSV of asset ids or object prefix) into job inputs, one JSON line per job')
    .option('--query <json|file>', 'MongoDB filter over the data-asset catalog, as JSON or a file holding it')
    .option('--assets-csv <file>', 'CSV with an asset_id column; the assets are looked up in the catalog')
    .option('--s3-prefix <url>', 'list s3://bucket/prefix/ (or file:///folder/) directly: each folder under it is an asset')
    .addOption(catalogOption())
    .requiredOption('--analysis <name>', 'the analysis the jobs run; its parameter model checks every parameter set')
    .option('--file-ext <ext>', "list each asset's files ending in <ext> (etag and size enter the identity)")
    .option('--split-files', 'one job per matched file (the default with --file-ext)')
    .option('--no-split-files', "all of an asset's matched files in one job")
    .option('--group-by <fields...>', 'one job per group of assets with equal values of these fields (values in group_metadata)')
    .option('--no-drop-null-groups', 'keep assets whose group fields are missing or null, as a group of their own')
    .option('--filter-latest <field>', 'keep only the asset with the greatest <field> in each group (--filter-by, else --group-by)')
    .option('--filter-by <fields...>', 'the fields whose groups --filter-latest keeps one asset of')
    .option('--unwind <fields...>', 'expand array fields before grouping: one copy of the asset per element')
    .option('--params <file>', 'analysis_parameters.json (or .yaml/.yml): fixed_parameters, distributed_parameters (jobs x sets)')
    .option('--max-jobs <n>', 'stop after n jobs', (v) => positiveInt(v, '--max-jobs'))
    .option('--group <name>', 'NeuroCAAS user group of the jobs', 'caas')
    .option('--dispatched-at <iso>', 'time recorded in provenance (default: now); fix it for byte-identical output')
    .option('--skip-done', 'drop jobs whose identity already succeeded (needs the analysis committed in git)', false)
    .option(
      '--allow-dirty',
      "with --skip-done: identities of an analysis folder's uncommitted state, as caas run --allow-dirty computes them",
      false,
    )
    .option('--quiet', 'no progress line and no warnings; only the final count on stderr', false)
    .option('-o, --output <file|dir>', 'write here instead of stdout (atomically: nothing appears unless the dispatch succeeds)')
    .addOption(
      new Option(
        '--format <format>',
        'jsonl; dir: one JSON file per job in the -o folder; aind: AIND dispatch models in the -o folder, as aind-analysis-job-dispatch lays them out (0/, 1/, ...); aind-jsonl: one AIND dispatch model per line',
      )
        .choices(['jsonl', 'dir', 'aind', 'aind-jsonl'])
        .default('jsonl'),
    )
    .addHelpText(
      'after',
      `
Examples:
  $ caas dispatch --query '{"subject.subject_id":"774659"}' --analysis unit-filter --file-ext .spikes.json > jobs.jsonl
  $ caas dispatch --query query.json --analysis unit-filter --params analysis_parameters.json -o jobs.jsonl
  $ caas dispatch --assets-csv assets.csv --analysis unit-filter --file-ext .json --no-split-files
  $ caas dispatch --s3-prefix s3://my-bucket/sessions/ --analysis unit-filter --file-ext .nwb
  $ caas dispatch --query '{}' --analysis unit-filter --group-by subject.subject_id --file-ext .json
  $ caas dispatch --query '{}' --analysis unit-filter --filter-latest created --filter-by subject.subject_id
  $ caas dispatch --query '{}' --analysis unit-filter --skip-done --max-jobs 100 | caas run - --execute
  $ caas dispatch --query '{}' --analysis unit-filter --format dir -o jobs/
  $ caas dispatch --catalog mongodb://docdb.example.org/metadata_index.data_assets --query '{"subject.subject_id":"774659"}' --analysis unit-filter
  $ caas dispatch --query '{}' --analysis unit-filter --format aind -o job_dicts/    # for AIND tools; caas run reads it back

Output is deterministic: the same dispatch over the same catalog gives the same lines in the same
order; pass --dispatched-at to make it byte-identical (the time is provenance, not identity).
Exit codes: 0 done (also for 0 jobs), 2 invalid input (nothing written to -o).`,
    )
    .action(async (options, command: Command) => {
      const settings = settingsOf(command);
      // Both --split-files and --no-split-files exist, so an unset value means "not given".
      const splitFiles = command.getOptionValueSource('splitFiles') === undefined ? undefined : Boolean(options.splitFiles);
      const progress = new DispatchProgress({ quiet: options.quiet });
      try {
        const summary = await runDispatch(
          {
            home: settings.home,
            dbUrl: settings.dbUrl,
            catalogUrl: options.catalog,
            storeUrl: settings.storeUrl,
            storeSettings: settings.storeSettings,
            query: options.query,
            assetsCsv: options.assetsCsv,
            s3Prefix: options.s3Prefix,
            analysis: options.analysis,
            fileExt: options.fileExt,
            splitFiles,
            groupBy: options.groupBy,
            dropNullGroups: options.dropNullGroups,
            filterLatest: options.filterLatest,
            filterBy: options.filterBy,
            unwind: options.unwind,
            params: options.params,
            maxJobs: options.maxJobs,
            group: options.group,
            dispatchedAt: options.dispatchedAt,
            skipDone: options.skipDone,
            allowDirty: options.allowDirty,
            output: options.output,
            format: options.format,
          },
          {
            warn: (message) => {
              progress.stop();
              if (!options.quiet) process.stderr.write(`warning: ${message}\n`);
            },
            progress: (counts) => progress.update(counts),
          },
        );
        progress.stop();
        process.stderr.write(`${summaryLine(summary)}\n`);
      } finally {
        progress.stop();
      }
    });
}
