import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, runCli } from './support/workspace.ts';

let tmp: string;
let home: string;
let params: string;

const QUERY = '{"subject.subject_id":"774659"}';
/** The demo's dispatch, with the spike files only (.json would also match metadata.nd.json). */
const demo = () => [
  '--home',
  home,
  'dispatch',
  '--query',
  QUERY,
  '--analysis',
  'unit-filter',
  '--file-ext',
  '.spikes.json',
  '--params',
  params,
  '--dispatched-at',
  '2025-01-31T12:00:00Z',
];

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'caas-dispatch-cli-'));
  home = path.join(tmp, 'home');
  params = path.join(tmp, 'analysis_parameters.json');
  await writeFile(
    params,
    JSON.stringify({
      fixed_parameters: { analysis_tag: 'demo' },
      distributed_parameters: [{ isi_violations_cutoff: 0.05 }, { isi_violations_cutoff: 0.1 }],
    }),
  );
  const generated = await runCli(['--home', home, 'catalog', 'generate-sample']);
  expect(generated).toMatchObject({ code: 0, stdout: expect.stringMatching(/^imported 6 sample assets into sqlite:/) });
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('caas dispatch (the CLI)', () => {
  it('gives byte-identical output when the same dispatch runs twice, to stdout and to -o', async () => {
    const first = await runCli(demo());
    const second = await runCli(demo());
    expect(first.code).toBe(0);
    expect(first.stderr).toBe('6 jobs from 3 assets x 2 parameter sets\n');
    expect(first.stdout.split('\n').filter(Boolean)).toHaveLength(6);
    expect(second.stdout).toBe(first.stdout);

    const out = path.join(tmp, 'jobs.jsonl');
    expect((await runCli([...demo(), '-o', out])).code).toBe(0);
    expect(await readFile(out, 'utf8')).toBe(first.stdout);
  });

  it('pipes into caas run -', async () => {
    const plan = await new Promise<string>((resolve, reject) => {
      const caas = `${JSON.stringify(process.execPath)} ${JSON.stringify(path.join(ROOT, 'bin/caas.js'))}`;
      const quoted = demo()
        .map((arg) => `'${arg.replaceAll("'", "'\\''")}'`)
        .join(' ');
      const shell = spawn('bash', ['-o', 'pipefail', '-c', `${caas} ${quoted} | ${caas} --home '${home}' run - --json`], { cwd: ROOT });
      let stdout = '';
      shell.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
      });
      shell.on('error', reject);
      shell.on('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`pipeline exited ${code}`))));
    });
    const summary = plan
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line))
      .find((line) => line.type === 'summary');
    expect(summary.planned).toEqual({ RUN: 6, SKIP: 0, RUNNING: 0, INVALID: 0, REFUSED: 0 });
  });

  it('prints "0 jobs" and exits 0 when nothing matches', async () => {
    const result = await runCli(['--home', home, 'dispatch', '--query', '{"subject.subject_id":"nobody"}', '--analysis', 'unit-filter']);
    expect(result).toEqual({ code: 0, stdout: '', stderr: '0 jobs from 0 assets\n' });
  });

  it('exits 2 with a one-line error and leaves -o untouched on invalid input', async () => {
    const out = path.join(tmp, 'refused', 'jobs.jsonl');
    await mkdir(path.dirname(out));
    const badQuery = await runCli(['--home', home, 'dispatch', '--query', '{"a":', '--analysis', 'unit-filter', '-o', out]);
    expect(badQuery.code).toBe(2);
    expect(badQuery.stderr).toBe('caas: --query:1:6: invalid JSON: Unexpected end of JSON input\n');
    const badOperator = await runCli([
      '--home',
      home,
      'dispatch',
      '--query',
      '{"a":{"$regexp":"x"}}',
      '--analysis',
      'unit-filter',
      '-o',
      out,
    ]);
    expect(badOperator).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/^caas: invalid filter: a: unknown query operator \$regexp;.*\n$/),
    });
    const noAnalysis = await runCli(['--home', home, 'dispatch', '--query', '{}']);
    expect(noAnalysis.code).toBe(2);
    expect(noAnalysis.stderr).toContain("required option '--analysis <name>' not specified");
    expect(await readdir(path.dirname(out))).toEqual([]);
  });

  it('shows examples in --help', async () => {
    const help = await runCli(['dispatch', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Examples:');
    expect(help.stdout).toContain('--no-split-files');
  });
});
