/**
 * Planning a large rerun in bounded memory: `caas run` (a dry run: read, validate, identity, gate,
 * print) over 10,000 and 100,000 jobs of which 90% already succeeded, through the real CLI, with
 * its peak RSS and its time per 10,000 jobs at both sizes. The SKIP share is what a batch rerun
 * looks like: most identities are in the DB already.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { openDatabase } from '../backends/db/index.ts';
import { finishedRecord } from '../fixtures/records.ts';
import type { MetadataRecord } from '../models/record.ts';
import { JobPreparer } from '../wrapper/prepare.ts';
import { ROOT } from './caas-cli.ts';
import { type BenchOptions, type BenchReport, check, formatNumber, type Measurement, verify } from './report.ts';

const ANALYSIS = `import { defineAnalysis } from 'caas/analysis';
import { z } from 'zod';

export default defineAnalysis({
  name: 'noop',
  version: '1.0.0',
  description: 'Does nothing: planning is what is measured.',
  parameters: z.object({ n: z.number().int() }).strict(),
  command: ['true'],
  blueprint: { bucket: 'bench-noop', ami: 'ami-0123456789abcdef0', max_runtime_minutes: 5, groups: [{ name: 'caas' }] },
});
`;

/** One job line: an input with its etag and size given, as a dispatcher writes it (nothing to ask the store). */
function jobLine(i: number): string {
  const session = `ecephys_${600000 + (i % 5000)}_2025-01-01_12-00-00_sorted_${i}`;
  const url = `file://bench-data/${session}/units.spikes.json`;
  return JSON.stringify({
    analysis: 'noop',
    inputs: [
      {
        asset_id: `asset-${i}`,
        name: session,
        location: `file://bench-data/${session}/`,
        files: [{ url, etag: createHash('md5').update(String(i)).digest('hex'), size: 1000 + i }],
      },
    ],
    parameters: { n: i },
  });
}

/** A workspace whose DB holds a succeeded record for every job but each tenth, and the jobs file. */
async function workspace(dir: string, repo: string, jobs: number): Promise<{ home: string; file: string; skipped: number }> {
  const home = path.join(dir, `home-${jobs}`);
  const file = path.join(dir, `jobs-${jobs}.jsonl`);
  await mkdir(home, { recursive: true });
  const lines = Array.from({ length: jobs }, (_, i) => jobLine(i));
  await writeFile(file, `${lines.join('\n')}\n`);
  const preparer = new JobPreparer({ storeScheme: 'file', allowDirty: false, roots: [repo] });
  const template = finishedRecord({ seed: 'bench-plan' });
  const db = await openDatabase('sqlite:', { home });
  let skipped = 0;
  try {
    const records = async function* (): AsyncIterable<MetadataRecord> {
      for (let i = 0; i < jobs; i++) {
        if (i % 10 === 9) continue;
        const prepared = await preparer.prepare({ where: `${file}:${i + 1}`, value: JSON.parse(lines[i]!) });
        if (!prepared.ok) throw new Error(prepared.reason);
        skipped++;
        yield { ...template, _id: prepared.job.identity, preimage: prepared.job.preimage, inputs: prepared.job.preimage.inputs };
      }
    };
    await db.importRecords(records());
  } finally {
    await db.close();
  }
  return { home, file, skipped };
}

interface Planned {
  wallS: number;
  maxRssMiB: number;
  /** The plan's counts, from the summary line the --json output ends with. */
  counts: Record<string, number>;
}

/** A dry run of the real CLI, timed from spawn to exit, its peak RSS read by the probe it preloads; only stdout's last line is kept. */
function plan(home: string, file: string, env: NodeJS.ProcessEnv, probe: string): Promise<Planned> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(
      process.execPath,
      ['--import', path.join(ROOT, 'bench/rss-probe.mjs'), path.join(ROOT, 'bin/caas.js'), '--home', home, 'run', file, '--json'],
      {
        env: { ...env, CAAS_BENCH_PROBE: probe },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let tail = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      tail = (tail + chunk.toString()).slice(-4096);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4096);
    });
    child.on('error', reject);
    child.on('close', async (code) => {
      const wallS = (performance.now() - started) / 1000;
      if (code !== 0) return reject(new Error(`caas run ${file} exited ${code}: ${stderr}`));
      try {
        const usage = JSON.parse(await readFile(probe, 'utf8')) as { maxRssKiB: number };
        const summary = JSON.parse(tail.trimEnd().split('\n').at(-1)!) as { planned: Record<string, number> };
        resolve({ wallS, maxRssMiB: usage.maxRssKiB / 1024, counts: summary.planned });
      } catch (error) {
        reject(error);
      }
    });
  });
}

