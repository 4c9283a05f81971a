import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { openDatabase } from '../../backends/db/index.ts';
import type { MetadataRecord } from '../../models/record.ts';
import type { PlanEntry } from '../../wrapper/gate.ts';
import { type RunSummary, runBatch } from '../../wrapper/run.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = path.join(ROOT, 'bin/caas.js');

/**
 * A scratch folder inside the project tree (.test-tmp/, git-ignored), so analyses copied into it
 * still resolve `zod` and `caas/analysis` from the project's node_modules.
 */
export function scratchDir(label: string): string {
  const dir = path.join(ROOT, '.test-tmp', `${label}-${randomBytes(4).toString('hex')}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * A scratch folder outside /tmp and TMPDIR, for what must look durable (the S3 event handler refuses
 * a database there): under the checkout, unless the checkout itself is in a temporary folder, then
 * under /var/tmp.
 */
export function durableScratchDir(label: string): string {
  const temporary = [...new Set(['/tmp', tmpdir()])].some((dir) => ROOT.startsWith(`${dir}${path.sep}`));
  if (!temporary) return scratchDir(label);
  return mkdtempSync(path.join('/var/tmp', `caas-${label}-`));
}

/** The one data file a test's mock-wait jobs read, `{base}/data/session.json`, written with `body`. */
export function sessionFile(base: string, body = '{}\n'): string {
  const file = path.join(base, 'data', 'session.json');
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, body);
  return file;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** git in `cwd` with a fixed author, so commits work on a machine with no git identity. */
export function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, {
    cwd,
    encoding: 'utf8',
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: 'test',
      GIT_AUTHOR_EMAIL: 't@example.org',
      GIT_COMMITTER_NAME: 'test',
      GIT_COMMITTER_EMAIL: 't@example.org',
    },
  }).trim();
}

/** A real git repository holding copies of built-in analyses, for CAAS_ANALYSES. */
export class AnalysisRepo {
  readonly dir: string;

  constructor(base: string, analyses: string[] = ['mock-wait']) {
    this.dir = path.join(base, 'analyses-repo');
    mkdirSync(this.dir, { recursive: true });
    for (const name of analyses) cpSync(path.join(ROOT, 'analyses', name), path.join(this.dir, name), { recursive: true });
    git(this.dir, 'init', '-q');
    git(this.dir, 'remote', 'add', 'origin', 'https://example.org/lab/analyses.git');
    this.commit('analyses');
  }

  commit(message: string): string {
    git(this.dir, 'add', '-A');
    git(this.dir, 'commit', '-q', '--allow-empty', '-m', message);
    return this.head();
  }

  head(): string {
    return git(this.dir, 'rev-parse', 'HEAD');
  }

  write(relative: string, text: string): void {
    writeFileSync(path.join(this.dir, relative), text);
  }

  /**
   * Adds (and commits) an analysis whose command is `bash run.sh` with this script. Its parameters
   * are free-form strings ({"mode": "..."} reaches the script as $CAAS_CONFIG); its bucket is its name.
   */
  addScriptAnalysis(name: string, script: string, blueprint: Record<string, unknown> = {}): void {
    const dir = path.join(this.dir, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'run.sh'), script);
    writeFileSync(
      path.join(dir, 'blueprint.json'),
      `${JSON.stringify({ bucket: name, max_runtime_minutes: 10, groups: [{ name: 'caas' }], ...blueprint }, null, 2)}\n`,
    );
    writeFileSync(
      path.join(dir, 'index.ts'),
      [
        "import { defineAnalysis } from 'caas/analysis';",
        "import { z } from 'zod';",
        "import blueprint from './blueprint.json' with { type: 'json' };",
        '',
        'export default defineAnalysis({',
        `  name: ${JSON.stringify(name)},`,
        "  version: '1.0.0',",
        '  parameters: z.object({ mode: z.string().default(""), marker: z.string().optional() }).strict(),',
        "  command: ['bash', '$' + '{analysis_dir}/run.sh'],",
        '  blueprint,',
        '});',
        '',
      ].join('\n'),
    );
    this.commit(`add ${name}`);
  }
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the real CLI as a user would (`caas ...`), in its own process. `input` may be a stream, for
 * stdin too large to hold; `nodeArgs` go to node itself (e.g. `--import` a probe).
 */
export function runCli(
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; input?: string | Readable; nodeArgs?: string[] } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...(options.nodeArgs ?? []), CLI, ...args], {
      cwd: options.cwd ?? ROOT,
      env: { ...process.env, NO_COLOR: '1', ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    // A CLI that exits before reading all of stdin closes the pipe: its exit code tells, not EPIPE.
    child.stdin.on('error', () => {});
    if (typeof options.input === 'object') options.input.pipe(child.stdin);
    else child.stdin.end(options.input ?? '');
  });
}

/** sha256 over every file's path, mode and bytes (and every folder's path): equal digests mean an identical tree. */
export function treeDigest(dir: string): string {
  const hash = createHash('sha256');
  const walk = (rel: string) => {
    const full = path.join(dir, rel);
    let entries: string[];
    try {
      entries = readdirSync(full).sort();
    } catch {
      return;
    }
    for (const name of entries) {
      const childRel = path.join(rel, name);
      const info = statSync(path.join(dir, childRel));
      hash.update(`${childRel}\0${info.mode}\0${info.isDirectory() ? 'dir' : info.size}\0`);
      if (info.isDirectory()) walk(childRel);
      else hash.update(readFileSync(path.join(dir, childRel)));
    }
  };
  walk('');
  return hash.digest('hex');
}

/**
 * `caas run`'s dry-run plan of one job for each of `analyses` (in the repo's folder) over one empty
 * local file, for tests of what loading an analysis refuses or accepts.
 */
export async function planOneJobEach(
  base: string,
  repo: AnalysisRepo,
  analyses: readonly string[],
  compute = 'local',
): Promise<{ entries: PlanEntry[]; summary: RunSummary }> {
  const data = path.join(base, 'session.json');
  writeFileSync(data, '{}\n');
  const source = path.join(base, 'jobs.jsonl');
  writeFileSync(source, `${analyses.map((analysis) => mockJob('a', {}, data, { analysis })).join('\n')}\n`);
  const entries: PlanEntry[] = [];
  process.env.CAAS_ANALYSES = repo.dir;
  try {
    const summary = await runBatch(
      {
        source,
        home: path.join(base, 'home'),
        storeUrl: 'file:',
        dbUrl: 'sqlite:',
        compute,
        execute: false,
        concurrency: 1,
        allowDirty: false,
        leaseMs: 60_000,
      },
      { plan: (chunk) => entries.push(...chunk), warn: () => {}, result: () => {} },
    );
    return { entries, summary };
  } finally {
    delete process.env.CAAS_ANALYSES;
  }
}

/** A job input line for mock-wait over one local file. */
export function mockJob(assetId: string, parameters: Record<string, unknown>, file: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    analysis: 'mock-wait',
    inputs: [{ asset_id: assetId, name: assetId, location: `file://${path.dirname(file)}/`, files: [{ url: `file://${file}` }] }],
    parameters,
    ...extra,
  });
}

/** Every record in a workspace's embedded metadata DB, read-only. */
export async function readRecords(home: string): Promise<MetadataRecord[]> {
  const db = await openDatabase('sqlite:', { home, readOnly: true });
  const found: MetadataRecord[] = [];
  for await (const record of db.find({})) found.push(record);
  await db.close();
  return found;
}
