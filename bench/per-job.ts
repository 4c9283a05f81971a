/**
 * Per-job overhead: what caas adds around an analysis that does nothing (`true`), with local compute
 * and the embedded defaults, through the real CLI. Latency: jobs one at a time, each timed from its
 * claim to its record (from the record itself) less the analysis' own run. Throughput: 1,000 jobs
 * at --concurrency 4.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { openDatabase } from '../backends/db/index.ts';
import type { MetadataRecord } from '../models/record.ts';
import { runCaas } from './caas-cli.ts';
import { type BenchOptions, type BenchReport, check, formatNumber, type Measurement, median, type TargetCheck, verify } from './report.ts';

/** The batch runs at this --concurrency, and its target is this many seconds per 1,000 jobs (issue 17). */
const CONCURRENCY = 4;
const TARGET_S_PER_1000 = 30;

const NOOP_ANALYSIS = `import { defineAnalysis } from 'caas/analysis';
import { z } from 'zod';

export default defineAnalysis({
  name: 'noop',
  version: '1.0.0',
  description: 'Does nothing: the benchmark of what caas adds around an analysis.',
  parameters: z.object({ n: z.number().int() }).strict(),
  command: ['true'],
  blueprint: {
    bucket: 'bench-noop',
    ami: 'ami-0123456789abcdef0',
    instance_type: 't3.micro',
    allowed_instance_types: ['t3.micro'],
    max_runtime_minutes: 5,
    deploy_limit: 4,
    groups: [{ name: 'caas' }],
  },
});
`;

/** The analyses repository: a real git checkout, as the identity requires. */
export async function analysisRepo(dir: string): Promise<void> {
  await mkdir(path.join(dir, 'noop'), { recursive: true });
  await writeFile(path.join(dir, 'noop/index.ts'), NOOP_ANALYSIS);
  await writeFile(path.join(dir, 'package.json'), '{ "type": "module" }\n');
  const git = (...args: string[]) => execFileSync('git', ['-C', dir, ...args], { stdio: 'ignore' });
  git('init', '-q');
  git('add', '-A');
  git('-c', 'user.name=bench', '-c', 'user.email=bench@example.org', 'commit', '-q', '-m', 'noop analysis');
}

/** One small input file per job in the workspace's file store, listed with its etag and size. */
export async function jobFile(home: string, file: string, count: number, offset: number): Promise<void> {
  const lines: string[] = [];
  for (let i = offset; i < offset + count; i++) {
    const body = `input ${i}\n`;
    const folder = path.join(home, 'buckets/bench-data', `asset-${i}`);
    await mkdir(folder, { recursive: true });
    await writeFile(path.join(folder, 'data.txt'), body);
    const url = `file://bench-data/asset-${i}/data.txt`;
    lines.push(
      JSON.stringify({
        analysis: 'noop',
        inputs: [
          {
            asset_id: `asset-${i}`,
            name: `asset-${i}`,
            location: `file://bench-data/asset-${i}/`,
            files: [{ url, etag: createHash('md5').update(body).digest('hex'), size: body.length }],
          },
        ],
        parameters: { n: i },
      }),
    );
  }
  await writeFile(file, `${lines.join('\n')}\n`);
}

/** The analysis' own run as the agent sees it: spawning `true` and waiting for it to exit. */
async function analysisMs(samples: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < samples; i++) {
    const started = performance.now();
    await new Promise<void>((resolve, reject) => {
      const child = spawn('true', [], { stdio: 'ignore', detached: true });
      child.on('error', reject);
      child.on('close', () => resolve());
    });
    times.push(performance.now() - started);
  }
  return median(times);
}

