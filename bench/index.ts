/**
 * `npm run bench [-- --quick] [-- --only identity,gate]`: runs the benchmarks one after another,
 * prints each one's measurements beside its baseline, then every target with its verdict, and
 * writes bench/results.json (bench/results-quick.json for --quick). A full run exits 1 when a
 * target is missed; a quick run (smaller sizes, under a minute) only when the work was wrong.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { formatTable } from '../cli/table.ts';
import { ROOT } from './caas-cli.ts';
import { benchDispatch } from './dispatch.ts';
import { benchGate } from './gate.ts';
import { benchIdentity } from './identity.ts';
import { benchPerJob } from './per-job.ts';
import { benchPlan } from './plan.ts';
import { benchQuery } from './query.ts';
import { type BenchOptions, type BenchReport, formatNumber } from './report.ts';
import { benchServe } from './serve.ts';
import { benchUpload } from './upload.ts';

const BENCHMARKS: Record<string, (options: BenchOptions) => Promise<BenchReport>> = {
  identity: benchIdentity,
  gate: benchGate,
  dispatch: benchDispatch,
  'per-job': benchPerJob,
  plan: benchPlan,
  upload: benchUpload,
  serve: benchServe,
  query: benchQuery,
};

const { values } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, only: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
});
if (values.help) {
  process.stdout.write(
    `usage: npm run bench [-- --quick] [-- --only ${Object.keys(BENCHMARKS).join(',')}]\n  --quick  smaller sizes, under a minute: checks that the suite still runs\n`,
  );
  process.exit(0);
}
const names = values.only ? values.only.split(',').map((n) => n.trim()) : Object.keys(BENCHMARKS);
const unknown = names.filter((n) => !(n in BENCHMARKS));
if (unknown.length > 0) {
  process.stderr.write(`bench: unknown benchmark ${unknown.join(', ')}: expected some of ${Object.keys(BENCHMARKS).join(', ')}\n`);
  process.exit(2);
}

const quick = values.quick;
const started = new Date();
// Wall time means little on a busy machine: the load before and after says how busy it was.
const loadBefore = loadavg()[0]!;
const reports: BenchReport[] = [];
const failures: string[] = [];
for (const name of names) {
  const workDir = path.join(ROOT, 'bench/.out', `${name}-${process.pid}`);
  await mkdir(workDir, { recursive: true });
  process.stderr.write(`bench: ${name}${quick ? ' (quick)' : ''}...\n`);
  const t0 = performance.now();
  try {
    const report = await BENCHMARKS[name]!({ quick, workDir });
    reports.push(report);
    process.stdout.write(`\n${report.title}  [${formatNumber((performance.now() - t0) / 1000)} s]\n`);
    const rows = report.measurements.map((m) => [m.subject, formatNumber(m.value), m.unit, m.detail ?? '']);
    process.stdout.write(`${formatTable(['MEASURED', 'VALUE', 'UNIT', 'DETAIL'], rows)}\n`);
    for (const line of report.skipped ?? []) process.stdout.write(`skipped: ${line}\n`);
    for (const line of report.notes ?? []) process.stdout.write(`note: ${line}\n`);
  } catch (error) {
    failures.push(`${name}: ${(error as Error).message}`);
    process.stdout.write(`\n${name}: FAILED TO RUN: ${(error as Error).stack ?? error}\n`);
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}
const loadAfter = loadavg()[0]!;

const targetRows = reports.flatMap((r) =>
  r.targets.map((t) => [r.name, t.target, t.measured, t.ok ? 'ok' : quick && !t.correctness ? 'missed (quick size)' : 'MISSED']),
);
const machine = {
  node: process.version,
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: availableParallelism(),
  memory_gib: Math.round(totalmem() / 2 ** 30),
  load_before: loadBefore,
  load_after: loadAfter,
};
process.stdout.write(
  `\nTARGETS (node ${machine.node}, ${machine.cores} cores, load average ${loadBefore.toFixed(1)} before, ${loadAfter.toFixed(1)} after)\n`,
);
process.stdout.write(`${formatTable(['BENCHMARK', 'TARGET', 'MEASURED', ''], targetRows)}\n`);

const results = { started: started.toISOString(), quick, machine, reports, failures };
const file = path.join(ROOT, 'bench', quick ? 'results-quick.json' : 'results.json');
await writeFile(file, `${JSON.stringify(results, null, 2)}\n`);
process.stdout.write(`\nwrote ${path.relative(process.cwd(), file)}\n`);

const missed = reports.flatMap((r) => r.targets.filter((t) => !t.ok && (!quick || t.correctness)));
if (failures.length > 0 || missed.length > 0) process.exitCode = 1;
