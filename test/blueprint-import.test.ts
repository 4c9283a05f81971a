import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, removeDir, runCli, scratchDir } from './support/workspace.ts';

/** A NeuroCAAS blueprint shaped like the public ones in ncap_blueprints/ (written for these tests). */
const FIXTURE = path.join(ROOT, 'test/fixtures/neurocaas/stack_config_template.json');

let scratch: string;
beforeAll(() => {
  scratch = scratchDir('blueprint-import');
});
afterAll(() => removeDir(scratch));

describe('caas blueprint import, as a NeuroCAAS developer runs it', () => {
  it('prints a caas blueprint that caas blueprint validate accepts, and notes each field on stderr', async () => {
    const imported = await runCli(['blueprint', 'import', FIXTURE]);
    expect(imported.code, imported.stderr).toBe(0);
    const blueprint = JSON.parse(imported.stdout);
    expect(blueprint).toMatchObject({
      bucket: 'spikesort-ncap-web',
      ami: 'ami-0a1b2c3d4e5f60718',
      deploy_limit: 50,
      max_runtime_minutes: 2867,
    });

    const file = path.join(scratch, 'printed.json');
    writeFileSync(file, imported.stdout);
    const validated = await runCli(['blueprint', 'validate', file]);
    expect(validated).toMatchObject({ code: 0, stdout: `${file}: ok\n`, stderr: '' });

    const notes = imported.stderr.split('\n').filter(Boolean);
    expect(notes.every((line) => line.startsWith(`${FIXTURE}: `))).toBe(true);
    for (const field of [
      'STAGE',
      'Lambda.CodeUri',
      'Lambda.Handler',
      'Lambda.LambdaConfig.COMMAND',
      'Lambda.LambdaConfig.EXECUTION_TIMEOUT',
    ]) {
      expect(notes, field).toContainEqual(
        expect.stringMatching(new RegExp(`^${FIXTURE}: ${field.replaceAll('.', '\\.')}: no meaning in caas: \\S`)),
      );
    }
    expect(notes).toContainEqual(`${FIXTURE}: PipelineName → bucket: NeuroCAAS names the bucket after the pipeline`);
    expect(notes).toContainEqual(
      expect.stringMatching(
        /: Lambda\.LambdaConfig\.MAXCOST → groups\[\]\.budget: each group's spending cap, \{"usd": 250, "period": "total"\}/,
      ),
    );
  });

  it('--out writes the file and refuses to replace one unless --force', async () => {
    const out = path.join(scratch, 'blueprint.json');
    const written = await runCli(['blueprint', 'import', FIXTURE, '--out', out]);
    expect(written.code, written.stderr).toBe(0);
    expect(written.stdout).toBe('');
    expect(written.stderr).toMatch(new RegExp(`\\nwrote ${out}\\n$`));
    expect((await runCli(['blueprint', 'validate', out])).code).toBe(0);

    writeFileSync(out, '{"bucket": "kept-as-it-was"}\n');
    const refused = await runCli(['blueprint', 'import', FIXTURE, '--out', out]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toBe(`caas: --out ${out} exists: pass --force to replace it\n`);
    expect(readFileSync(out, 'utf8')).toBe('{"bucket": "kept-as-it-was"}\n');

    const forced = await runCli(['blueprint', 'import', FIXTURE, '--out', out, '--force']);
    expect(forced.code, forced.stderr).toBe(0);
    expect(JSON.parse(readFileSync(out, 'utf8')).bucket).toBe('spikesort-ncap-web');
    // Written beside the target first: no temporary file is left behind.
    expect(readdirSync(scratch).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });

  it('bad input: exit 2, each problem as file: NeuroCAAS field: what is expected, and nothing written', async () => {
    const source = JSON.parse(readFileSync(FIXTURE, 'utf8'));
    source.PipelineName = 'Spike_Sorter';
    source.Lambda.LambdaConfig.MAXCOST = 'maximum per user allowed cost (integer) before lockout';
    const bad = path.join(scratch, 'bad_stack_config_template.json');
    writeFileSync(bad, JSON.stringify(source, null, 4));
    const out = path.join(scratch, 'never.json');
    const refused = await runCli(['blueprint', 'import', bad, '--out', out]);
    expect(refused.code).toBe(2);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toBe(
      `${bad}: Lambda.LambdaConfig.MAXCOST: expected a number, or text holding one (NeuroCAAS writes "300" for 300), not "maximum per user allowed cost (integer) before lockout"\n`,
    );
    source.Lambda.LambdaConfig.MAXCOST = '300';
    writeFileSync(bad, JSON.stringify(source, null, 4));
    const named = await runCli(['blueprint', 'import', bad, '--out', out]);
    expect(named.code).toBe(2);
    expect(named.stderr).toMatch(
      new RegExp(
        `^${bad}: PipelineName: "Spike_Sorter" cannot name the analysis bucket \\(NeuroCAAS names the bucket after the pipeline\\): expected an S3 bucket name`,
      ),
    );
    expect(existsSync(out)).toBe(false);

    const broken = path.join(scratch, 'broken.json');
    writeFileSync(broken, '{\n    "PipelineName": "x",\n    "REGION": "us-east-1",\n}\n');
    const notJson = await runCli(['blueprint', 'import', broken]);
    expect(notJson.code).toBe(2);
    expect(notJson.stderr).toMatch(new RegExp(`^caas: ${broken}:4:1: invalid JSON: `));

    const missing = await runCli(['blueprint', 'import', path.join(scratch, 'nope.json')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^caas: .*nope\.json: cannot read the file: ENOENT/);
  });
});