/** Runs `command` and resolves when it has exited with 0 (a failing step would make the floor look lower than it is). */
function exited(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: 'ignore' });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${command} ${args.join(' ')} exited ${code}`))));
  });
}

/** CPU seconds of this process's children that have exited (Linux: cutime + cstime in /proc/self/stat). */
function childrenCpuS(): number {
  const stat = readFileSync('/proc/self/stat', 'latin1');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) / CLOCK_TICKS;
}

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/**
 * The processes a `local` job starts as caas is built, and nothing else, in CONCURRENCY slots: a bare
 * Node start (the agent, without NODE_EXTRA_CA_CERTS as the launcher starts it), then the same with
 * the job's other processes (the code check's `git status`, the watchdog's bash, the analysis) and a
 * temporary folder made and removed. The launcher starts an agent and its watchdog ahead of their
 * job, so the wall time of this serial schedule is not a bound on a machine with more cores than
 * slots; their CPU time spread over every core is, whatever the schedule.
 */
async function processFloor(jobs: number, repo: string, tmp: string, env: NodeJS.ProcessEnv) {
  const agentEnv = { ...env };
  delete agentEnv.NODE_EXTRA_CA_CERTS;
  const inSlots = async (job: () => Promise<void>): Promise<{ wallS: number; cpuS: number }> => {
    const started = performance.now();
    const cpuBefore = childrenCpuS();
    let next = 0;
    const slot = async () => {
      while (next++ < jobs) await job();
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, slot));
    return { wallS: (performance.now() - started) / 1000, cpuS: childrenCpuS() - cpuBefore };
  };
  const node = await inSlots(() => exited(process.execPath, ['-e', '0'], tmp, agentEnv));
  const withHelpers = await inSlots(async () => {
    const folder = await mkdtemp(path.join(tmp, 'floor-'));
    await exited(process.execPath, ['-e', '0'], folder, agentEnv);
    await exited('git', ['-C', repo, '--no-optional-locks', 'status', '--porcelain=v2', '--branch', '--', '.'], folder, env);
    await exited('bash', ['-c', ':'], folder, env);
    await exited('true', [], folder, env);
    // The agent's exit handler removes its folder in-process (the watchdog's `rm` is a fallback).
    await rm(folder, { recursive: true, force: true });
  });
  return { node, withHelpers };
}

async function records(home: string): Promise<MetadataRecord[]> {
  const db = await openDatabase('sqlite:', { home, readOnly: true, mustExist: true });
  try {
    const out: MetadataRecord[] = [];
    for await (const record of db.find({})) out.push(record);
    return out;
  } finally {
    await db.close();
  }
}

/**
 * Each job's own process and temporary folder, from what its agent wrote into its certificate (its
 * pid and work folder): every job of a `local` run must name an agent process other than the
 * runner's and a folder no other job used; a pid seen twice must belong to jobs that did not
 * overlap (the system reuses pids, never while a process lives).
 */
async function isolation(
  home: string,
  done: MetadataRecord[],
): Promise<{ pids: number; folders: number; shared: string[]; reused: string[] }> {
  const seen = new Map<number, { start: number; end: number }[]>();
  const folders = new Set<string>();
  // Jobs whose agent shared a process (with the runner or another job), or a folder with another job.
  const shared: string[] = [];
  const reused: string[] = [];
  for (const record of done) {
    const logs = record.job?.logs.replace(/^file:\/\//, '') ?? '';
    const certificate = await readFile(path.join(home, 'buckets', logs, 'certificate.txt'), 'utf8').catch(() => '');
    const named = /pid (\d+), work folder (.+?)\)$/m.exec(certificate);
    if (!named) {
      shared.push(`${record._id.slice(0, 12)}: its certificate names no agent pid and work folder`);
      reused.push(`${record._id.slice(0, 12)}: its certificate names no work folder`);
      continue;
    }
    const pid = Number(named[1]);
    const window = { start: Date.parse(record.start ?? ''), end: Date.parse(record.end ?? '') };
    if (pid === record.attempts[0]?.owner.pid) shared.push(`${record._id.slice(0, 12)}: its agent ran in the runner's process`);
    if ((seen.get(pid) ?? []).some((w) => w.start <= window.end && window.start <= w.end)) {
      shared.push(`${record._id.slice(0, 12)}: agent pid ${pid} served two jobs at once`);
    }
    seen.set(pid, [...(seen.get(pid) ?? []), window]);
    if (folders.has(named[2]!)) reused.push(`${record._id.slice(0, 12)}: work folder ${named[2]} used twice`);
    folders.add(named[2]!);
  }
  return { pids: seen.size, folders: folders.size, shared, reused };
}

