import { readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blueprintProblems } from '../../cli/commands/blueprint.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
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
    for (const field of ['bucket', 'ami', 'volume_gb', 'groups.0.name', 'typo']) {
      expect(
        problems.some((p) => p.startsWith(`${field}: `)),
        `${field} in ${problems.join('\n')}`,
      ).toBe(true);
    }
  });

  it('refuses a key that is neither a field nor a launcher section, listing the fields and the sections', async () => {
    const file = path.join(scratch, 'typo.json');
    await writeFile(file, JSON.stringify({ bucket: 'mock-wait', instnce_type: 't3.small' }));
    expect(await blueprintProblems(file)).toEqual([
      expect.stringMatching(
        /^instnce_type: unknown key: expected a blueprint field \(bucket, .*instance_type, .*\) or a launcher's section \(batch: /,
      ),
    ]);
  });

  it("checks a launcher's section with that launcher's schema, naming the path of the bad field", async () => {
    const file = path.join(scratch, 'section.json');
    await writeFile(file, JSON.stringify({ bucket: 'mock-wait', batch: { job_queue: 'q', vcpus: -1 } }));
    expect(await blueprintProblems(file)).toEqual([
      expect.stringMatching(/^batch\.job_definition: /),
      expect.stringMatching(/^batch\.vcpus: /),
    ]);
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
});
