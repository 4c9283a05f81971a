// Preloaded into the process under measurement (node --import): on exit it reports that process's
// own peak resident set size and CPU time, so the parent's never count.
import { writeFileSync } from 'node:fs';

const target = process.env.CAAS_BENCH_PROBE;
if (target) {
  process.on('exit', (code) => {
    const usage = process.resourceUsage();
    writeFileSync(target, JSON.stringify({ maxRssKiB: usage.maxRSS, cpuUs: usage.userCPUTime + usage.systemCPUTime, exitCode: code }));
  });
}
