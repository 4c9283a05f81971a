import type { Command } from 'commander';
import { describeLaunchers } from '../../backends/compute/index.ts';
import { objectUrl } from '../../backends/storage/index.ts';
import { defaultSettings } from '../../models/caas-settings.ts';
import { SubmissionWatcher } from '../../wrapper/watch.ts';
import { positiveInt, positiveNumber, settingsOf, statusIntervalMs } from '../settings.ts';

export function registerWatch(program: Command): void {
  program
    .command('watch')
    .description('Answer NeuroCAAS submit files ({group}/submissions/*submit.json) in an analysis bucket, each exactly once')
    .requiredOption('--bucket <name>', "the analysis bucket (an analysis' blueprint.bucket)")
    .option('--compute <name>', `where jobs run: ${describeLaunchers()}`, defaultSettings(process.env).compute)
    .option('--interval <s>', 'seconds between looks at the bucket', (v) => positiveNumber(v, '--interval'), 2)
    .option('--once', 'process the submit files there now, then exit', false)
    .option('--concurrency <n>', 'submissions at a time', (v) => positiveInt(v, '--concurrency'), 4)
    .option('--allow-dirty', 'run from an analysis folder with uncommitted changes (the diff hash enters the identity)', false)
    .option(
      '--lease-seconds <s>',
      'claim lease (at least 3 status intervals, 6 s by default); a watcher that stops renewing loses its submissions and jobs after this long',
      (v) => positiveNumber(v, '--lease-seconds'),
      defaultSettings(process.env).leaseSeconds,
    )
    .addHelpText(
      'after',
      `
Examples:
  $ caas watch --bucket mock-wait                          # embedded defaults: folder buckets under .caas/, SQLite, child processes
  $ caas watch --bucket mock-wait --once                   # answer what is there now, then exit
  $ caas watch --bucket unit-filter --store s3:// --db mongodb://db/caas --compute ec2

Every answer lands in {group}/results/job__{bucket}_{timestamp}/: a rejection (certificate.txt line +
end.txt), a link to an identical earlier result, or the job's own logs and results.
Exit codes: 0 stopped normally, 1 some submit files could not be processed (--once), 2 invalid flags.`,
    )
    .action(async (options, command: Command) => {
      const settings = settingsOf(command);
      const watcher = await SubmissionWatcher.open({
        bucket: options.bucket,
        home: settings.home,
        storeUrl: settings.storeUrl,
        dbUrl: settings.dbUrl,
        compute: options.compute,
        storeSettings: settings.storeSettings,
        concurrency: options.concurrency,
        leaseMs: options.leaseSeconds * 1000,
        allowDirty: options.allowDirty,
        statusIntervalMs: statusIntervalMs(),
        retryMs: options.interval * 1000,
      });
      try {
        if (options.once) {
          const outcomes = await watcher.pollOnce();
          const errors = outcomes.filter((o) => o.outcome === 'error').length;
          process.stdout.write(`processed ${outcomes.length} submit file(s)${errors ? `, ${errors} could not be processed` : ''}\n`);
          process.exitCode = errors > 0 ? 1 : 0;
          return;
        }
        const stop = new AbortController();
        const onSignal = (signal: NodeJS.Signals) => {
          if (stop.signal.aborted) process.exit(130);
          process.stderr.write(
            `caas watch: ${signal}: finishing the submissions in progress (again to leave them: their claims expire and another watcher takes over)\n`,
          );
          stop.abort();
        };
        process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
        process.stdout.write(
          `watching ${objectUrl(watcher.store.scheme, options.bucket, '*/submissions/')} for ${watcher.analysis.name} every ${options.interval} s\n`,
        );
        await watcher.run(options.interval * 1000, stop.signal);
      } finally {
        await watcher.close();
      }
    });
}
