import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openDatabase } from '../backends/db/index.ts';
import { registerQuery } from '../cli/commands/query.ts';
import { registerShow } from '../cli/commands/show.ts';
import { registerWhy } from '../cli/commands/why.ts';
import { addGlobalOptions } from '../cli/settings.ts';
import { concluded, owner, recordDraft } from '../fixtures/records.ts';
import { CaasError } from '../models/caas-error.ts';
import type { JobLocation } from '../models/record.ts';
import { git } from './support/workspace.ts';

/**
 * The provenance commands on records made the real way: a git repository holding mock-wait, jobs
 * run by `caas run --execute`, then a parameter, a commit and an input file changed one at a time.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'bin/caas.js');
// Inside the project tree (git-ignored), so the copied analysis resolves zod and caas/analysis.
const BASE = path.join(ROOT, '.test-tmp', `provenance-${randomBytes(4).toString('hex')}`);
const REPO = path.join(BASE, 'analyses');
const HOME = path.join(BASE, 'home');
const DATA = path.join(BASE, 'data');

interface Cli {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The real CLI in its own process, as a user runs it: exit codes come from cli/main.ts. */
function spawnCaas(args: string[], options: { home?: string; input?: string } = {}): Promise<Cli> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, '--home', options.home ?? HOME, ...args], {
      cwd: BASE,
      env: { ...process.env, CAAS_ANALYSES: REPO, NO_COLOR: '1' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d;
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(options.input ?? '');
  });
}

/**
 * The same commands in this process (a process start costs seconds here), with cli/main.ts's rule
 * for errors: invalid input exits 2 with one "caas: ..." line.
 */
async function caas(args: string[], options: { home?: string } = {}): Promise<Cli> {
  const program = addGlobalOptions(new Command('caas')).exitOverride();
  registerQuery(program);
  registerShow(program);
  registerWhy(program);
  let stdout = '';
  let stderr = '';
  const capture = (sink: (text: string) => void) => (chunk: string | Uint8Array) => {
    sink(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString());
    return true;
  };
  const out = vi.spyOn(process.stdout, 'write').mockImplementation(capture((t) => (stdout += t)) as never);
  const err = vi.spyOn(process.stderr, 'write').mockImplementation(capture((t) => (stderr += t)) as never);
  const cwd = process.cwd();
  process.chdir(BASE);
  process.exitCode = undefined;
  let code: number;
  try {
    await program.parseAsync(['node', 'caas', '--home', options.home ?? HOME, ...args]);
    code = Number(process.exitCode ?? 0);
  } catch (error) {
    if (!(error instanceof CaasError || error instanceof CommanderError)) throw error;
    if (error instanceof CaasError) stderr += `caas: ${error.message}\n`;
    code = error instanceof CaasError ? error.exitCode : 2;
  } finally {
    out.mockRestore();
    err.mockRestore();
    process.chdir(cwd);
    process.exitCode = undefined;
  }
  return { code, stdout, stderr };
}

const md5 = (file: string) => createHash('md5').update(readFileSync(file)).digest('hex');

/** A mock-wait job over one local file, with the file's etag and size as the dispatcher lists them. */
function job(asset: string, file: string, parameters: Record<string, unknown>): string {
  const full = path.join(DATA, file);
  return JSON.stringify({
    analysis: 'mock-wait',
    inputs: [
      {
        asset_id: asset,
        name: `ecephys_${asset}`,
        location: `file://${DATA}/`,
        files: [{ url: `file://${full}`, etag: md5(full), size: readFileSync(full).length }],
      },
    ],
    parameters,
  });
}

const lines = (text: string) => text.split('\n').filter(Boolean);
const jsonLines = (text: string) => lines(text).map((l) => JSON.parse(l) as Record<string, unknown>);

let firstCommit: string;
let ids: { ok: string; failed: string; other: string };

