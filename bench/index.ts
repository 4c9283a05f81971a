/**
 * `npm run bench`: runs the benchmarks, prints one table, and exits 1 when a target is missed (or
 * the output is not what it should be), so CI can hold the line.
 */
import { availableParallelism, loadavg } from 'node:os';
import { formatTable } from '../cli/table.ts';
import { type BenchResult, benchDispatch } from './dispatch.ts';

// Wall time means little on a busy machine; the load before and after is printed to say how busy.
const loadBefore = loadavg()[0]!;
const results: BenchResult[] = [await benchDispatch()];
const loadAfter = loadavg()[0]!;

const rows = results.map((r) => {
  const ok = r.wallS <= r.targets.wallS && r.peakRssMiB <= r.targets.peakRssMiB && r.lines === r.expectedLines;
  return [
    r.name,
    `${r.lines.toLocaleString('en-US')}${r.lines === r.expectedLines ? '' : ` (expected ${r.expectedLines.toLocaleString('en-US')})`}`,
    `${r.wallS.toFixed(2)} s`,
    `<= ${r.targets.wallS} s`,
    `${r.cpuS.toFixed(2)} s`,
    `${r.peakRssMiB.toFixed(0)} MiB`,
    `<= ${r.targets.peakRssMiB} MiB`,
    ok ? 'ok' : 'MISSED',
  ];
});
const header = ['BENCHMARK', 'JOB LINES', 'WALL', 'TARGET', 'CPU', 'PEAK RSS', 'TARGET', ''];
const load = `load average ${loadBefore.toFixed(1)} before, ${loadAfter.toFixed(1)} after`;
process.stdout.write(`node ${process.version}, ${availableParallelism()} cores, ${load}\n${formatTable(header, rows)}\n`);
if (rows.some((row) => row.at(-1) !== 'ok')) process.exitCode = 1;
