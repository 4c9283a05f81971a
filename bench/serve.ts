/**
 * The service: POST /api/jobs dry-run plans per second and GET /api/jobs/{id} latency (p50, p99)
 * against a real listening `caas serve` on 127.0.0.1, beside the same work through the CLI (`caas
 * run` without --execute per job, `caas show` per look), which pays a process start each time.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { startService } from '../server/listen.ts';
import { TokenRing } from '../server/tokens.ts';
import { runCaas } from './caas-cli.ts';
import { analysisRepo, jobFile } from './per-job.ts';
import { type BenchOptions, type BenchReport, check, formatNumber, median, verify } from './report.ts';

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

/** Runs `work` over the items, `concurrency` at a time. */
async function inParallel<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

export async function benchServe(options: BenchOptions): Promise<BenchReport> {
  const plans = options.quick ? 100 : 1000;
  const looks = options.quick ? 200 : 2000;
  const cliRuns = options.quick ? 3 : 10;
  const repo = path.join(options.workDir, 'analyses');
  const home = path.join(options.workDir, 'home');
  await analysisRepo(repo);
  const jobs = path.join(options.workDir, 'jobs.jsonl');
  await jobFile(home, jobs, plans, 0);
  const lines = (await readFile(jobs, 'utf8')).split('\n').filter(Boolean);
  const env = { ...process.env, CAAS_ANALYSES: repo };
  const saved = process.env.CAAS_ANALYSES;
  process.env.CAAS_ANALYSES = repo;
  const service = await startService({
    home,
    storeUrl: 'file:',
    dbUrl: 'sqlite:',
    host: '127.0.0.1',
    port: 0,
    compute: 'inline',
    concurrency: 2,
    leaseMs: 60_000,
    allowDirty: false,
    tokens: new TokenRing([]),
    maxBodyBytes: 8 * 1024 * 1024,
    log: () => {},
  });
  try {
    // Dry-run plans: one job per request, 8 requests in flight.
    let planned = 0;
    const t0 = performance.now();
    await inParallel(lines, 8, async (line) => {
      const response = await fetch(`${service.url}/api/jobs`, {
        method: 'POST',
        body: line,
        headers: { 'content-type': 'application/json' },
      });
      const body = (await response.json()) as { jobs: { action: string }[] };
      if (response.status === 200 && body.jobs[0]?.action === 'RUN') planned++;
    });
    const apiPlansPerS = plans / ((performance.now() - t0) / 1000);

    // The same through the CLI: one `caas run` (dry run) per job, and one for the whole batch.
    const single = path.join(options.workDir, 'one.jsonl');
    await writeFile(single, `${lines[0]}\n`);
    const cliOne: number[] = [];
    for (let i = 0; i < cliRuns; i++) cliOne.push((await runCaas(['--home', home, 'run', single], { env })).wallS);
    const batch = await runCaas(['--home', home, 'run', jobs, '--quiet'], { env });

    // GET /api/jobs/{id} of a recorded job, one look at a time, beside `caas show`.
    const executed = await fetch(`${service.url}/api/jobs?execute=true`, {
      method: 'POST',
      body: lines[0],
      headers: { 'content-type': 'application/json' },
    });
    const identity = ((await executed.json()) as { jobs: { identity: string }[] }).jobs[0]!.identity;
    for (let i = 0; i < 600; i++) {
      const state = ((await (await fetch(`${service.url}/api/jobs/${identity}`)).json()) as { state: string }).state;
      if (state === 'succeeded' || state === 'failed') break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const latencies: number[] = [];
    let ok = 0;
    for (let i = 0; i < looks; i++) {
      const started = performance.now();
      const response = await fetch(`${service.url}/api/jobs/${identity}`);
      const body = (await response.json()) as { state: string };
      latencies.push(performance.now() - started);
      if (response.status === 200 && body.state === 'succeeded') ok++;
    }
    const cliShow: number[] = [];
    for (let i = 0; i < cliRuns; i++) cliShow.push((await runCaas(['--home', home, 'show', identity], { env })).wallS * 1000);

    const p50 = percentile(latencies, 50);
    const p99 = percentile(latencies, 99);
    const cliPlansPerS = 1 / median(cliOne);
    return {
      name: 'serve',
      title: `caas serve: ${plans} dry-run plans (1 job per request, 8 in flight), ${looks} GET /api/jobs/{id}; CLI beside it`,
      measurements: [
        { subject: 'POST /api/jobs dry run', value: apiPlansPerS, unit: 'plans/s', detail: '1 job per request, 8 in flight' },
        { subject: 'caas run (dry run), one process per job', value: cliPlansPerS, unit: 'plans/s', detail: `median of ${cliRuns}` },
        {
          subject: `caas run (dry run), ${plans} jobs in one process`,
          value: plans / batch.wallS,
          unit: 'plans/s',
          detail: 'the batch way',
        },
        { subject: 'GET /api/jobs/{id} p50', value: p50, unit: 'ms' },
        { subject: 'GET /api/jobs/{id} p99', value: p99, unit: 'ms' },
        { subject: 'caas show <id>', value: median(cliShow), unit: 'ms', detail: `median of ${cliRuns}, process start included` },
      ],
      targets: [
        verify('every dry-run request planned RUN (200)', `${planned}/${plans}`, planned === plans),
        verify('every GET answered the recorded job (200)', `${ok}/${looks}`, ok === looks),
        check(
          'API dry-run plans >= 10x one CLI process per job',
          `${formatNumber(apiPlansPerS / cliPlansPerS)}x`,
          apiPlansPerS >= 10 * cliPlansPerS,
        ),
        check('GET /api/jobs/{id} p99 <= 50 ms', `${formatNumber(p99)} ms`, p99 <= 50),
      ],
    };
  } finally {
    await service.stop(5000);
    if (saved === undefined) delete process.env.CAAS_ANALYSES;
    else process.env.CAAS_ANALYSES = saved;
  }
}
