import type { Command } from 'commander';
import { budgetReport } from '../../wrapper/budget-report.ts';
import { formatUsd } from '../../wrapper/group-budget.ts';
import { settingsOf } from '../settings.ts';
import { formatTable } from '../table.ts';

export function registerBudget(program: Command): void {
  program
    .command('budget')
    .description(
      "Show each user group's estimated spend this period, its budget, its running jobs and its instance limit, as every runner and watcher sees them",
    )
    .option('--group <name>', 'only this group')
    .option('--analysis <name>', 'only the groups of this analysis')
    .option('--json', 'one JSON object per group', false)
    .addHelpText(
      'after',
      `
Examples:
  $ caas budget
  $ caas budget --group lab-a
  $ caas budget --analysis mock-wait --db mongodb://db.example.org/caas --json

Groups, their budget ({usd, period}) and instance_limit come from the analyses' blueprints; the spend
and the running jobs from the metadata DB (--db, the one the runners use). SPENT is the estimated cost
(instance type price x runtime) of the attempts that ended this period (UTC day, ISO week, month, or
total); a group without a budget shows its spend of all time. COMMITTED adds what the running jobs can
cost at most: a job starts only while COMMITTED is under the CAP. SLOTS is how many of the group's
jobs hold one of its slots, out of its instance_limit.
Exit codes: 0, 1 when the DB cannot be read, 2 for an unknown analysis or group.`,
    )
    .action(async (options, command: Command) => {
      const settings = settingsOf(command);
      const out = (line: string) => process.stdout.write(`${line}\n`);
      const report = await budgetReport(settings, { analysis: options.analysis, group: options.group });
      for (const problem of report.unreadable) process.stderr.write(`warning: analysis not shown: ${problem}\n`);
      if (options.json) {
        for (const row of report.rows) {
          out(
            JSON.stringify({
              analysis: row.analysis,
              group: row.group,
              period: row.period ?? null,
              since: row.since?.toISOString() ?? null,
              spent_usd: row.spentUsd,
              running_worst_usd: row.runningWorstUsd,
              cap_usd: row.capUsd ?? null,
              running: row.running,
              slots: row.slots.length,
              instance_limit: row.instanceLimit ?? null,
              budget_reached: row.budgetReached,
              limit_reached: row.limitReached,
            }),
          );
        }
        return;
      }
      if (report.rows.length === 0) {
        out('no groups: no analysis found (CAAS_ANALYSES names the folders searched)');
        return;
      }
      const rows = report.rows.map((row) => [
        row.analysis,
        row.group,
        row.period === undefined ? 'all time' : row.since ? `${row.period} from ${row.since.toISOString().slice(0, 10)}` : 'total',
        formatUsd(row.spentUsd),
        row.capUsd === undefined ? '-' : formatUsd(row.spentUsd + row.runningWorstUsd),
        row.capUsd === undefined ? '-' : formatUsd(row.capUsd),
        String(row.running),
        row.instanceLimit === undefined ? '-' : `${row.slots.length}/${row.instanceLimit}`,
        row.budgetReached ? 'budget reached: new jobs are refused' : row.limitReached ? 'limit reached: new jobs wait' : '',
      ]);
      out(formatTable(['ANALYSIS', 'GROUP', 'PERIOD', 'SPENT', 'COMMITTED', 'CAP', 'RUNNING', 'SLOTS', 'STATE'], rows));
    });
}
