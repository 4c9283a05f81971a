import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AnalysisRepo, readRecords, removeDir, runCli, scratchDir } from './support/workspace.ts';

/** The fields of AIND's AnalysisDispatchModel (analysis-pipeline-utils), in its order. */
const AIND_FIELDS = [
  's3_location',
  'asset_name',
  'docdb_record_id',
  'file_location',
  'distributed_parameters',
  'group_metadata',
  'query',
  'analysis_code',
];

interface Asset {
  _id: string;
  name: string;
  location: string;
  subject: { subject_id: string };
}

let base: string;
let home: string;
let env: Record<string, string>;
let assets: Asset[];

/** `caas --home <home> ...` with the test's analysis repository. */
const caas = (...args: string[]) => runCli(['--home', home, ...args], { env });

/** The identities of a dry run's plan, in plan order (null for an invalid job). */
async function identities(...args: string[]): Promise<(string | null)[]> {
  const result = await caas('run', ...args, '--json');
  const plan = result.stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line))
    .filter((line) => line.type === 'plan');
  return plan.map((entry) => entry.identity);
}

/** A pretty-printed file, as pydantic's model_dump_json(indent=4) writes AIND dispatch models. */
function writeModel(file: string, model: unknown): string {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(model, null, 4)}\n`);
  return file;
}

/** An AIND dispatch model of one sample asset and its spike file, exactly as AIND's dispatcher writes one (no caas fields). */
function aindModel(asset: Asset, cutoff: number) {
  // AIND locations name the folder without a trailing slash.
  const location = asset.location.replace(/\/$/, '');
  const file = `${location}/spikes/units.spikes.json`;
  return {
    s3_location: [location],
    asset_name: [asset.name],
    docdb_record_id: [asset._id],
    file_location: [file],
    distributed_parameters: { isi_violations_cutoff: cutoff },
    group_metadata: { subject__subject_id: asset.subject.subject_id },
    query: '{"subject.subject_id": "774659"}',
    analysis_code: {
      url: 'https://github.com/AllenNeuralDynamics/aind-analysis-wrapper',
      version: '1.2.0',
      // AIND's dispatcher puts the fixed parameters here, and tracks file_location among them.
      parameters: { analysis_tag: 'aind', file_location: [file] },
    },
  };
}

/** The caas job input that means the same job as aindModel(asset, cutoff). */
function caasJob(asset: Asset, cutoff: number) {
  const location = asset.location.replace(/\/$/, '');
  return {
    analysis: 'unit-filter',
    inputs: [{ asset_id: asset._id, name: asset.name, location, files: [{ url: `${location}/spikes/units.spikes.json` }] }],
    parameters: { analysis_tag: 'aind', isi_violations_cutoff: cutoff },
    group_metadata: { subject__subject_id: asset.subject.subject_id },
  };
}

beforeAll(async () => {
  base = scratchDir('aind-dispatch');
  home = path.join(base, 'home');
  const repo = new AnalysisRepo(base, ['unit-filter']);
  env = { CAAS_ANALYSES: repo.dir, CAAS_STATUS_INTERVAL_MS: '200' };
  expect((await caas('catalog', 'generate-sample')).code).toBe(0);
  const listed = await caas('catalog', 'query', '--json');
  assets = listed.stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line));
  expect(assets).toHaveLength(6);
});

afterAll(() => {
  removeDir(base);
});

describe('AIND dispatch models in caas run', () => {
  it('runs a folder of AIND dispatch models as aind-analysis-job-dispatch writes it, and records group_metadata and the query', async () => {
    const folder = path.join(base, 'job_dict');
    // One folder per worker, files named by uuid; folder 10 sorts after 2 as a number.
    writeModel(path.join(folder, '0', '6f1c2d3e-aaaa-4bbb-8ccc-000000000001.json'), aindModel(assets[0]!, 0.1));
    writeModel(path.join(folder, '2', '0b7e9f00-aaaa-4bbb-8ccc-000000000002.json'), aindModel(assets[1]!, 0.1));
    writeModel(path.join(folder, '10', '1d2c3b4a-aaaa-4bbb-8ccc-000000000003.json'), aindModel(assets[2]!, 0.2));

    const result = await caas('run', folder, '--analysis', 'unit-filter', '--execute', '--compute', 'inline', '--quiet');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/plan: 3 to run, 0 skipped, 0 running elsewhere, 0 invalid\ndone: 3 succeeded, 0 failed/);

    const records = await readRecords(home);
    expect(records).toHaveLength(3);
    const record = records.find((r) => r.inputs[0]!.asset_id === assets[2]!._id)!;
    expect(record).toMatchObject({
      status: 'succeeded',
      parameters: { isi_violations_cutoff: 0.2, refractory_ms: 1.5, analysis_tag: 'aind' },
      group_metadata: { subject__subject_id: assets[2]!.subject.subject_id },
      query: { source: 'query', query: '{"subject.subject_id": "774659"}' },
    });
    expect(record.inputs[0]!.files).toEqual([{ url: `${assets[2]!.location}spikes/units.spikes.json` }]);

    // The same folder again: every identity is done. Worker folders are read in number order.
    const again = await caas('run', folder, '--analysis', 'unit-filter', '--json');
    expect(again.stdout).toMatch(/"type":"summary","planned":\{"RUN":0,"SKIP":3,"RUNNING":0,"INVALID":0,"REFUSED":0\}/);
    const order = again.stdout
      .split('\n')
      .filter((line) => line.includes('"type":"plan"'))
      .map((line) => path.relative(folder, JSON.parse(line).where).split(path.sep)[0]);
    expect(order).toEqual(['0', '2', '10']);
  });

  it('gives an AIND dispatch model the identity of the equivalent caas job input', async () => {
    const model = writeModel(path.join(base, 'one-model.json'), aindModel(assets[3]!, 0.3));
    const jobs = path.join(base, 'equivalent.jsonl');
    writeFileSync(jobs, `${JSON.stringify(caasJob(assets[3]!, 0.3))}\n`);
    const [fromAind] = await identities(model, '--analysis', 'unit-filter');
    const [fromCaas] = await identities(jobs);
    expect(fromAind).toMatch(/^[0-9a-f]{64}$/);
    expect(fromAind).toBe(fromCaas);
    // caas why reads a model the same way.
    const why = await caas('why', model, '--analysis', 'unit-filter', '--json');
    expect(JSON.parse(why.stdout)).toMatchObject({ where: model, identity: fromCaas, verdict: 'run' });

    // A group of assets (no files: their folders), as AIND's --group_by writes it.
    const group = assets.filter((a) => a.subject.subject_id === '774660');
    const grouped = writeModel(path.join(base, 'group-model.json'), {
      s3_location: group.map((a) => a.location),
      asset_name: group.map((a) => a.name),
      docdb_record_id: group.map((a) => a._id),
      file_location: null,
      distributed_parameters: null,
      group_metadata: { subject__subject_id: '774660' },
      query: null,
      analysis_code: null,
    });
    writeFileSync(
      jobs,
      `${JSON.stringify({
        analysis: 'unit-filter',
        inputs: group.map((a) => ({ asset_id: a._id, name: a.name, location: a.location })),
        group_metadata: { subject__subject_id: '774660' },
      })}\n`,
    );
    const [groupFromAind] = await identities(grouped, '--analysis', 'unit-filter');
    expect(groupFromAind).toMatch(/^[0-9a-f]{64}$/);
    expect(groupFromAind).toBe((await identities(jobs))[0]);
    // Other parameters are another identity: the comparison can tell.
    expect(
      (await identities(writeModel(path.join(base, 'other.json'), aindModel(assets[3]!, 0.4)), '--analysis', 'unit-filter'))[0],
    ).not.toBe(fromCaas);
  });

  it('gives a malformed AIND dispatch model the same quality of error as a malformed caas job, and runs the rest', async () => {
    const good = aindModel(assets[4]!, 0.1);
    const jsonl = path.join(base, 'models.jsonl');
    const lines = [
      good,
      { ...good, asset_name: [assets[4]!.name, 'extra'] },
      { ...good, s3_locaton: good.s3_location },
      { ...good, file_location: ['s3://elsewhere/x.spikes.json'] },
      { ...good, distributed_parameters: { isi_violations_cutoff: 'strict' } },
      { ...good, analysis_code: { ...good.analysis_code, parameters: { analysis_tag: 7 } } },
    ];
    writeFileSync(jsonl, `${lines.map((line) => JSON.stringify(line)).join('\n')}\n{"s3_location": [\n`);
    const result = await caas('run', jsonl, '--analysis', 'unit-filter', '--json');
    expect(result.code).toBe(2);
    const plan = result.stdout
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line))
      .filter((line) => line.type === 'plan');
    expect(plan.map((entry) => [entry.action, entry.where])).toEqual([
      ['RUN', `${jsonl}:1`],
      ['INVALID', `${jsonl}:2`],
      ['INVALID', `${jsonl}:3`],
      ['INVALID', `${jsonl}:4`],
      ['INVALID', `${jsonl}:5`],
      ['INVALID', `${jsonl}:6`],
      ['INVALID', `${jsonl}:7`],
    ]);
    expect(plan.map((entry) => entry.reason)).toEqual([
      null,
      'AIND dispatch model: asset_name: expected 1 entry, one per s3_location entry, got 2',
      expect.stringMatching(/^AIND dispatch model: \(root\): Unrecognized key: "s3_locaton"$/),
      'AIND dispatch model: file_location.0: not under any s3_location entry',
      'AIND dispatch model: distributed_parameters.isi_violations_cutoff: Invalid input: expected number, received string',
      'AIND dispatch model: analysis_code.parameters.analysis_tag: Invalid input: expected string, received number',
      expect.stringMatching(/^invalid JSON: /),
    ]);

    // Without --analysis an AIND model names none; a caas job in the same batch still runs.
    const mixed = path.join(base, 'mixed.jsonl');
    writeFileSync(mixed, `${JSON.stringify(good)}\n${JSON.stringify(caasJob(assets[4]!, 0.1))}\n`);
    const unnamed = await caas('run', mixed);
    expect(unnamed.code).toBe(2);
    expect(unnamed.stdout).toContain(
      `${mixed}:1: AIND dispatch model: (root): names no analysis (AIND models leave it to the wrapper): give it with --analysis <name>`,
    );
    expect(unnamed.stdout).toMatch(/plan: 1 to run, 0 skipped, 0 running elsewhere, 1 invalid/);
  });
});

describe('caas dispatch --format aind', () => {
  const dispatchArgs = (...more: string[]) => [
    'dispatch',
    '--query',
    '{}',
    '--analysis',
    'unit-filter',
    '--params',
    path.join(base, 'analysis_parameters.json'),
    '--dispatched-at',
    '2025-01-31T12:00:00Z',
    ...more,
  ];

  beforeAll(() => {
    writeFileSync(
      path.join(base, 'analysis_parameters.json'),
      JSON.stringify({
        fixed_parameters: { analysis_tag: 'grid' },
        distributed_parameters: [{ isi_violations_cutoff: 0.05 }, { isi_violations_cutoff: 0.1 }],
      }),
    );
  });

  it.each<[string, string[]]>([
    ['one job per file', ['--file-ext', '.spikes.json']],
    ['one job per group of assets', ['--group-by', 'subject.subject_id', '--file-ext', '.spikes.json']],
    ['whole asset folders', []],
  ])('round-trips: caas run gives the AIND models the identities of the default format (%s)', async (_, expansion) => {
    const label = expansion.join('').replace(/\W/g, '') || 'folders';
    const jsonl = path.join(base, `round-${label}.jsonl`);
    const folder = path.join(base, `round-${label}-aind`);
    expect((await caas(...dispatchArgs(...expansion, '-o', jsonl))).code).toBe(0);
    expect((await caas(...dispatchArgs(...expansion, '--format', 'aind', '-o', folder))).code).toBe(0);

    const expected = await identities(jsonl);
    expect(expected.length).toBeGreaterThan(1);
    expect(expected.every((id) => id !== null)).toBe(true);
    expect(await identities(folder)).toEqual(expected);

    // AIND's layout: one numbered folder per job, each holding one model with AIND's fields (and caas's own beside them).
    const folders = readdirSync(folder).sort((a, b) => Number(a) - Number(b));
    expect(folders).toEqual(expected.map((__, i) => String(i)));
    const model = JSON.parse(readFileSync(path.join(folder, '0', readdirSync(path.join(folder, '0'))[0]!), 'utf8'));
    expect(Object.keys(model)).toEqual([...AIND_FIELDS, 'caas']);
    expect(model.s3_location).toHaveLength(model.docdb_record_id.length);
    expect(model.distributed_parameters).toMatchObject({ analysis_tag: 'grid' });
    expect(model.query).toBe('{}');

    // As lines, through a pipe, the same.
    const lines = await caas(...dispatchArgs(...expansion, '--format', 'aind-jsonl'));
    expect(lines.code).toBe(0);
    const piped = await runCli(['--home', home, 'run', '-', '--json'], { env, input: lines.stdout });
    const pipedIds = piped.stdout
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line))
      .filter((line) => line.type === 'plan')
      .map((entry) => entry.identity);
    expect(pipedIds).toEqual(expected);
  });

  it('needs a folder for --format aind, and replaces only an earlier AIND output there', async () => {
    const noFolder = await caas(...dispatchArgs('--format', 'aind'));
    expect(noFolder.code).toBe(2);
    expect(noFolder.stderr).toMatch(/^caas: --format aind needs -o <folder>/);
    const folder = path.join(base, 'aind-out');
    expect((await caas(...dispatchArgs('--format', 'aind', '-o', folder))).code).toBe(0);
    expect((await caas(...dispatchArgs('--format', 'aind', '-o', folder))).code).toBe(0);
    writeFileSync(path.join(folder, 'notes.txt'), 'mine\n');
    const refused = await caas(...dispatchArgs('--format', 'aind', '-o', folder));
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/holds other files than numbered folders of job-\*\.json \(notes\.txt\)/);
  });
});
