import type { Command } from 'commander';
import { openStore } from '../../backends/storage/index.ts';
import { parseJobRef } from '../../models/bucket-contract.ts';
import { followJob, showJob } from '../../wrapper/follow.ts';
import { positiveNumber, settingsOf, UsageError } from '../settings.ts';

export function registerLogs(program: Command): void {
  program
    .command('logs')
    .description("Print a job folder's certificate, status and output; with --follow, wait for the job to end")
    .argument('<job>', 'bucket/group/timestamp, or a URL inside the job folder (s3://bucket/group/results/job__bucket_timestamp/...)')
    .option('--follow', 'keep printing new lines until end.txt appears; exit 0 success, 1 failure, 2 rejection', false)
    .option('--interval <s>', 'seconds between looks with --follow', (v) => positiveNumber(v, '--interval'), 0.5)
    .addHelpText(
      'after',
      `
Examples:
  $ caas logs mock-wait/demo/20240131T235959123Z-1a2b
  $ caas logs s3://unit-filter/demo/results/job__unit-filter_run7/process_results/ --store s3:// --follow`,
    )
    .action(async (text: string, options, command: Command) => {
      const settings = settingsOf(command);
      const job = parseJobRef(text);
      if (!job)
        throw new UsageError(`"${text}" names no job: expected bucket/group/timestamp or a URL inside results/job__{bucket}_{timestamp}/`);
      const store = await openStore(settings.storeUrl, { home: settings.home, settings: settings.storeSettings });
      const out = (line: string) => process.stdout.write(`${line}\n`);
      try {
        const result = options.follow
          ? await followJob({ store, job, out, intervalMs: options.interval * 1000 })
          : await showJob(store, job, out);
        process.exitCode = result?.exitCode ?? 0;
      } finally {
        await store.close();
      }
    });
}
