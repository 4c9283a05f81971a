import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAnalysis } from '../analyses/index.ts';
import { openDatabase } from '../backends/db/index.ts';
import { type DispatchRequest, runDispatch, summaryLine } from '../dispatcher/dispatch.ts';
import { DispatchError } from '../dispatcher/dispatch-error.ts';
import { concluded, owner, recordDraft } from '../fixtures/records.ts';
import { JobInput } from '../models/job-input.ts';
import { JobPreparer } from '../wrapper/prepare.ts';
import { AnalysisRepo, removeDir, scratchDir } from './support/workspace.ts';

const DISPATCHED_AT = '2025-01-31T12:00:00.000Z';

let tmp: string;
let home: string;
let data: string;
let dbUrl: string;
let runs = 0;

/** Asset folders on disk and their catalog documents; catalog (_id) order is a1, a2, b1, c1, d1. */
const FOLDERS: Record<string, Record<string, string>> = {
  'ses-a1': { 'probe0.nwb': 'a1 probe 0', 'sub/probe1.nwb': 'a1 probe 1', 'notes.txt': 'notes' },
  'ses-a2': { 'probe0.nwb': 'a2 probe 0' },
  'ses-b1': { 'readme.txt': 'no recordings here' },
  'ses-c1': { 'x.nwb': 'c1' },
  'ses-d1': { 'y.nwb': 'd1' },
};

function catalogDocs(): Record<string, unknown>[] {
  const doc = (id: string, folder: string, subject: string | null, created: string, modalities: string[]) => ({
    _id: id,
    name: folder,
    location: `file://${data}/${folder}`,
    ...(subject === null ? {} : { subject: { subject_id: subject } }),
    data_description: { modality: modalities.map((abbreviation) => ({ abbreviation })), project_name: 'Test' },
    created,
  });
  return [
    doc('id-d1', 'ses-d1', 'S2', '2024-03-01T00:00:00Z', ['ecephys', 'behavior']),
    doc('id-a1', 'ses-a1', 'S1', '2024-01-01T00:00:00Z', ['ecephys']),
    doc('id-b1', 'ses-b1', 'S2', '2024-01-15T00:00:00Z', ['ecephys']),
    doc('id-a2', 'ses-a2', 'S1', '2024-02-01T00:00:00Z', ['ecephys']),
    doc('id-c1', 'ses-c1', null, '2024-03-02T00:00:00Z', ['behavior']),
  ];
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'caas-dispatch-'));
  home = path.join(tmp, 'home');
  data = path.join(tmp, 'data');
  for (const [folder, files] of Object.entries(FOLDERS)) {
    for (const [name, body] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(data, folder, name)), { recursive: true });
      await writeFile(path.join(data, folder, name), body);
    }
  }
  await writeFile(path.join(data, 'top-level.nwb'), 'belongs to no asset folder');
  dbUrl = `sqlite:${path.join(tmp, 'catalog.sqlite')}`;
  const db = await openDatabase(dbUrl, { home });
  await db.importAssets(catalogDocs());
  await db.close();
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function dispatch(request: Partial<DispatchRequest> = {}) {
  const output = request.output ?? path.join(tmp, `jobs-${++runs}.jsonl`);
  const warnings: string[] = [];
  const summary = await runDispatch(
    { home, dbUrl, storeUrl: 'file:', analysis: 'unit-filter', dispatchedAt: DISPATCHED_AT, ...request, output },
    { warn: (message) => warnings.push(message) },
  );
  const text = request.format === 'dir' ? '' : await readFile(output, 'utf8');
  const lines = text.split('\n').filter(Boolean);
  const jobs = lines.map((line) => JSON.parse(line) as JobInput);
  // Lines are assembled from cached pieces; they must still be exactly JSON.stringify of the job.
  expect(jobs.map((job) => JSON.stringify(job))).toEqual(lines);
  return { jobs, summary, warnings, text, output };
}

