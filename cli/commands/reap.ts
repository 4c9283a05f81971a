import type { Command } from 'commander';
import { openFleet } from '../../backends/compute/index.ts';
import { openDatabase } from '../../backends/db/index.ts';
import { findReapable } from '../../wrapper/reap.ts';
import { settingsOf } from '../settings.ts';
import { formatTable, shortId } from '../table.ts';

export function registerReap(program: Command): void {
  program
    .command('reap')
    .description(
      'Find caas instances nobody is waiting for (past their deadline, or whose job is finished or superseded; never one the next run can adopt) and terminate them',
    )
    .option('--execute', 'terminate them (the default is a dry run that only lists them)', false)
    .option('--region <region>', 'AWS region to look in (env AWS_REGION)', process.env.AWS_REGION ?? 'us-east-1')
    .addHelpText(
      'after',
      `
Examples:
  $ caas reap --db mongodb://db.example.org/caas                # list what would be terminated, and why
  $ caas reap --db mongodb://db.example.org/caas --execute      # terminate them

Instances are found by their caas:identity tag; the metadata DB says whether a runner still holds
their job. Run it against the same --db the runners use.
Exit codes: 0 (also when nothing is found), 1 when AWS or the DB could not be read, 2 when --db names no metadata DB
(missing, empty, or not caas's).`,
    )
    .action(async (options, command: Command) => {
      const settings = settingsOf(command);
      const out = (line: string) => process.stdout.write(`${line}\n`);
      const fleet = await openFleet('ec2', { region: options.region });
      const db = await openDatabase(settings.dbUrl, { home: settings.home, readOnly: true, mustExist: true });
      try {
        const reapable = await findReapable(await fleet.list(), db, new Date());
        if (reapable.length === 0) {
          out(`no caas instances to reap in ${options.region}`);
          return;
        }
        out(
          formatTable(
            ['INSTANCE', 'ANALYSIS', 'IDENTITY', 'WHY'],
            reapable.map((r) => [r.instance, r.analysis, shortId(r.identity), r.why.join('; ')]),
          ),
        );
        if (!options.execute) {
          out(`${reapable.length} instance(s) to reap (dry run: nothing was terminated; add --execute to terminate them)`);
          return;
        }
        await fleet.terminate(reapable.map((r) => r.instance));
        out(`terminated ${reapable.length} instance(s)`);
      } finally {
        fleet.close();
        await db.close();
      }
    });
}
