import type { Command } from 'commander';
import { checkFleetName, type Fleet, fleetNames, openFleet } from '../../backends/compute/index.ts';
import { type MetadataStore, openDatabase } from '../../backends/db/index.ts';
import { findReapable } from '../../wrapper/reap.ts';
import { settingsOf } from '../settings.ts';
import { formatTable, shortId } from '../table.ts';

export function registerReap(program: Command): void {
  program
    .command('reap')
    .description(
      'Find caas machines (EC2 instances, AWS Batch jobs) nobody is waiting for (past their deadline, or whose job is finished or superseded; never one the next run can adopt) and stop them',
    )
    .option('--execute', 'terminate them (the default is a dry run that only lists them)', false)
    .option('--compute <names>', `where to look, comma-separated: ${fleetNames().join(', ')}`, 'ec2')
    .option('--region <region>', 'AWS region to look in (env AWS_REGION)', process.env.AWS_REGION ?? 'us-east-1')
    .addHelpText(
      'after',
      `
Examples:
  $ caas reap --db mongodb://db.example.org/caas                # list what would be terminated, and why
  $ caas reap --db mongodb://db.example.org/caas --execute      # terminate them
  $ caas reap --db mongodb://db.example.org/caas --compute ec2,batch   # instances and Batch jobs

Machines are found by their caas:identity tag; the metadata DB says whether a runner still holds
their job. Run it against the same --db the runners use.
Exit codes: 0 (also when nothing is found), 1 when AWS or the DB could not be read, 2 when --db names no metadata DB
(missing, empty, or not caas's).`,
    )
    .action(async (options, command: Command) => {
      const settings = settingsOf(command);
      const out = (line: string) => process.stdout.write(`${line}\n`);
      const names = String(options.compute)
        .split(',')
        .map((name) => name.trim())
        .filter(Boolean);
      for (const name of names) checkFleetName(name);
      const db = await openDatabase(settings.dbUrl, { home: settings.home, readOnly: true, mustExist: true });
      try {
        for (const name of names) {
          const fleet = await openFleet(name, { region: options.region });
          try {
            await reapFleet(fleet, db, { region: options.region, execute: Boolean(options.execute), out });
          } finally {
            fleet.close();
          }
        }
      } finally {
        await db.close();
      }
    });
}

async function reapFleet(
  fleet: Fleet,
  db: MetadataStore,
  options: { region: string; execute: boolean; out: (line: string) => void },
): Promise<void> {
  const { out, region } = options;
  const reapable = await findReapable(await fleet.list(), db, new Date());
  const noun = fleet.noun;
  if (reapable.length === 0) {
    out(`no caas ${noun}s to reap in ${region}`);
    return;
  }
  out(
    formatTable(
      [noun.toUpperCase(), 'ANALYSIS', 'IDENTITY', 'WHY'],
      reapable.map((r) => [r.instance, r.analysis, shortId(r.identity), r.why.join('; ')]),
    ),
  );
  if (!options.execute) {
    out(`${reapable.length} ${noun}(s) to reap (dry run: nothing was terminated; add --execute to terminate them)`);
    return;
  }
  await fleet.terminate(reapable.map((r) => r.instance));
  out(`terminated ${reapable.length} ${noun}(s)`);
}