const names = (jobs: JobInput[]) => jobs.map((job) => job.inputs.map((input) => input.name).join('+'));
const fileNames = (job: JobInput) => job.inputs.flatMap((input) => (input.files ?? []).map((file) => path.basename(file.url)));

/** The promise of every error case: the message names the problem, and -o is left as it was. */
async function expectRefused(request: Partial<DispatchRequest>, message: RegExp) {
  const dir = await mkdtemp(path.join(tmp, 'refused-'));
  const output = path.join(dir, 'jobs.jsonl');
  const error = await dispatch({ ...request, output }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(DispatchError);
  expect((error as Error).message).toMatch(message);
  expect((error as Error).message).not.toContain('\n');
  expect(await readdir(dir)).toEqual([]);
}

describe('--query over the embedded catalog', () => {
  it('emits one valid job per matching asset, in catalog order, with provenance', async () => {
    const { jobs, summary } = await dispatch({ query: '{"subject.subject_id":{"$in":["S1","S2"]}}' });
    expect(names(jobs)).toEqual(['ses-a1', 'ses-a2', 'ses-b1', 'ses-d1']);
    for (const job of jobs) expect(JobInput.parse(job)).toEqual(job);
    expect(jobs[0]).toEqual({
      analysis: 'unit-filter',
      inputs: [{ asset_id: 'id-a1', name: 'ses-a1', location: `file://${data}/ses-a1` }],
      parameters: {},
      group: 'caas',
      provenance: { source: 'query', query: '{"subject.subject_id":{"$in":["S1","S2"]}}', dispatched_at: DISPATCHED_AT },
    });
    expect(summary).toMatchObject({ assets: 4, jobs: 4 });
  });

  it('reads the filter from a file, and records it compactly whichever way it came', async () => {
    const file = path.join(tmp, 'query.json');
    await writeFile(file, '{\n  "subject.subject_id": "S2"\n}\n');
    const fromFile = await dispatch({ query: file });
    const inline = await dispatch({ query: '{ "subject.subject_id" : "S2" }' });
    expect(fromFile.text).toBe(inline.text);
    expect(fromFile.jobs[0]?.provenance?.query).toBe('{"subject.subject_id":"S2"}');
  });

  it('puts --group on every job and keeps the dispatch time out of everything but provenance', async () => {
    const { jobs } = await dispatch({ query: '{"_id":"id-a1"}', group: 'lab-7', dispatchedAt: '2025-06-01T08:00:00+02:00' });
    expect(jobs[0]?.group).toBe('lab-7');
    expect(jobs[0]?.provenance?.dispatched_at).toBe('2025-06-01T06:00:00.000Z');
    await expectRefused({ query: '{}', group: 'no spaces' }, /--group "no spaces"/);
    await expectRefused({ query: '{}', dispatchedAt: 'yesterday' }, /--dispatched-at "yesterday" is not an ISO date-time/);
  });

  it('treats zero matches as an empty result, not an error', async () => {
    const { jobs, text, summary } = await dispatch({ query: '{"subject.subject_id":"nobody"}' });
    expect(jobs).toEqual([]);
    expect(text).toBe('');
    expect(summaryLine(summary)).toBe('0 jobs from 0 assets');
  });

  it('refuses invalid JSON with its line and column, and unknown operators by name', async () => {
    await expectRefused({ query: '{"subject.subject_id": }' }, /^--query:1:24: invalid JSON/);
    const file = path.join(tmp, 'broken-query.json');
    await writeFile(file, '{\n  "a": 1,\n  "b": ,\n}\n');
    await expectRefused({ query: file }, new RegExp(`^${file}:3:8: invalid JSON`));
    await expectRefused({ query: '{"created":{"$newerThan":"2024"}}' }, /^invalid filter: created: unknown query operator \$newerThan;/);
    await expectRefused({ query: '["not", "a filter"]' }, /a query is a JSON object/);
    await expectRefused({ query: path.join(tmp, 'missing.json') }, /neither a JSON filter nor a readable file/);
  });

  it('refuses what cannot make a job: no source, two sources, an unknown analysis', async () => {
    await expectRefused({}, /no source given/);
    await expectRefused({ query: '{}', s3Prefix: `file://${data}` }, /give only one source/);
    await expectRefused({ query: '{}', analysis: 'no-such-analysis' }, /--analysis: unknown analysis "no-such-analysis"/);
  });
});

describe('--file-ext and --split-files', () => {
  it("lists each asset's matching files with etag and size, one job per file, and reports assets without a match", async () => {
    const { jobs, warnings, summary } = await dispatch({ query: '{}', fileExt: '.nwb' });
    expect(jobs.map((job) => `${job.inputs[0]?.name}:${fileNames(job).join(',')}`)).toEqual([
      'ses-a1:probe0.nwb',
      'ses-a1:probe1.nwb',
      'ses-a2:probe0.nwb',
      'ses-c1:x.nwb',
      'ses-d1:y.nwb',
    ]);
    expect(jobs[1]?.inputs[0]?.files).toEqual([
      // The md5 of the content: what S3 reports as the etag of a single-part object.
      { url: `file://${data}/ses-a1/sub/probe1.nwb`, etag: expect.stringMatching(/^[0-9a-f]{32}$/), size: 10 },
    ]);
    expect(warnings).toEqual([`asset id-b1 (ses-b1): no files ending in .nwb under file://${data}/ses-b1`]);
    expect(summary.notices).toEqual({ 'assets without matching files': 1 });
  });

  it('accepts the extension without its dot', async () => {
    expect((await dispatch({ query: '{}', fileExt: 'nwb' })).text).toBe((await dispatch({ query: '{}', fileExt: '.nwb' })).text);
  });

  it("puts all of an asset's matching files in one job with --no-split-files", async () => {
    const { jobs } = await dispatch({ query: '{"_id":{"$in":["id-a1","id-a2"]}}', fileExt: '.nwb', splitFiles: false });
    expect(jobs.map(fileNames)).toEqual([['probe0.nwb', 'probe1.nwb'], ['probe0.nwb']]);
  });
});

describe('--group-by, --drop-null-groups, --filter-latest, --unwind', () => {
  it('makes one job per group, with the group values in group_metadata, dropping null groups by default', async () => {
    const { jobs } = await dispatch({ query: '{}', groupBy: ['subject.subject_id'] });
    expect(names(jobs)).toEqual(['ses-a1+ses-a2', 'ses-b1+ses-d1']);
    expect(jobs.map((job) => job.group_metadata)).toEqual([{ subject__subject_id: 'S1' }, { subject__subject_id: 'S2' }]);
  });

  it('keeps assets without the field as a null group with --no-drop-null-groups', async () => {
    const { jobs } = await dispatch({ query: '{}', groupBy: ['subject.subject_id'], dropNullGroups: false });
    expect(names(jobs)).toEqual(['ses-a1+ses-a2', 'ses-b1+ses-d1', 'ses-c1']);
    expect(jobs[2]?.group_metadata).toEqual({ subject__subject_id: null });
  });

  it("gives a group's job the matching files of all its assets, and drops the assets without any", async () => {
    const { jobs } = await dispatch({ query: '{}', groupBy: ['subject.subject_id'], fileExt: '.nwb' });
    expect(names(jobs)).toEqual(['ses-a1+ses-a2', 'ses-d1']);
    expect(jobs.map(fileNames)).toEqual([['probe0.nwb', 'probe1.nwb', 'probe0.nwb'], ['y.nwb']]);
    await expectRefused({ query: '{}', groupBy: ['subject.subject_id'], splitFiles: true }, /--split-files cannot go with --group-by/);
  });

  it('keeps only the newest asset of each group with --filter-latest', async () => {
    const bySubject = await dispatch({ query: '{}', filterLatest: 'created', filterBy: ['subject.subject_id'] });
    expect(names(bySubject.jobs)).toEqual(['ses-a2', 'ses-d1']);
    const grouped = await dispatch({ query: '{}', filterLatest: 'created', groupBy: ['subject.subject_id'] });
    expect(names(grouped.jobs)).toEqual(['ses-a2', 'ses-d1']);
    expect(grouped.jobs[0]?.group_metadata).toEqual({ subject__subject_id: 'S1' });
    await expectRefused({ query: '{}', filterLatest: 'created' }, /--filter-latest keeps the newest asset of each group/);
    await expectRefused({ query: '{}', filterBy: ['subject.subject_id'] }, /--filter-by only goes with --filter-latest/);
  });

  it('expands an array field with --unwind so that each element forms its own groups', async () => {
    const { jobs } = await dispatch({
      query: '{}',
      unwind: ['data_description.modality'],
      groupBy: ['data_description.modality.abbreviation'],
    });
    expect(names(jobs)).toEqual(['ses-a1+ses-a2+ses-b1+ses-d1', 'ses-c1+ses-d1']);
    expect(jobs.map((job) => job.group_metadata)).toEqual([
      { data_description__modality__abbreviation: 'ecephys' },
      { data_description__modality__abbreviation: 'behavior' },
    ]);
    await expectRefused({ query: '{}', unwind: ['data_description.modality'] }, /--unwind .* add --group-by/);
  });
});

describe('--params and --max-jobs', () => {
  async function paramsFile(content: unknown): Promise<string> {
    const file = path.join(tmp, `params-${++runs}.json`);
    await writeFile(file, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
    return file;
  }

  it('multiplies N assets by M distributed sets, distributed values overriding fixed ones', async () => {
    const params = await paramsFile({
      fixed_parameters: { analysis_tag: 'grid', isi_violations_cutoff: 0.5 },
      distributed_parameters: [{ isi_violations_cutoff: 0.05 }, { isi_violations_cutoff: 0.1 }, { refractory_ms: 2 }],
    });
    const { jobs, summary } = await dispatch({ query: '{"subject.subject_id":"S1"}', params });
    expect(jobs.map((job) => [job.inputs[0]?.name, job.parameters])).toEqual([
      ['ses-a1', { analysis_tag: 'grid', isi_violations_cutoff: 0.05 }],
      ['ses-a1', { analysis_tag: 'grid', isi_violations_cutoff: 0.1 }],
      ['ses-a1', { analysis_tag: 'grid', isi_violations_cutoff: 0.5, refractory_ms: 2 }],
      ['ses-a2', { analysis_tag: 'grid', isi_violations_cutoff: 0.05 }],
      ['ses-a2', { analysis_tag: 'grid', isi_violations_cutoff: 0.1 }],
      ['ses-a2', { analysis_tag: 'grid', isi_violations_cutoff: 0.5, refractory_ms: 2 }],
    ]);
    expect(summaryLine(summary)).toBe('6 jobs from 2 assets x 3 parameter sets');
  });

  it('uses fixed_parameters alone when there are no distributed sets', async () => {
    const params = await paramsFile({ fixed_parameters: { analysis_tag: 'only-fixed' } });
    const { jobs } = await dispatch({ query: '{"_id":"id-a1"}', params });
    expect(jobs.map((job) => job.parameters)).toEqual([{ analysis_tag: 'only-fixed' }]);
  });

  it('validates every parameter set with the analysis model before emitting anything, naming the set and field', async () => {
    const tooBig = await paramsFile({ distributed_parameters: [{ isi_violations_cutoff: 0.1 }, { isi_violations_cutoff: 7 }] });
    await expectRefused({ query: '{}', params: tooBig }, new RegExp(`^${tooBig}: distributed_parameters\\[1\\]\\.isi_violations_cutoff: `));
    const badFixed = await paramsFile({
      fixed_parameters: { refractory_ms: 'long' },
      distributed_parameters: [{ isi_violations_cutoff: 0.1 }],
    });
    await expectRefused({ query: '{}', params: badFixed }, /: fixed_parameters\.refractory_ms: /);
    const unknownKey = await paramsFile({ distributed_parameters: [{ isi_cutoff: 0.1 }] });
    await expectRefused({ query: '{}', params: unknownKey }, /: distributed_parameters\[0\]: .*isi_cutoff/);
    const badJson = await paramsFile('{\n  "fixed_parameters": {\n    "analysis_tag": "x",\n  }\n}');
    await expectRefused({ query: '{}', params: badJson }, new RegExp(`^${badJson}:4:3: invalid JSON`));
    const misspelt = await paramsFile({ distributed_params: [] });
    await expectRefused({ query: '{}', params: misspelt }, /distributed_params/);
  });

  it('reads a .yaml or .yml --params file as its JSON equivalent, and names file:line:column when it is not YAML', async () => {
    const yamlFile = async (text: string, ext = 'yaml') => {
      const file = path.join(tmp, `params-${++runs}.${ext}`);
      await writeFile(file, text);
      return file;
    };
    const json = await paramsFile({
      fixed_parameters: { analysis_tag: 'grid' },
      distributed_parameters: [{ isi_violations_cutoff: 0.05 }, { isi_violations_cutoff: 0.1 }],
    });
    const yaml = await yamlFile(
      'fixed_parameters:\n  analysis_tag: grid\ndistributed_parameters:\n  - isi_violations_cutoff: 0.05\n  - {isi_violations_cutoff: 0.1}\n',
    );
    const fromJson = await dispatch({ query: '{"subject.subject_id":"S1"}', params: json });
    const fromYaml = await dispatch({ query: '{"subject.subject_id":"S1"}', params: yaml });
    expect(fromYaml.jobs.map((job) => job.parameters)).toEqual(fromJson.jobs.map((job) => job.parameters));
    expect(fromYaml.jobs).toHaveLength(4);
    const yml = await yamlFile('fixed_parameters: {analysis_tag: yml}\n', 'yml');
    expect((await dispatch({ query: '{"_id":"id-a1"}', params: yml })).jobs.map((job) => job.parameters)).toEqual([
      { analysis_tag: 'yml' },
    ]);

    const broken = await yamlFile('fixed_parameters:\n  analysis_tag: x\n distributed_parameters: []\n');
    await expectRefused({ query: '{}', params: broken }, new RegExp(`^${broken}:3:\\d+: invalid YAML: `));
    const infinite = await yamlFile('fixed_parameters:\n  isi_violations_cutoff: .inf\n');
    await expectRefused(
      { query: '{}', params: infinite },
      new RegExp(`^${infinite}: fixed_parameters\\.isi_violations_cutoff: Infinity is not a JSON number`),
    );
    const misspelt = await yamlFile('distributed_params: []\n');
    await expectRefused({ query: '{}', params: misspelt }, /distributed_params/);
  });

  it('stops after --max-jobs', async () => {
    const { jobs, summary } = await dispatch({ query: '{}', fileExt: '.nwb', maxJobs: 2 });
    expect(jobs).toHaveLength(2);
    expect(summary.maxJobsReached).toBe(true);
    await expectRefused({ query: '{}', maxJobs: 0 }, /--max-jobs expects a whole number >= 1/);
  });
});

describe('--assets-csv', () => {
  async function csv(text: string): Promise<string> {
    const file = path.join(tmp, `assets-${++runs}.csv`);
    await writeFile(file, text);
    return file;
  }

  it('dispatches the listed assets in CSV order, noticing unknown and repeated ids with their line', async () => {
    const file = await csv(
      '\uFEFFsession,asset_id,comment\nb,id-b1,"first, with a comma"\nx,id-nope,\n\na,id-a1,"say ""hi"""\nb,id-b1,again\n, ,blank\n',
    );
    const { jobs, warnings, summary } = await dispatch({ assetsCsv: file });
    expect(names(jobs)).toEqual(['ses-b1', 'ses-a1']);
    expect(jobs[0]?.provenance).toEqual({ source: 'csv', query: file, dispatched_at: DISPATCHED_AT });
    expect(warnings).toEqual([
      `${file}:6: asset_id "id-b1" repeats line 2; skipped`,
      `${file}:3: asset_id "id-nope" is not in the catalog; skipped`,
    ]);
    expect(summary.notices).toEqual({ 'repeated asset ids': 1, 'unknown asset ids': 1 });
  });

  it('refuses a CSV without an asset_id column, naming the header line', async () => {
    const file = await csv('\nid,name\nid-a1,ses-a1\n');
    await expectRefused({ assetsCsv: file }, new RegExp(`^${file}:2: no asset_id column \\(the header has: id, name\\)`));
    await expectRefused({ assetsCsv: path.join(tmp, 'none.csv') }, /--assets-csv .*none\.csv: no such file/);
    const unterminated = await csv('asset_id\n"id-a1\n');
    await expectRefused({ assetsCsv: unterminated }, new RegExp(`^${unterminated}:2: unterminated quoted field`));
  });
});

describe('--s3-prefix over a file:// folder', () => {
  it('makes each folder under the prefix an asset and each matching object one of its files', async () => {
    const { jobs, warnings } = await dispatch({ s3Prefix: `file://${data}`, fileExt: '.nwb', splitFiles: false });
    expect(jobs.map((job) => [job.inputs[0]?.asset_id, job.inputs[0]?.location, fileNames(job)])).toEqual([
      ['ses-a1', `file://${data}/ses-a1/`, ['probe0.nwb', 'probe1.nwb']],
      ['ses-a2', `file://${data}/ses-a2/`, ['probe0.nwb']],
      ['ses-c1', `file://${data}/ses-c1/`, ['x.nwb']],
      ['ses-d1', `file://${data}/ses-d1/`, ['y.nwb']],
    ]);
    expect(jobs[0]?.inputs[0]?.files?.[1]).toMatchObject({ url: `file://${data}/ses-a1/sub/probe1.nwb`, size: 10 });
    expect(jobs[0]?.provenance).toEqual({ source: 'prefix', query: `file://${data}/`, dispatched_at: DISPATCHED_AT });
    expect(warnings).toEqual([
      `file://${data}/ses-b1/: no files ending in .nwb`,
      `file://${data}/top-level.nwb: not inside a folder under the prefix; ignored`,
    ]);
  });

  it('lists every object of a folder as its files without --file-ext', async () => {
    const { jobs } = await dispatch({ s3Prefix: `file://${data}/`, dbUrl: 'mongodb://unused.invalid:1/never-opened' });
    expect(jobs.map((job) => [job.inputs[0]?.name, fileNames(job).length])).toEqual([
      ['ses-a1', 3],
      ['ses-a2', 1],
      ['ses-b1', 1],
      ['ses-c1', 1],
      ['ses-d1', 1],
    ]);
  });

  it('refuses a prefix that cannot be read', async () => {
    await expectRefused({ s3Prefix: `file://${tmp}/no-such-folder/` }, /--s3-prefix file:.*no-such-folder\/: no such folder/);
    await expectRefused({ s3Prefix: 'file://no-such-bucket/data/' }, /bucket "no-such-bucket" does not exist/);
    await expectRefused({ s3Prefix: 'ftp://host/data/' }, /--s3-prefix: "ftp:\/\/host\/data\/" is not an object URL/);
  });
});

describe('output', () => {
  it('writes one JSON file per job with --format dir, replacing only an earlier dispatch folder', async () => {
    const dir = path.join(tmp, 'job-files');
    await dispatch({ query: '{}', fileExt: '.nwb', format: 'dir', output: dir });
    const files = await readdir(dir);
    expect(files).toEqual(['job-000000001.json', 'job-000000002.json', 'job-000000003.json', 'job-000000004.json', 'job-000000005.json']);
    const lines = (await dispatch({ query: '{}', fileExt: '.nwb' })).jobs;
    expect(JSON.parse(await readFile(path.join(dir, files[4]!), 'utf8'))).toEqual(lines[4]);

    await dispatch({ query: '{"_id":"id-a2"}', format: 'dir', output: dir });
    expect(await readdir(dir)).toEqual(['job-000000001.json']);

    const foreign = path.join(tmp, 'not-jobs');
    await mkdir(foreign);
    await writeFile(path.join(foreign, 'thesis.tex'), 'precious');
    await expect(dispatch({ query: '{}', format: 'dir', output: foreign })).rejects.toThrow(
      /holds other files than job-\*\.json \(thesis\.tex\)/,
    );
    expect(await readdir(foreign)).toEqual(['thesis.tex']);
    expect((await readdir(tmp)).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });

  it('leaves no trace when a dispatch fails midway through the stream', async () => {
    const dir = await mkdtemp(path.join(tmp, 'midway-'));
    const output = path.join(dir, 'jobs.jsonl');
    await writeFile(output, 'the previous batch\n');
    // Enough good assets before the bad one that jobs have already been written when it fails.
    const brokenDb = `sqlite:${path.join(dir, '..', 'broken-catalog.sqlite')}`;
    const db = await openDatabase(brokenDb, { home });
    const good = Array.from({ length: 600 }, (_, i) => ({
      _id: `good-${String(i).padStart(4, '0')}`,
      name: `good-${i}`,
      location: `file://${data}/ses-a1/`,
    }));
    await db.importAssets([...good, { _id: 'zz-broken', name: 'broken', location: 'http://not-an-object-url/' }]);
    await db.close();
    await expect(dispatch({ query: '{}', output, dbUrl: brokenDb })).rejects.toThrow(
      /asset zz-broken: location "http:\/\/not-an-object-url\/" is not an object URL: expected .*s3:\/\/bucket\/key/,
    );
    expect(await readdir(dir)).toEqual(['jobs.jsonl']);
    expect(await readFile(output, 'utf8')).toBe('the previous batch\n');
  });
});

describe('--skip-done', () => {
  let base: string;
  let saved: string | undefined;
  beforeAll(() => {
    // A repository of our own, so commits elsewhere in the project cannot change the code version mid-test.
    base = scratchDir('dispatch-skip');
    const repo = new AnalysisRepo(base, ['unit-filter']);
    saved = process.env.CAAS_ANALYSES;
    process.env.CAAS_ANALYSES = repo.dir;
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.CAAS_ANALYSES;
    else process.env.CAAS_ANALYSES = saved;
    removeDir(base);
  });

  it('drops exactly the jobs whose identity already succeeded', async () => {
    const all = await dispatch({ query: '{}', fileExt: '.nwb' });
    expect(all.jobs).toHaveLength(5);
    const preparer = new JobPreparer({ storeScheme: 'file', allowDirty: false });
    const analysis = await loadAnalysis('unit-filter');
    const identityOf = async (job: JobInput) => {
      const prepared = await preparer.prepareValid('test', JobInput.parse(job), analysis);
      if (!prepared.ok) throw new Error(prepared.reason);
      return prepared.job.identity;
    };
    const db = await openDatabase(dbUrl, { home });
    try {
      const runner = owner('skip-done-test');
      const succeeded = await identityOf(all.jobs[1]!);
      const failed = await identityOf(all.jobs[3]!);
      for (const [id, status] of [
        [succeeded, 'succeeded'],
        [failed, 'failed'],
      ] as const) {
        await db.claim(id, { draft: { ...recordDraft({ seed: id }), _id: id }, owner: runner, leaseMs: 60_000 });
        await db.finish(id, runner, concluded(status));
      }
    } finally {
      await db.close();
    }
    const { jobs, summary } = await dispatch({ query: '{}', fileExt: '.nwb', skipDone: true });
    expect(jobs).toEqual(all.jobs.filter((_, i) => i !== 1));
    expect(summary.skippedSucceeded).toBe(1);
    expect(summaryLine(summary)).toContain('1 already succeeded (--skip-done)');
  });
});
