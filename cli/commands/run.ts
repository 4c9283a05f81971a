import type { Command } from 'commander';
import { describeLaunchers } from '../../backends/compute/index.ts';
import { defaultSettings } from '../../models/caas-settings.ts';
import type { JobResult } from '../../wrapper/execute.ts';
import type { PlanEntry } from '../../wrapper/gate.ts';
import { type RunReporter, runBatch } from '../../wrapper/run.ts';
import { BatchProgress } from '../progress.ts';
import { positiveInt, positiveNumber, settingsOf, statusIntervalMs, UsageError } from '../settings.ts';
import { formatTable, shortId } from '../table.ts';

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('Validate jobs, compute their identities, gate them against the metadata DB, and (with --execute) run them')
    .argument(
      '<jobs>',
      "JSONL file, JSON array file, folder of job .json files (or of folders of them, as AIND's dispatcher writes), or - for stdin",
    )
    .option('--execute', 'run the jobs (the default is a dry run that shows the plan and writes nothing)', false)
    .option('--no-dry-run', 'same as --execute')
    .option('--compute <name>', `where jobs run: ${describeLaunchers()}`, defaultSettings(process.env).compute)
    .option('--concurrency <n>', 'jobs at a time', (v) => positiveInt(v, '--concurrency'), 2)
    .option('--allow-dirty', 'run from an analysis folder with uncommitted changes (the diff hash enters the identity)', false)
    .option(
      '--analysis <name>',
      'the analysis of AIND dispatch models among the jobs (AIND leaves it to the wrapper; caas jobs name their own)',
    )
    .option('--force', 'rerun identities that already succeeded, as a new attempt (needs --reason)', false)
    .option('--reason <text>', 'why a --force rerun is needed (kept in the record)')
    .option(
      '--lease-seconds <s>',
      'claim lease (at least 3 status intervals: 6 s with the default 2 s interval); after it lapses the next runner adopts the jobs whose agents still run, and reruns the others',
      (v) => positiveNumber(v, '--lease-seconds'),
      defaultSettings(process.env).leaseSeconds,
    )
    .option(
      '--user <name>',
      "who the jobs run for: checked against their group's users in the blueprint and kept with each attempt (env CAAS_USER)",
      defaultSettings(process.env).user,
    )
    .option('--json', 'print the plan and the results as JSON lines', false)
    .option('--quiet', 'print only failed jobs and the final counts (no plan table, no progress)', false)
    .addHelpText(
      'after',
      `
Examples:
  $ caas run jobs.jsonl                       # dry run: the plan (RUN / SKIP / RUNNING / INVALID / REFUSED), nothing written
  $ caas run jobs.jsonl --execute             # run what the plan says, 2 at a time
  $ caas dispatch --query '{"subject.subject_id":"774659"}' --analysis unit-filter --file-ext .spikes.json | caas run - --execute
  $ caas run jobs.jsonl --execute --force --reason "reprocess after spike-sorting fix"
  $ caas run jobs.jsonl --execute --quiet     # only failed jobs and the final counts
  $ caas run jobs.jsonl --execute --user alice   # for a group whose blueprint lists its users
  $ caas run job_dicts/ --analysis unit-filter --execute   # AIND dispatch models (aind-analysis-job-dispatch's output)

A job's group must be one of its analysis' blueprint groups. A group's budget and instance_limit hold
across every runner and watcher sharing the metadata DB: a job waits while all the group's
instance_limit slots are taken, and is REFUSED when the group's spend this period has reached its cap
(caas budget shows where each group stands).

With --execute, a progress bar (run, failed, skipped, running elsewhere, ETA) is drawn on stderr when it is a
terminal, else a progress line is printed every 10 s (CAAS_PROGRESS_INTERVAL_MS); a table of counts per analysis
ends the run. NO_COLOR turns colour off.

Exit codes: 0 all good, 1 some jobs failed, 2 invalid input, 3 some jobs refused by their group's budget or
instance_limit (the rest of the batch still ran; the first of 2, 1, 3 that applies).`,
    )
    .action(async (source: string, options, command: Command) => {
      const settings = settingsOf(command);
      const execute = Boolean(options.execute) || options.dryRun === false;
      if (options.force && !options.reason?.trim())
        throw new UsageError('--force needs --reason "<why>": reruns of succeeded results are audited');
      if (options.reason && !options.force) throw new UsageError('--reason only goes with --force');
      const json = Boolean(options.json);
      const quiet = Boolean(options.quiet);
      // A bar on a terminal, periodic lines otherwise; lines go through it so they never tear the bar.
      const progress = json ? undefined : new BatchProgress({ quiet });
      const out = (line: string): void => {
        if (progress) progress.print(line);
        else process.stdout.write(`${line}\n`);
      };
      let planPrinted = false;
      const watched = (reporter: RunReporter) => progress?.wrap(reporter) ?? reporter;
      // First Ctrl-C / SIGTERM: start nothing new, cancel what runs, record it; a second one exits now.
      const stop = new AbortController();
      const onSignal = (signal: NodeJS.Signals) => {
        if (stop.signal.aborted) process.exit(130);
        process.stderr.write(`caas: ${signal}: cancelling running jobs and recording them as failed (again to quit at once)\n`);
        stop.abort(signal);
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        const summary = await runBatch(
          {
            source,
            analysis: options.analysis,
            home: settings.home,
            storeUrl: settings.storeUrl,
            dbUrl: settings.dbUrl,
            storeSettings: settings.storeSettings,
            compute: options.compute,
            execute,
            concurrency: options.concurrency,
            allowDirty: options.allowDirty,
            forceReason: options.force ? options.reason : undefined,
            leaseMs: options.leaseSeconds * 1000,
            signal: stop.signal,
            statusIntervalMs: statusIntervalMs(),
            user: options.user,
          },
          watched({
            plan: (entries) => {
              if (json) for (const e of entries) out(JSON.stringify(planJson(e)));
              else if (entries.length > 0) {
                printPlan(entries, out, !planPrinted);
                planPrinted = true;
              }
            },
            warn: (message) => process.stderr.write(`warning: ${message}\n`),
            result: (result) => (json ? out(JSON.stringify({ type: 'result', ...result })) : out(resultLine(result))),
          }),
        );
        progress?.stop();
        const p = summary.planned;
        const planLine = `plan: ${p.RUN} to run, ${p.SKIP} skipped, ${p.RUNNING} running elsewhere, ${p.INVALID} invalid${p.REFUSED ? `, ${p.REFUSED} refused by their group` : ''}`;
        if (json) out(JSON.stringify({ type: 'summary', ...summary }));
        else if (!execute) out(`${planLine} (dry run: nothing was written; add --execute to run)`);
        else {
          const r = summary.results;
          if (!quiet) out(progress!.summaryTable());
          out(
            `${planLine}\ndone: ${r.succeeded} succeeded, ${r.failed} failed, ${r.skipped + r.running + r['failed-elsewhere']} taken by other runners${r['failed-elsewhere'] ? ` (${r['failed-elsewhere']} failed there: the next run retries them)` : ''}, ${r.lost} lost${r.refused ? `, ${r.refused} refused by their group` : ''}`,
          );
        }
        process.exitCode = summary.exitCode;
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        progress?.stop();
      }
    });
}

