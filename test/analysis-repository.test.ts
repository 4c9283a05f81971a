import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AnalysisRepo, ROOT, runCli } from './support/workspace.ts';

/** Outside the project tree: no package.json and no node_modules anywhere above the analyses. */
const base = realpathSync(mkdtempSync(path.join(tmpdir(), 'caas-analysis-repo-')));
afterAll(() => rmSync(base, { recursive: true, force: true }));

/** `caas` on the PATH, as `npm install -g` or `npx` would put it. */
function caasOnPath(): string {
  const bin = path.join(base, 'bin');
  mkdirSync(bin, { recursive: true });
  writeFileSync(path.join(bin, 'caas'), `#!/bin/sh\nexec '${process.execPath}' '${path.join(ROOT, 'bin/caas.js')}' "$@"\n`);
  chmodSync(path.join(bin, 'caas'), 0o755);
  return bin;
}

/** The sh block of a docs file that starts with `first`, and the block right after it (its output). */
function docsBlock(file: string, first: string): { script: string; output: string } {
  const docs = readFileSync(path.join(ROOT, file), 'utf8');
  const match = new RegExp(`\`\`\`sh\\n(${first.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}[^]*?)\`\`\`\\n\`\`\`\\n([^]*?)\`\`\``).exec(docs);
  if (!match) throw new Error(`${file} has no sh block starting with "${first}"`);
  return { script: match[1]!, output: match[2]! };
}

function bash(script: string, cwd: string, env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('bash', ['-e', '-c', script], { cwd, env: { ...process.env, NO_COLOR: '1', ...env } }, (error, stdout, stderr) =>
      resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('an analysis repository of its own, outside the caas tree', () => {
  it('runs the provenance walk-through of docs/provenance.md as written', { timeout: 180_000 }, async () => {
    const { script, output } = docsBlock('docs/provenance.md', 'mkdir analyses');
    const lab = path.join(base, 'lab');
    mkdirSync(lab);
    const run = await bash(script.replaceAll('/path/to/caas', ROOT), lab, {
      PATH: `${caasOnPath()}${path.delimiter}${process.env.PATH}`,
      // The walk-through's git commit needs an identity; a test machine may have none.
      GIT_AUTHOR_NAME: 'lab',
      GIT_AUTHOR_EMAIL: 'lab@example.org',
      GIT_COMMITTER_NAME: 'lab',
      GIT_COMMITTER_EMAIL: 'lab@example.org',
    });
    expect(run.stderr).not.toMatch(/ES module|package\.json/);
    expect(run.code, run.stderr).toBe(0);
    // generate-sample says what it imported first; the run ends with the lines the docs show.
    expect(run.stdout.endsWith(output), run.stdout).toBe(true);
    expect(readFileSync(path.join(lab, 'jobs.jsonl'), 'utf8').trim().split('\n')).toHaveLength(6);
  });

  it('refuses an analysis whose index.ts cannot be loaded as invalid input: exit 2, one line naming the file', async () => {
    const repo = new AnalysisRepo(path.join(base, 'broken'), ['mock-wait']);
    repo.write(
      'mock-wait/index.ts',
      "import { defineAnalysis } from 'caas/analysis';\nexport default defineAnalysis({ name: 'mock-wait', \n",
    );
    repo.commit('a syntax error');
    const env = { CAAS_ANALYSES: repo.dir };
    const home = path.join(base, 'broken', 'home');
    const index = path.join(repo.dir, 'mock-wait', 'index.ts');

    const dispatched = await runCli(['--home', home, 'dispatch', '--s3-prefix', `file://${repo.dir}/`, '--analysis', 'mock-wait'], { env });
    expect(dispatched.code).toBe(2);
    expect(dispatched.stderr).toMatch(new RegExp(`^caas: --analysis: ${index} could not be loaded: .+\\n$`));

    const job = JSON.stringify({
      analysis: 'mock-wait',
      inputs: [{ asset_id: 'a', name: 'a', location: `file://${repo.dir}/` }],
      parameters: {},
    });
    const planned = await runCli(['--home', home, 'run', '-', '--execute'], { env, input: `${job}\n` });
    expect(planned.code).toBe(2);
    expect(planned.stdout).toMatch(new RegExp(`INVALID .*analysis: ${index} could not be loaded`));
  });
});
