import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** The blueprint command as a user runs it; the checks themselves are in unit/blueprint.test.ts. */
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