/** Prints a chunk of the plan; the header only before the first chunk of a batch. */
function printPlan(entries: PlanEntry[], out: (line: string) => void, first: boolean): void {
  const rows = entries.map((e) => [
    e.action,
    shortId(e.job?.identity),
    e.job?.analysis.name ?? '-',
    e.job ? inputLabel(e) : e.where,
    e.action === 'INVALID'
      ? `${e.where}: ${e.reason}`
      : e.action === 'SKIP'
        ? `${e.reason} (record ${shortId(e.record?._id)})`
        : (e.reason ?? ''),
  ]);
  const table = formatTable(['ACTION', 'IDENTITY', 'ANALYSIS', 'INPUT', 'DETAIL'], rows).split('\n');
  for (const line of first ? table : table.slice(1)) out(line);
}

function inputLabel(entry: PlanEntry): string {
  const job = entry.job!;
  const names = job.input.inputs.map((i) => (i.files?.length === 1 ? `${i.name}/${i.files[0]!.url.split('/').pop()}` : i.name)).join('+');
  const params = Object.entries(job.input.parameters)
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join(',');
  return params ? `${names} {${params}}` : names;
}

function planJson(e: PlanEntry) {
  return {
    type: 'plan',
    action: e.action,
    where: e.where,
    identity: e.job?.identity ?? null,
    analysis: e.job?.analysis.name ?? null,
    reason: e.reason ?? null,
    record: e.record?._id ?? null,
  };
}

function resultLine(r: JobResult): string {
  const took = r.durationS !== undefined ? ` ${r.durationS.toFixed(1)} s` : '';
  const attempt = r.attempt ? ` attempt ${r.attempt}` : '';
  const where = r.outcome === 'succeeded' || r.outcome === 'failed' ? `  ${r.results ?? ''}` : '';
  return `${r.outcome.toUpperCase().padEnd(9)} ${shortId(r.identity)}${attempt}${took}  ${r.where}${where}${r.outcome === 'succeeded' ? '' : `  (${r.reason})`}`;
}