interface Phase {
  measurements: Measurement[];
  targets: TargetCheck[];
}

type Compute = 'local' | 'inline';

/** Jobs one at a time: the overhead per job, from the records' own timestamps, less the analysis. */
async function latency(compute: Compute, options: BenchOptions, jobs: number, env: NodeJS.ProcessEnv, analysis: number) {
  const dir = path.join(options.workDir, compute);
  const home = path.join(dir, 'latency');
  const file = path.join(dir, 'latency.jsonl');
  await jobFile(home, file, jobs, 0);
  await runCaas(['--home', home, 'run', file, '--execute', '--concurrency', '1', '--compute', compute, '--quiet'], { env });
  const done = await records(home);
  const at = (iso: string | null) => Date.parse(iso ?? '');
  const claimToRecordMs = done.map((r) => at(r.updated) - at(r.attempts[0]!.started));
  // The record's start and end are the agent's own (its status file): what lies outside them is the
  // runner's share (claim, config and submit files, hand-over, verify, record).
  const runnerMs = done.map((r) => at(r.start) - at(r.attempts[0]!.started) + (at(r.updated) - at(r.end)));
  const agentMs = done.map((r) => at(r.end) - at(r.start));
  const sorted = [...claimToRecordMs].sort((a, b) => a - b);
  const p90 = sorted[Math.floor(sorted.length * 0.9)] ?? Number.NaN;
  return { home, done, claimToRecordMs: median(claimToRecordMs), p90, runnerMs: median(runnerMs), agentMs: median(agentMs), analysis };
}

/** Planning cost per job (a dry run of the batch less one of a single job), then the batch at --concurrency CONCURRENCY. */
async function batch(compute: Compute, options: BenchOptions, jobs: number, env: NodeJS.ProcessEnv) {
  const dir = path.join(options.workDir, compute);
  const home = path.join(dir, 'batch');
  const file = path.join(dir, 'batch.jsonl');
  await jobFile(home, file, jobs, 0);
  const one = path.join(dir, 'one.jsonl');
  await jobFile(path.join(dir, 'one'), one, 1, 0);
  const dryOne = await runCaas(['--home', home, 'run', one, '--quiet'], { env });
  const dryAll = await runCaas(['--home', home, 'run', file, '--quiet'], { env });
  const planMs = (Math.max(0, dryAll.wallS - dryOne.wallS) * 1000) / (jobs - 1);
  const cpuBefore = childrenCpuS();
  const run = await runCaas(
    ['--home', home, 'run', file, '--execute', '--concurrency', String(CONCURRENCY), '--compute', compute, '--quiet'],
    { env },
  );
  // The runner's CPU and, as it waits for them, its agents' and theirs (the detached watchdogs aside).
  const cpuS = childrenCpuS() - cpuBefore;
  return { home, done: await records(home), planMs, wallS: run.wallS, cpuS };
}

