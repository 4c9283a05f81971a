import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blueprintProblems } from '../../cli/commands/blueprint.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = path.join(ROOT, 'bin/caas.js');
const ANALYSES = readdirSync(path.join(ROOT, 'analyses'), { withFileTypes: true })
  .filter((e) => e.isDirectory())
  .map((e) => e.name);

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'caas-blueprint-'));
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

describe('blueprints', () => {
  it.each(ANALYSES)('analyses/%s/blueprint.json is valid', async (name) => {
    expect(await blueprintProblems(path.join(ROOT, 'analyses', name, 'blueprint.json'))).toEqual([]);
  });

  it('reports every problem of a file with the path of the bad field', async () => {
    const file = path.join(scratch, 'bad.json');
    await writeFile(
      file,
      JSON.stringify({
        bucket: 'Not_A_Bucket',
        ami: 'ubuntu',
        volume_gb: 4,
        instance_type: 'p4d.24xlarge',
        allowed_instance_types: ['t3.micro'],
        groups: [{ name: '' }],
        typo: 1,
      }),
    );
    const problems = await blueprintProblems(file);
    for (const field of ['bucket', 'ami', 'volume_gb', 'groups.0.name', '(root)']) {
      expect(
        problems.some((p) => p.startsWith(`${field}: `)),
        `${field} in ${problems.join('\n')}`,
      ).toBe(true);
    }
    expect(problems.find((p) => p.startsWith('(root)'))).toMatch(/typo/);
  });

  it('reports an instance_type outside allowed_instance_types on instance_type', async () => {
    const file = path.join(scratch, 'type.json');
    await writeFile(file, JSON.stringify({ bucket: 'mock-wait', instance_type: 'p4d.24xlarge', allowed_instance_types: ['t3.micro'] }));
    expect(await blueprintProblems(file)).toEqual(['instance_type: instance_type must be one of allowed_instance_types']);
  });

  it('reports a file that is not JSON, or missing, instead of throwing', async () => {
    const file = path.join(scratch, 'broken.json');
    await writeFile(file, '{ "bucket": ');
    expect(await blueprintProblems(file)).toEqual([expect.stringMatching(/^not JSON: /)]);
    expect(await blueprintProblems(path.join(scratch, 'absent.json'))).toEqual([expect.stringMatching(/^cannot read the file: /)]);
  });

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
