import type { Command } from 'commander';
import { isPlainObject } from '../../models/plain-object.ts';
import { type Difference, explainJobRef, hintsFor, type WhyReport } from '../../wrapper/why.ts';
import { positiveInt, settingsOf, UsageError } from '../settings.ts';
import { shortId, truncate } from '../table.ts';

const VALUE_WIDTH = 72;

export function registerWhy(program: Command): void {
  program
    .command('why')
    .description(
      'Explain what `caas run` would do with one job: its identity, the record it matches, or what differs from the nearest records',
    )
    .argument('<job>', 'a job as file:line (a line of a JSONL file), a file holding one job, or - for one job on stdin')
    .option('--allow-dirty', 'compute the identity as `run --allow-dirty` would (with a hash of uncommitted changes)', false)
    .option('--analysis <name>', 'the analysis, when the job is an AIND dispatch model (which names none)')
    .option('--limit <n>', 'nearest records to compare with', (v) => positiveInt(v, '--limit'), 3)
    .option('--json', 'the verdict, the identity and the differences as one JSON object', false)
    .addHelpText(
      'after',
      `
Examples:
  $ caas why jobs.jsonl:3                 # why does line 3 run again (or not)?
  $ caas why job.json --limit 1
  $ caas dispatch --query '{}' --analysis unit-filter | sed -n 7p | caas why -

Differences are pre-image paths with the recorded value and this job's value, e.g.
  parameters.isi_violations_cutoff: 0.05 (recorded) → 0.1 (this job)
Exit codes: 0 explained (whether the job would run or not), 2 the job is invalid or cannot be found.`,
    )
    .action(async (ref: string, options, command: Command) => {
      const outcome = await explainJobRef(ref, settingsOf(command), {
        allowDirty: options.allowDirty,
        limit: options.limit,
        analysis: options.analysis,
      });
      if (!outcome.ok) throw new UsageError(`${outcome.where}: ${outcome.reason}`);
      const text = options.json ? JSON.stringify(asJson(outcome.report)) : describe(outcome.report, options.allowDirty);
      process.stdout.write(`${text}\n`);
    });
}

function describe(report: WhyReport, allowDirty: boolean): string {
  const { job } = report;
  const lines = [`${report.where}: ${job.analysis.name} on ${job.input.inputs.map((i) => i.name).join(' + ')}`, `identity ${job.identity}`];
  if (job.code.dirtyFiles.length && !allowDirty) {
    lines.push(
      `note: the analysis folder has uncommitted changes (${job.code.dirtyFiles.join(', ')}); \`run --execute\` refuses them, and --allow-dirty gives another identity`,
    );
  }
  const match = report.match;
  if (match) {
    const when = match.end ?? match.updated;
    const verdicts = {
      skip: `matches record ${shortId(match._id)}, succeeded ${when}: \`caas run\` skips it (caas show ${shortId(match._id)})`,
      'running-elsewhere': `matches record ${shortId(match._id)}, running now under ${match.lease?.owner.host} pid ${match.lease?.owner.pid}: \`caas run\` leaves it to that runner`,
      retry: `matches record ${shortId(match._id)}, ${match.status} (${match.reason ?? 'its runner stopped renewing the lease'}): \`caas run\` retries it as attempt ${match.attempts.length + 1}`,
      run: '',
    } as const;
    lines.push(verdicts[report.verdict]);
    return lines.join('\n');
  }
  lines.push('no record has this identity: `caas run` runs it.');
  if (report.nearest.length === 0) {
    lines.push(`no record of ${job.analysis.name} reads these inputs: this job never ran, with any parameters or code.`);
    return lines.join('\n');
  }
  const runs = report.candidates === 1 ? 'the one recorded run' : `${report.candidates} recorded runs`;
  const shown = report.nearest.length < report.candidates ? `the ${report.nearest.length} nearest of ${runs}` : runs;
  lines.push(`${shown} of ${job.analysis.name} on the same inputs${report.nearest.length > 1 ? ', fewest differences first' : ''}:`);
  for (const { record, differences } of report.nearest) {
    lines.push(
      '',
      `record ${shortId(record._id)}  ${record.status}  ${record.end ?? record.created}  ${differences.length} difference${differences.length === 1 ? '' : 's'}`,
      ...differences.map((d) => `  ${d.path}: ${show(d.recorded, d.path)} (recorded) → ${show(d.job, d.path)} (this job)`),
      ...hintsFor(differences, job).map((h) => `  ↳ ${h}`),
    );
  }
  return lines.join('\n');
}

/** Identifiers (commits, etags, URLs) read best bare; parameters keep JSON so "1" and 1 stay apart. */
function show(value: unknown, path: string): string {
  if (value === undefined) return '(absent)';
  // An input file: its URL and size, cut from the left when long, so the file's name stays in view.
  if (isPlainObject(value) && typeof value.url === 'string') {
    const text = `${value.url}${typeof value.size === 'number' ? ` (${value.size} B)` : ''}`;
    return text.length > VALUE_WIDTH ? `…${text.slice(-(VALUE_WIDTH - 1))}` : text;
  }
  const text = typeof value === 'string' && value !== '' && !path.startsWith('parameters') ? value : JSON.stringify(value);
  return truncate(text, VALUE_WIDTH);
}

function asJson(report: WhyReport) {
  const difference = (d: Difference) => ({ path: d.path, recorded: d.recorded ?? null, job: d.job ?? null });
  return {
    where: report.where,
    identity: report.job.identity,
    analysis: report.job.analysis.name,
    verdict: report.verdict,
    match: report.match ? { identity: report.match._id, status: report.match.status } : null,
    candidates: report.candidates,
    nearest: report.nearest.map((n) => ({
      identity: n.record._id,
      status: n.record.status,
      created: n.record.created,
      differences: n.differences.map(difference),
    })),
    preimage: report.job.preimage,
  };
}