beforeAll(async () => {
  process.env.CAAS_ANALYSES = REPO;
  mkdirSync(DATA, { recursive: true });
  cpSync(path.join(ROOT, 'analyses/mock-wait'), path.join(REPO, 'mock-wait'), { recursive: true });
  git(REPO, 'init', '-q');
  git(REPO, 'add', '-A');
  git(REPO, 'commit', '-q', '-m', 'mock-wait');
  firstCommit = git(REPO, 'rev-parse', 'HEAD');
  writeFileSync(path.join(DATA, 'a.bin'), 'spikes-a');
  writeFileSync(path.join(DATA, 'b.bin'), 'spikes-b');
  writeFileSync(
    path.join(BASE, 'jobs.jsonl'),
    `${[job('a1', 'a.bin', { wait: 0 }), job('a2', 'b.bin', { wait: 0, fail: true }), job('a3', 'b.bin', { wait: 0.1 })].join('\n')}\n`,
  );
  const run = await spawnCaas(['run', 'jobs.jsonl', '--execute', '--json']);
  expect(run.code, run.stderr).toBe(1);
  const results = jsonLines(run.stdout).filter((l) => l.type === 'result');
  const idOf = (line: number) => results.find((r) => r.where === `jobs.jsonl:${line}`)?.identity as string;
  ids = { ok: idOf(1), failed: idOf(2), other: idOf(3) };
});

afterAll(() => {
  delete process.env.CAAS_ANALYSES;
  rmSync(BASE, { recursive: true, force: true });
});

describe('caas query', () => {
  it('lists every record in a table with the default columns, newest first', async () => {
    const out = await caas(['query']);
    expect(out.code, out.stderr).toBe(0);
    const [header, ...rows] = lines(out.stdout);
    expect(header).toMatch(/^IDENTITY\s+STATUS\s+ANALYSIS\s+INPUTS\s+PARAMETERS\s+COMMIT\s+END$/);
    expect(rows).toHaveLength(3);
    const failedRow = rows.find((r) => r.startsWith(ids.failed.slice(0, 12)));
    expect(failedRow).toMatch(/failed\s+mock-wait\s+ecephys_a2\s+wait=0,fail=true\s+/);
    expect(failedRow).toContain(firstCommit.slice(0, 8));
  });

  it('shows the parameters that differ between the listed records, or all of them when none differ', async () => {
    const sweep = await caas(['query', '{"parameters.fail":false}', '--sort', 'parameters.wait']);
    expect(lines(sweep.stdout).slice(1)).toEqual([
      expect.stringMatching(new RegExp(`^${ids.ok.slice(0, 12)}\\s+succeeded\\s+mock-wait\\s+ecephys_a1\\s+wait=0\\s+`)),
      expect.stringMatching(new RegExp(`^${ids.other.slice(0, 12)}\\s+succeeded\\s+mock-wait\\s+ecephys_a3\\s+wait=0\\.1\\s+`)),
    ]);
    const one = await caas(['query', '--input', 'a1']);
    expect(lines(one.stdout)[1]).toMatch(/\s+wait=0,fail=false\s+/);
  });

  it('runs a MongoDB filter and prints JSON lines with --json', async () => {
    const out = await caas(['query', '{"parameters.fail":true}', '--json']);
    expect(out.code, out.stderr).toBe(0);
    const records = jsonLines(out.stdout);
    expect(records.map((r) => r._id)).toEqual([ids.failed]);
    expect(records[0]).toMatchObject({ status: 'failed', analysis: { name: 'mock-wait' } });
  });

  it('--input matches an asset id, an asset name or a file URL', async () => {
    for (const input of ['a1', 'ecephys_a1', `file://${DATA}/a.bin`]) {
      const out = await caas(['query', '--input', input, '--json', '--fields', 'status']);
      expect(jsonLines(out.stdout), input).toEqual([{ _id: ids.ok, status: 'succeeded' }]);
    }
  });

  it('combines a filter with --status, --commit (abbreviated) and --since', async () => {
    const out = await caas([
      'query',
      '{"parameters.wait":{"$gte":0}}',
      '--status',
      'succeeded',
      '--commit',
      firstCommit.slice(0, 7),
      '--since',
      '1h',
      '--json',
    ]);
    expect(out.code, out.stderr).toBe(0);
    expect(
      jsonLines(out.stdout)
        .map((r) => r._id)
        .sort(),
    ).toEqual([ids.ok, ids.other].sort());
    const future = await caas(['query', '--since', '2999-01-01', '--json']);
    expect(future.stdout).toBe('');
  });

  it('--fields selects dotted paths for the table and the JSON, --sort and --limit order and cut', async () => {
    const json = await caas(['query', '--fields', 'parameters.wait,inputs.name', '--sort', '-parameters.wait', '--limit', '1', '--json']);
    expect(jsonLines(json.stdout)).toEqual([{ _id: ids.other, parameters: { wait: 0.1 }, inputs: [{ name: 'ecephys_a3' }] }]);
    const table = await caas(['query', '--fields', 'inputs.name,status', '--sort', 'inputs.name:1']);
    expect(lines(table.stdout)).toEqual([
      expect.stringMatching(/^inputs\.name\s+status$/),
      expect.stringMatching(/^ecephys_a1\s+succeeded$/),
      expect.stringMatching(/^ecephys_a2\s+failed$/),
      expect.stringMatching(/^ecephys_a3\s+succeeded$/),
    ]);
  });

  it('the real CLI exits 2 with one line on an invalid filter', async () => {
    const out = await spawnCaas(['query', '{"status":{"$almost":"failed"}}']);
    expect(out).toMatchObject({ code: 2, stdout: '' });
    expect(out.stderr).toMatch(/^caas: invalid filter: status: unknown query operator \$almost; expected one of \$eq, .*\n$/);
  });

  it('rejects invalid JSON, unknown operators and bad shortcuts with exit 2 and one line', async () => {
    for (const args of [
      ['{"status":'],
      ['{"status":{"$almost":"failed"}}'],
      ['--status', 'done'],
      ['--since', 'yesterday'],
      ['--sort', 'a:up'],
    ]) {
      const out = await caas(['query', ...args]);
      expect(out.code, args.join(' ')).toBe(2);
      expect(lines(out.stderr), args.join(' ')).toHaveLength(1);
      expect(out.stderr).toMatch(/^caas: /);
    }
  });
});

