import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { analysisOwningBucket } from '../wrapper/analysis-bucket.ts';
import { AnalysisRepo, planOneJobEach, removeDir, scratchDir } from './support/workspace.ts';

/**
 * The blueprint command as a user runs it, and the same check where analyses are loaded to run;
 * the checks themselves are in unit/blueprint.test.ts.
 */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'bin/caas.js');

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'caas-blueprint-cli-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

async function caas(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, [CLI, ...args], { cwd: ROOT }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => error,
  );
}

describe('caas blueprint', () => {
  it('caas blueprint validate: "ok" and exit 0 for valid files, file: field: message and exit 2 otherwise', async () => {
    const good = path.join(ROOT, 'analyses/mock-wait/blueprint.json');
    const ok = await caas('blueprint', 'validate', good);
    expect(ok).toMatchObject({ code: 0, stdout: `${good}: ok\n` });

    const bad = path.join(scratch, 'bad-limit.json');
    await writeFile(bad, JSON.stringify({ bucket: 'mock-wait', deploy_limit: 0 }));
    const failed = await caas('blueprint', 'validate', good, bad);
    expect(failed.code).toBe(2);
    expect(failed.stdout).toBe(`${good}: ok\n`);
    expect(failed.stderr).toMatch(new RegExp(`^${bad}: deploy_limit: .+\\n$`));
  });
});

describe('a blueprint loaded to run', () => {
  let base: string;
  let repo: AnalysisRepo;
  beforeAll(() => {
    base = scratchDir('blueprint-run');
    repo = new AnalysisRepo(base, []);
    repo.addScriptAnalysis('typo-key', 'exit 0\n', { instnce_type: 't3.small' });
    repo.addScriptAnalysis('half-batch', 'exit 0\n', { batch: { job_queue: 'q' } });
    repo.addScriptAnalysis('full-batch', 'exit 0\n', { batch: { job_queue: 'q', job_definition: 'caas:1' } });
  });
  afterAll(() => removeDir(base));

  it('caas run and plan: a key no launcher owns, or an incomplete section, makes the jobs INVALID, naming the file and the field', async () => {
    const { entries, summary } = await planOneJobEach(base, repo, ['typo-key', 'half-batch', 'full-batch']);
    expect(summary.exitCode).toBe(2);
    expect(entries.map((entry) => [entry.action, entry.reason])).toEqual([
      [
        'INVALID',
        expect.stringMatching(
          /typo-key\/blueprint\.json: instnce_type: unknown key: expected a blueprint field \(.*\) or a launcher's section \(batch: /,
        ),
      ],
      ['INVALID', expect.stringMatching(/half-batch\/blueprint\.json: batch\.job_definition: /)],
      ['RUN', undefined],
    ]);
  });

  it('caas watch: the analysis that owns the bucket is refused with the same problem', async () => {
    expect(await analysisOwningBucket('half-batch', [repo.dir])).toMatch(/half-batch\/blueprint\.json: batch\.job_definition: /);
    expect(await analysisOwningBucket('full-batch', [repo.dir])).toMatchObject({ name: 'full-batch' });
  });
});
