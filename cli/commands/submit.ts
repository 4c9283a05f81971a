import type { Command } from 'commander';
import { openStore } from '../../backends/storage/index.ts';
import { shellQuote } from '../../models/shell-quote.ts';
import { followJob } from '../../wrapper/follow.ts';
import { submitFiles } from '../../wrapper/submit-client.ts';
import { positiveNumber, settingsOf } from '../settings.ts';

export function registerSubmit(program: Command): void {
  program
    .command('submit')
    .description('Upload data and a config to an analysis bucket and write the submit file a watcher answers (NeuroCAAS style)')
    .requiredOption('--bucket <name>', 'the analysis bucket')
    .requiredOption('--group <name>', 'your user group (a folder of the bucket, listed in the blueprint)')
    .requiredOption('--data <file...>', 'data file(s); several give one job each')
    .requiredOption('--config <file>', "the analysis' parameters as a JSON file, or YAML when named .yaml or .yml")
    .option(
      '--timestamp <id>',
      'names the job folder results/job__{bucket}_{timestamp}: any text without "/", "\\", "..", "~" or control characters (default: now plus a random suffix)',
    )
    .option('--instance-type <type>', "one of the blueprint's allowed_instance_types")
    .option('--follow', 'wait for the job: print its log as it grows, exit 0 on success, 1 on failure, 2 on rejection', false)
    .option('--interval <s>', 'seconds between looks at the job folder with --follow', (v) => positiveNumber(v, '--interval'), 0.5)
    .addHelpText(
      'after',
      `
Examples:
  $ caas submit --bucket mock-wait --group demo --data session1.json --config config.json --follow
  $ caas submit --bucket unit-filter --group demo --data a.json b.json --config strict.json --store s3://

Exit codes: 0 submitted (with --follow: succeeded), 1 the job failed, 2 invalid input or the submission was rejected.`,
    )
    .action(async (options, command: Command) => {
      const settings = settingsOf(command);
      const store = await openStore(settings.storeUrl, { home: settings.home, settings: settings.storeSettings });
      const out = (line: string) => process.stdout.write(`${line}\n`);
      try {
        const submitted = await submitFiles(
          store,
          {
            bucket: options.bucket,
            group: options.group,
            data: options.data,
            config: options.config,
            timestamp: options.timestamp,
            instanceType: options.instanceType,
          },
          out,
        );
        const job = { bucket: options.bucket, group: options.group, timestamp: submitted.timestamp };
        out(`job folder: ${submitted.folder}`);
        if (!options.follow) {
          // A free-text timestamp may hold spaces or quotes: the line must still paste into a shell.
          out(`follow it with: caas logs ${shellQuote(`${job.bucket}/${job.group}/${job.timestamp}`)} --follow`);
          return;
        }
        const result = await followJob({ store, job, out, intervalMs: options.interval * 1000, submit: submitted });
        process.exitCode = result.exitCode;
      } finally {
        await store.close();
      }
    });
}