describe('caas show', () => {
  it('shows a record by prefix: attempts, results, logs and a fetch command that works', async () => {
    const out = await caas(['show', ids.ok.slice(0, 10)]);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toContain(`identity      ${ids.ok}`);
    expect(out.stdout).toContain('status        succeeded (attempt 1 of 1)');
    expect(out.stdout).toMatch(/attempts:\n\s+N\s+STATUS.*\n\s+1\s+succeeded/);
    expect(out.stdout).toMatch(
      /results\s+file:\/\/mock-wait\/caas\/results\/job__mock-wait_\S+\/process_results\/\n\s+\/\S+\/home\/buckets\/mock-wait\//,
    );
    const fetch = /^fetch\s+(cp -R \S+ \.\/results)$/m.exec(out.stdout)?.[1];
    expect(fetch).toBeDefined();
    const into = path.join(BASE, 'fetched');
    mkdirSync(into);
    execFileSync('sh', ['-c', fetch!], { cwd: into });
    expect(JSON.parse(readFileSync(path.join(into, 'results/waited.json'), 'utf8'))).toMatchObject({ waited_s: 0 });
  });

  it('shows why a failed record failed', async () => {
    const out = await caas(['show', ids.failed]);
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/^reason\s+exit code 3$/m);
    expect(out.stdout).toContain('mock failure requested');
  });

  it('an unknown identity or a non-hex argument is invalid input (exit 2)', async () => {
    const unknown = await caas(['show', 'f'.repeat(64)]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/no record has an identity starting with f+/);
    expect((await caas(['show', 'not-an-id'])).code).toBe(2);
  });

  it('an ambiguous prefix lists the candidates and exits 2; an S3 record gets an aws s3 cp command', async () => {
    const home = path.join(BASE, 'seeded');
    const db = await openDatabase('sqlite:', { home });
    const seeded: string[] = [];
    for (let seed = 0; seed < 20; seed++) {
      const draft = recordDraft({ seed });
      const job: JobLocation = {
        store: 's3',
        bucket: 'caas-results',
        group: 'test',
        timestamp: `t${seed}`,
        results: `s3://caas-results/test/results/job__caas-results_t${seed}/process_results/`,
        logs: `s3://caas-results/test/results/job__caas-results_t${seed}/logs/`,
      };
      await db.claim(draft._id, { draft, owner: owner('seed'), leaseMs: 60_000, job });
      await db.finish(draft._id, owner('seed'), concluded('succeeded', { results: job.results }));
      seeded.push(draft._id);
    }
    await db.close();
    // Twenty identities over sixteen hex digits: some first digit is shared.
    const prefix = [...'0123456789abcdef'].find((c) => seeded.filter((id) => id.startsWith(c)).length > 1)!;
    const ambiguous = await caas(['show', prefix], { home });
    expect(ambiguous.code).toBe(2);
    for (const id of seeded.filter((i) => i.startsWith(prefix))) expect(ambiguous.stderr).toContain(id);

    const s3 = await caas(['show', seeded[0]!, '--s3-endpoint', 'http://127.0.0.1:4569'], { home });
    expect(s3.code, s3.stderr).toBe(0);
    expect(s3.stdout).toMatch(
      /^fetch\s+aws s3 cp --recursive --endpoint-url http:\/\/127\.0\.0\.1:4569 s3:\/\/caas-results\/test\/results\/job__caas-results_t0\/process_results\/ \.\/results$/m,
    );
    const json = JSON.parse((await caas(['show', seeded[0]!, '--json'], { home })).stdout) as Record<string, unknown>;
    expect(json).toMatchObject({ _id: seeded[0], fetch: expect.stringMatching(/^aws s3 cp --recursive s3:\/\//) });
  });
});

describe('caas why', () => {
  let tunedCommit: string | undefined;
  /** Commits a change to mock-wait once, for whichever test needs it first, and returns that newer commit. */
  function tuneMockWait(): string {
    if (tunedCommit === undefined) {
      appendFileSync(path.join(REPO, 'mock-wait/run.sh'), '# tuned\n');
      git(REPO, 'commit', '-q', '-am', 'tune mock-wait');
      tunedCommit = git(REPO, 'rev-parse', 'HEAD');
    }
    return tunedCommit;
  }

  it('says when a job matches its record, and what run does with it', async () => {
    const ok = await caas(['why', 'jobs.jsonl:1']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`identity ${ids.ok}`);
    expect(ok.stdout).toMatch(/matches record \w{12}, succeeded .*: `caas run` skips it/);
    const failed = await caas(['why', 'jobs.jsonl:2', '--json']);
    expect(JSON.parse(failed.stdout)).toMatchObject({ identity: ids.failed, verdict: 'retry', match: { status: 'failed' } });
  });

  it('names a changed parameter with its recorded and new values', async () => {
    writeFileSync(path.join(BASE, 'param.jsonl'), `${job('a1', 'a.bin', { wait: 0.5 })}\n`);
    const out = await caas(['why', 'param.jsonl']);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toContain('no record has this identity: `caas run` runs it.');
    expect(out.stdout).toMatch(
      new RegExp(
        `record ${ids.ok.slice(0, 12)}\\s+succeeded .* 1 difference\\n  parameters\\.wait: 0 \\(recorded\\) → 0\\.5 \\(this job\\)\\n`,
      ),
    );
  });

  it('names a changed input etag when the file changed', async () => {
    // Same size, new content: only the etag tells them apart.
    writeFileSync(path.join(DATA, 'a.bin'), 'SPIKES-A');
    writeFileSync(path.join(BASE, 'etag.jsonl'), `${job('a1', 'a.bin', { wait: 0 })}\n`);
    const out = await caas(['why', 'etag.jsonl:1', '--json']);
    expect(out.code, out.stderr).toBe(0);
    const report = JSON.parse(out.stdout) as { verdict: string; nearest: { identity: string; differences: unknown[] }[] };
    expect(report.verdict).toBe('run');
    expect(report.nearest[0]).toEqual({
      identity: ids.ok,
      status: 'succeeded',
      created: expect.any(String),
      differences: [
        {
          path: 'inputs[0].files[0].etag',
          recorded: createHash('md5').update('spikes-a').digest('hex'),
          job: md5(path.join(DATA, 'a.bin')),
        },
      ],
    });
    const text = await caas(['why', 'etag.jsonl:1']);
    expect(text.stdout).toMatch(/inputs\[0\]\.files\[0\]\.etag: [0-9a-f]{32} \(recorded\) → [0-9a-f]{32} \(this job\)/);
    expect(text.stdout).toContain('an input file changed since the recorded run');
    writeFileSync(path.join(DATA, 'a.bin'), 'spikes-a');
  });

  it('names a changed commit after the analysis changed, with the git log to read', async () => {
    const second = tuneMockWait();
    const out = await caas(['why', 'jobs.jsonl:3']);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toContain(`code.commit: ${firstCommit} (recorded) → ${second} (this job)`);
    expect(out.stdout).toMatch(/1 difference\n/);
    expect(out.stdout).toContain(`log --oneline ${firstCommit.slice(0, 12)}..${second.slice(0, 12)} -- mock-wait`);
  });

  it('ranks the nearest records by the number of differences', async () => {
    // After the new commit, the a1 job with wait 0.1 differs from record "ok" in two fields and from nothing else on a1.
    tuneMockWait();
    writeFileSync(path.join(BASE, 'two.jsonl'), `${job('a1', 'a.bin', { wait: 0.1 })}\n`);
    const out = await caas(['why', 'two.jsonl', '--json']);
    const report = JSON.parse(out.stdout) as { candidates: number; nearest: { identity: string; differences: { path: string }[] }[] };
    expect(report.candidates).toBe(1);
    expect(report.nearest[0]?.differences.map((d) => d.path)).toEqual(['code.commit', 'parameters.wait']);
    // a3 (wait 0.1) and a2 share b.bin but not an asset id with this job: they are not candidates.
    writeFileSync(path.join(BASE, 'fresh.jsonl'), `${job('a9', 'b.bin', { wait: 0 })}\n`);
    const fresh = await caas(['why', 'fresh.jsonl']);
    expect(fresh.stdout).toContain('no record of mock-wait reads these inputs');
  });

  it('an invalid job, a missing line or an unnamed line in a batch is invalid input (exit 2)', async () => {
    writeFileSync(path.join(BASE, 'bad.jsonl'), `${job('a1', 'a.bin', { wait: 'long' })}\n`);
    const bad = await caas(['why', 'bad.jsonl:1']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/bad\.jsonl:1: parameters\.wait/);
    const missing = await caas(['why', 'jobs.jsonl:9']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('line 9 holds no job');
    const several = await caas(['why', 'jobs.jsonl']);
    expect(several.code).toBe(2);
    expect(several.stderr).toContain('caas why jobs.jsonl:1');
  });

  it('reads one job from stdin', async () => {
    const out = await spawnCaas(['why', '-', '--json'], { input: `${job('a2', 'b.bin', { wait: 0, fail: true })}\n` });
    expect(out.code, out.stderr).toBe(0);
    expect(JSON.parse(out.stdout)).toMatchObject({ where: '<stdin>:1' });
  });
});