/** One backend's figures and verdicts; `local` is held to the issue's targets, `inline` is the baseline beside it. */
async function report(
  compute: Compute,
  lat: Awaited<ReturnType<typeof latency>>,
  bat: Awaited<ReturnType<typeof batch>>,
  tmp: string,
): Promise<Phase> {
  const label = `--compute ${compute}`;
  const jobs = lat.done.length + bat.done.length;
  const overheadMs = lat.claimToRecordMs - lat.analysis + bat.planMs;
  const batchJobs = bat.done.length;
  const batchTarget = TARGET_S_PER_1000 * (batchJobs / 1000);
  const succeeded = [...lat.done, ...bat.done].filter((r) => r.status === 'succeeded').length;
  const own = [await isolation(lat.home, lat.done), await isolation(bat.home, bat.done)];
  const pids = own[0]!.pids + own[1]!.pids;
  const folders = own[0]!.folders + own[1]!.folders;
  const shared = own.flatMap((o) => o.shared);
  const reused = own.flatMap((o) => o.reused);
  const left = (await readdir(tmp)).filter((name) => name.startsWith('caas-job-')).length;
  const measurements: Measurement[] = [
    {
      subject: `${label}: claim to record, per job (median)`,
      value: lat.claimToRecordMs,
      unit: 'ms',
      detail: `p90 ${formatNumber(lat.p90)} ms, from the records' own timestamps`,
    },
    { subject: '  of which the runner', value: lat.runnerMs, unit: 'ms', detail: 'claim, job files, hand-over; verify, record' },
    {
      subject: '  of which the agent (analysis included)',
      value: lat.agentMs,
      unit: 'ms',
      detail: 'stage, check code, run, upload, end.txt',
    },
    {
      subject: `${label}: plan per job`,
      value: bat.planMs,
      unit: 'ms',
      detail: 'validate, identity, gate: dry run of the batch less one job',
    },
    { subject: `${label}: caas overhead per job (median)`, value: overheadMs, unit: 'ms', detail: 'claim to record - analysis + plan' },
    {
      subject: `${label}: ${formatNumber(batchJobs)} jobs at --concurrency ${CONCURRENCY}`,
      value: bat.wallS,
      unit: 's',
      detail: `${formatNumber(batchJobs / bat.wallS)} jobs/s; the whole \`caas run --execute\`, start-up included`,
    },
    {
      subject: `${label}: CPU a job, in that run`,
      value: (bat.cpuS * 1000) / batchJobs,
      unit: 'ms',
      detail: 'the runner, its agents and their processes, start-up included',
    },
    {
      subject: `${label}: agent processes / temporary folders`,
      value: pids,
      unit: 'processes',
      detail: `${formatNumber(folders)} folders for ${formatNumber(jobs)} jobs, ${left} left behind (from each job's certificate)`,
    },
  ];
  const targets: TargetCheck[] = [
    verify(`${label}: every job recorded as succeeded`, `${succeeded} of ${jobs}`, succeeded === jobs),
    verify(
      `${label}: each job in a temporary folder of its own, none left behind`,
      `${folders} folders for ${jobs} jobs, ${left} left${reused.length > 0 ? `; ${reused[0]}` : ''}`,
      folders === jobs && left === 0 && reused.length === 0,
    ),
  ];
  if (compute === 'local') {
    targets.push(
      verify(
        `${label}: each job in an agent process of its own`,
        shared.length === 0 ? `${pids} agent pids for ${jobs} jobs, none the runner's, none serving two jobs` : shared[0]!,
        shared.length === 0,
      ),
      check(`${label}: overhead per job <= 35 ms (median)`, `${formatNumber(overheadMs)} ms`, overheadMs <= 35),
      check(
        `${label}: ${formatNumber(batchJobs)} jobs at --concurrency ${CONCURRENCY} <= ${formatNumber(batchTarget)} s`,
        `${formatNumber(bat.wallS)} s`,
        bat.wallS <= batchTarget,
      ),
    );
  }
  return { measurements, targets };
}

/** What a throughput target leaves for caas's own work once the processes a job needs have run. */
function leftFor(leftS: number, targetS: number, jobs: number): string {
  if (leftS <= 0) return `the ${formatNumber(targetS)} s target is below this floor: it leaves caas no time at all`;
  const cpuMs = (leftS * 1000 * availableParallelism()) / jobs;
  return `of the ${formatNumber(targetS)} s target this leaves ${formatNumber(leftS)} s, ${formatNumber(cpuMs)} ms of CPU a job, for all of caas's own work`;
}

