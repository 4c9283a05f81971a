import type { Command } from 'commander';
import type { MetadataRecord } from '../../models/record.ts';
import { type ResultsPlace, recordByPrefix } from '../../wrapper/record-lookup.ts';
import { settingsOf } from '../settings.ts';
import { formatTable } from '../table.ts';

const MANIFEST_LINES = 20;

export function registerShow(program: Command): void {
  program
    .command('show')
    .description('Show one record: what produced it, its attempts, where its results and logs are, and how to fetch them')
    .argument('<identity>', 'an identity, or any unique prefix of one (as `caas query` and `caas run` print them)')
    .option('--json', 'the record as JSON, with a "fetch" field holding the copy command', false)
    .addHelpText(
      'after',
      `
Examples:
  $ caas show 4a1631635eb8
  $ caas show 4a16 --json | jq .attempts
  $ eval "$(caas show 4a1631635eb8 --json | jq -r .fetch)"    # copy the results to ./results

Exit codes: 0 shown, 2 no record or an ambiguous prefix (the candidates are listed).`,
    )
    .action(async (given: string, options, command: Command) => {
      const found = await recordByPrefix(given, settingsOf(command));
      const { record, place } = found;
      if (options.json) {
        process.stdout.write(`${JSON.stringify({ ...record, ...(place ? { fetch: place.fetch } : {}) })}\n`);
        return;
      }
      process.stdout.write(`${describe(record, place)}\n`);
    });
}

function describe(r: MetadataRecord, place: ResultsPlace | undefined): string {
  const lines: string[] = [];
  const field = (name: string, value: string) => lines.push(`${name.padEnd(13)} ${value}`);
  const current = r.attempts.at(-1);
  field('identity', r._id);
  field('status', `${r.status}${r.attempts.length ? ` (attempt ${current?.n} of ${r.attempts.length})` : ''}`);
  if (r.reason && r.status !== 'succeeded') field('reason', r.reason);
  field('analysis', `${r.analysis.name} ${r.analysis.version}`);
  field(
    'code',
    `${r.code.url ?? '(repository without a remote)'} @ ${r.code.commit}${r.code.dirty ? ` + uncommitted diff ${r.code.dirty}` : ''}`,
  );
  const parameters = Object.entries(r.parameters);
  field('parameters', parameters.length ? parameters.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' ') : '(none)');
  for (const [i, input] of r.inputs.entries()) {
    field(i === 0 ? 'inputs' : '', `${input.name} (${input.asset_id})  ${input.location}`);
    for (const file of input.files ?? []) {
      const meta = [file.etag !== undefined ? `etag ${file.etag}` : '', file.size !== undefined ? `${file.size} B` : '']
        .filter(Boolean)
        .join(', ');
      field('', `  ${file.url}${meta ? `  (${meta})` : ''}`);
    }
  }
  field('output', r.preimage.output);
  if (r.query) field('dispatched', [r.query.source, r.query.query, r.query.dispatched_at].filter(Boolean).join('  '));
  field('compute', [r.compute.backend, r.compute.host, r.compute.instance, r.compute.type].filter(Boolean).join(' / '));
  field('created', r.created);
  if (r.start) field('ran', `${r.start} → ${r.end ?? '…'}${r.duration_s !== null ? ` (${r.duration_s.toFixed(1)} s)` : ''}`);
  if (r.exit_code !== null) field('exit code', String(r.exit_code));
  if (r.outputs) {
    const bytes = r.outputs.manifest.reduce((sum, e) => sum + e.size, 0);
    field('outputs', `${r.outputs.manifest.length} files in process_results/, ${bytes} B, every one verified (sha256)`);
    for (const entry of r.outputs.manifest.slice(0, MANIFEST_LINES))
      field('', `  ${entry.key.replace(/^.*?process_results\//, '')}  ${entry.size} B  sha256 ${entry.sha256.slice(0, 16)}…`);
    if (r.outputs.manifest.length > MANIFEST_LINES)
      field('', `  … ${r.outputs.manifest.length - MANIFEST_LINES} more (--json lists them all)`);
    if (r.outputs.output_parameters) field('output params', JSON.stringify(r.outputs.output_parameters));
  }
  if (r.lease) field('lease', `${r.lease.owner.host} pid ${r.lease.owner.pid} until ${r.lease.expires}`);
  if (r.stderr_tail.length && r.status !== 'succeeded') {
    lines.push('', 'stderr (last lines):', ...r.stderr_tail.map((l) => `  ${l}`));
  }
  if (r.attempts.length) {
    lines.push('', 'attempts:');
    const table = formatTable(
      ['N', 'STATUS', 'STARTED', 'ENDED', 'EXIT', 'BY', 'REASON'],
      r.attempts.map((a) => [
        String(a.n),
        a.status,
        a.started,
        a.ended ?? '-',
        a.exit_code === null ? '-' : String(a.exit_code),
        `${a.owner.host}:${a.owner.pid}`,
        [a.reason, a.force_reason ? `forced: ${a.force_reason}` : ''].filter(Boolean).join('; ') || '-',
      ]),
    );
    lines.push(...table.split('\n').map((l) => `  ${l}`));
    const older = r.attempts.filter((a) => a.results && a.results !== r.job?.results);
    for (const a of older) lines.push(`  attempt ${a.n} results: ${a.results}`);
  }
  lines.push('');
  if (place) {
    field('results', place.results);
    if (place.localResults) field('', place.localResults);
    field('logs', place.logs);
    if (place.localLogs) field('', place.localLogs);
    field('fetch', place.fetch);
  } else {
    field('results', '(none yet: the job has not been launched)');
  }
  return lines.join('\n');
}