export async function benchPlan(options: BenchOptions): Promise<BenchReport> {
  const small = options.quick ? 1_000 : 10_000;
  const large = options.quick ? 10_000 : 100_000;
  const repo = path.join(options.workDir, 'analyses');
  await mkdir(path.join(repo, 'noop'), { recursive: true });
  await writeFile(path.join(repo, 'noop/index.ts'), ANALYSIS);
  await writeFile(path.join(repo, 'package.json'), '{ "type": "module" }\n');
  const git = (...args: string[]) => execFileSync('git', ['-C', repo, ...args], { stdio: 'ignore' });
  git('init', '-q');
  git('add', '-A');
  git('-c', 'user.name=bench', '-c', 'user.email=bench@example.org', 'commit', '-q', '-m', 'noop analysis');
  const env = { ...process.env, CAAS_ANALYSES: repo, NO_COLOR: '1' };

  const one = await workspace(options.workDir, repo, 1);
  const startup = await plan(one.home, one.file, env, path.join(options.workDir, 'probe-1.json'));
  const sizes = [small, large];
  const results: (Planned & { jobs: number; skipped: number; perTenK: number })[] = [];
  for (const jobs of sizes) {
    const ws = await workspace(options.workDir, repo, jobs);
    const planned = await plan(ws.home, ws.file, env, path.join(options.workDir, `probe-${jobs}.json`));
    results.push({
      ...planned,
      jobs,
      skipped: ws.skipped,
      perTenK: (Math.max(0, planned.wallS - startup.wallS) * 10_000) / jobs,
    });
  }
  const [first, last] = [results[0]!, results[1]!];
  const measurements: Measurement[] = results.flatMap((r) => [
    {
      subject: `caas run (dry run), ${formatNumber(r.jobs)} jobs, 90% SKIP: wall`,
      value: r.wallS,
      unit: 's',
      detail: `${formatNumber(r.perTenK)} s per 10,000 jobs after start-up (${formatNumber(startup.wallS)} s for one job)`,
    },
    { subject: `caas run (dry run), ${formatNumber(r.jobs)} jobs: peak RSS`, value: r.maxRssMiB, unit: 'MiB', detail: '--json to a pipe' },
  ]);
  const growth = last.perTenK / first.perTenK;
  return {
    name: 'plan',
    title: `planning a rerun: caas run over ${formatNumber(small)} and ${formatNumber(large)} jobs, 90% already succeeded (SQLite, --json)`,
    measurements,
    targets: [
      ...results.map((r) =>
        verify(
          `${formatNumber(r.jobs)} jobs: the plan says ${formatNumber(r.skipped)} SKIP and ${formatNumber(r.jobs - r.skipped)} RUN`,
          `${r.counts.SKIP} SKIP, ${r.counts.RUN} RUN, ${r.counts.INVALID} INVALID`,
          r.counts.SKIP === r.skipped && r.counts.RUN === r.jobs - r.skipped && r.counts.INVALID === 0,
        ),
      ),
      check(`${formatNumber(large)} jobs planned in <= 400 MB RSS`, `${formatNumber(last.maxRssMiB)} MiB`, last.maxRssMiB <= 400),
      check(
        `time per 10,000 jobs does not grow with the batch (${formatNumber(large)} against ${formatNumber(small)}, within 25%)`,
        `${formatNumber(last.perTenK)} s against ${formatNumber(first.perTenK)} s (x${formatNumber(growth)})`,
        growth <= 1.25,
      ),
    ],
    notes: [
      'a dry run holds one chunk of 1,000 prepared jobs and the identities seen (for duplicates); with --execute the RUN jobs go to a temporary file past one chunk (wrapper/run-list.ts)',
    ],
  };
}