export async function benchPerJob(options: BenchOptions): Promise<BenchReport> {
  const sizes = { latencyJobs: options.quick ? 20 : 100, batchJobs: options.quick ? 100 : 1000 };
  const repo = path.join(options.workDir, 'analyses');
  await analysisRepo(repo);
  // The jobs' temporary folders go here, so the benchmark can see that none is left behind.
  const tmp = path.join(options.workDir, 'tmp');
  await mkdir(tmp, { recursive: true });
  const env = { ...process.env, CAAS_ANALYSES: repo, NO_COLOR: '1', TMPDIR: tmp };
  const analysis = await analysisMs(30);
  // Interleaved, local then inline at each step, so both see the same machine load.
  const latLocal = await latency('local', options, sizes.latencyJobs, env, analysis);
  const latInline = await latency('inline', options, sizes.latencyJobs, env, analysis);
  const batLocal = await batch('local', options, sizes.batchJobs, env);
  const batInline = await batch('inline', options, sizes.batchJobs, env);
  const floor = await processFloor(sizes.batchJobs, path.join(repo, 'noop'), tmp, env);
  const batchTarget = TARGET_S_PER_1000 * (sizes.batchJobs / 1000);
  const cores = availableParallelism();
  // The bound no schedule beats: the CPU those processes need, spread over every core.
  const floorS = floor.withHelpers.cpuS / cores;
  const local = await report('local', latLocal, batLocal, tmp);
  const inline = await report('inline', latInline, batInline, tmp);
  return {
    name: 'per-job',
    title: `per-job overhead: a no-op analysis (\`true\`), file store, SQLite (${sizes.latencyJobs} jobs one at a time; ${formatNumber(sizes.batchJobs)} at --concurrency ${CONCURRENCY}), local beside inline`,
    measurements: [
      { subject: 'the analysis itself (spawn `true`, wait)', value: analysis, unit: 'ms', detail: 'median of 30, measured apart' },
      ...local.measurements,
      ...inline.measurements,
      {
        subject: `local / inline, ${formatNumber(sizes.batchJobs)} jobs at --concurrency ${CONCURRENCY}`,
        value: batLocal.wallS / batInline.wallS,
        unit: 'x',
        detail: 'the price of one agent process per job, in the same run',
      },
      {
        subject: `floor: ${formatNumber(sizes.batchJobs)} bare Node starts in ${CONCURRENCY} slots`,
        value: floor.node.wallS,
        unit: 's',
        detail: `\`node -e 0\` as the agent is started, nothing else; ${formatNumber(floor.node.cpuS)} s of CPU on ${cores} cores`,
      },
      {
        subject: "floor: the same with each job's other processes",
        value: floor.withHelpers.wallS,
        unit: 's',
        detail: `git status, bash and true per job, in a folder of its own; ${formatNumber(floor.withHelpers.cpuS)} s of CPU on ${cores} cores`,
      },
      {
        subject: 'floor: their CPU spread over every core',
        value: floorS,
        unit: 's',
        detail: leftFor(batchTarget - floorS, batchTarget, sizes.batchJobs),
      },
    ],
    targets: [...local.targets, ...inline.targets],
    notes: [
      'local is the default: one agent process per job, as one instance per job in the cloud; inline, the baseline, keeps the agent in the runner and gives only the analysis a fresh process and folder',
      'targets apply to local; inline is measured beside it, in the same run, interleaved step by step',
      'the floor rows start the processes a local job starts as caas is built (a Node agent, git for the code check, bash for the watchdog, the analysis) and do nothing in them; the CPU they take, spread over every core, is a time no local run of this design beats on this machine',
    ],
  };
}
