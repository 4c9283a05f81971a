import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mockWait from '../analyses/mock-wait/index.ts';
import unitFilter from '../analyses/unit-filter/index.ts';
import { TOO_FEW_SPIKES } from '../analyses/unit-filter/isi.ts';

const ANALYSES = path.resolve(import.meta.dirname, '../analyses');
// The job's cwd is an empty temp folder, so the loader is named by URL, as the agent's ${tsx} is.
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'caas-analyses-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A job folder laid out as the agent stages it: input/, config.json, output/ and a cwd. */
async function stageJob(name: string, config: unknown, input?: { file: string; body: string }) {
  const root = path.join(tmp, name);
  const inputDir = path.join(root, 'input');
  const outputDir = path.join(root, 'output');
  const cwd = path.join(root, 'cwd');
  await Promise.all([mkdir(inputDir, { recursive: true }), mkdir(outputDir, { recursive: true }), mkdir(cwd, { recursive: true })]);
  const configPath = path.join(root, 'config.json');
  await writeFile(configPath, JSON.stringify(config));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    bucketname: 'test-bucket',
    groupdir: 'demo',
    resultdir: 'demo/results/job__test-bucket_1700000000',
    processdir: 'demo/results/job__test-bucket_1700000000/process_results',
    dataname: input ? `demo/inputs/${input.file}` : 'demo/inputs/none',
    inputpath: input ? `demo/inputs/${input.file}` : '',
    configname: 'config.json',
    configpath: 'demo/configs/config.json',
    CAAS_INPUT_DIR: inputDir,
    CAAS_CONFIG: configPath,
    CAAS_OUTPUT_DIR: outputDir,
  };
  if (input) {
    env.CAAS_INPUT = path.join(inputDir, input.file);
    await writeFile(env.CAAS_INPUT, input.body);
  }
  return { env, cwd, outputDir };
}

function runUnitFilter(job: { env: NodeJS.ProcessEnv; cwd: string }) {
  return spawnSync(process.execPath, ['--import', TSX, path.join(ANALYSES, 'unit-filter/filter.ts')], {
    env: job.env,
    cwd: job.cwd,
    encoding: 'utf8',
  });
}

function runMockWait(job: { env: NodeJS.ProcessEnv; cwd: string }) {
  return spawnSync('bash', [path.join(ANALYSES, 'mock-wait/run.sh')], { env: job.env, cwd: job.cwd, encoding: 'utf8' });
}

describe('unit-filter as a process', () => {
  const trains = {
    session: 'ecephys_test',
    units: [
      { unit_id: 'clean', spike_times_s: [0, 0.01, 0.02, 0.03, 0.04] },
      { unit_id: 'bad', spike_times_s: [0, 0.001, 0.002, 0.05] },
      {
        unit_id: 3,
        spike_times_s: [
          0, 0.01, 0.011, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1, 0.11, 0.12, 0.13, 0.14, 0.15, 0.16, 0.17, 0.18, 0.19,
        ],
      },
      { unit_id: 'lonely', spike_times_s: [1.5] },
    ],
  };

  it('writes passing_units.csv, summary.json and isi_violations.svg', async () => {
    const job = await stageJob(
      'uf-ok',
      { isi_violations_cutoff: 0.05, analysis_tag: 'test' },
      { file: 'units.spikes.json', body: JSON.stringify(trains) },
    );
    const run = runUnitFilter(job);
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toContain(`unit lonely: ${TOO_FEW_SPIKES}`);

    const summary = JSON.parse(await readFile(path.join(job.outputDir, 'summary.json'), 'utf8'));
    expect(summary).toEqual({
      session: 'ecephys_test',
      analysis_tag: 'test',
      isi_violations_cutoff: 0.05,
      refractory_ms: 1.5,
      n_units: 4,
      n_passing: 3,
    });
    expect(unitFilter.outputs?.model.parse(summary)).toEqual({ n_units: 4, n_passing: 3 });
    // Unit 3 has one violation in 20 intervals: exactly at the cutoff, so it passes.
    expect(await readFile(path.join(job.outputDir, 'passing_units.csv'), 'utf8')).toBe(
      'unit_id,n_spikes,isi_violation_ratio\nclean,5,0\n3,21,0.05\nlonely,1,0\n',
    );
    const svg = await readFile(path.join(job.outputDir, 'isi_violations.svg'), 'utf8');
    expect(svg).toMatch(/^<\?xml version="1.0" encoding="UTF-8"\?>\n<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg).toContain('ISI violation ratio');
    expect(svg).toContain('cutoff 0.05');
    expect(svg).toContain('stroke-dasharray');
  });

  it('exits 1 naming the file and the problem when the input is malformed', async () => {
    const notJson = await stageJob('uf-bad-json', {}, { file: 'broken.json', body: '{"session": "x", "units": [' });
    const run = runUnitFilter(notJson);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(notJson.env.CAAS_INPUT);
    expect(run.stderr).toContain('not valid JSON');

    const unsorted = await stageJob(
      'uf-unsorted',
      {},
      { file: 'unsorted.json', body: JSON.stringify({ session: 'x', units: [{ unit_id: 1, spike_times_s: [0.2, 0.1] }] }) },
    );
    const run2 = runUnitFilter(unsorted);
    expect(run2.status).toBe(1);
    expect(run2.stderr).toContain(unsorted.env.CAAS_INPUT);
    expect(run2.stderr).toContain('sorted ascending');
    expect(run2.stderr).toContain('units[0].spike_times_s');
  });

  it('exits 1 naming the config when a parameter is unknown', async () => {
    const job = await stageJob('uf-bad-config', { cutoff: 0.1 }, { file: 'units.spikes.json', body: JSON.stringify(trains) });
    const run = runUnitFilter(job);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(job.env.CAAS_CONFIG);
    expect(run.stderr).toContain('cutoff');
  });
});

describe('mock-wait as a process', () => {
  it('writes waited.json after waiting', async () => {
    const job = await stageJob('mw-ok', { wait: 0 }, { file: 'data.bin', body: 'x' });
    const run = runMockWait(job);
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const waited = JSON.parse(await readFile(path.join(job.outputDir, 'waited.json'), 'utf8'));
    expect(waited).toEqual({ waited_s: 0, dataname: 'demo/inputs/data.bin', input: 'data.bin' });
    expect(mockWait.outputs?.model.parse(waited)).toEqual({ waited_s: 0 });
  });

  it('prints a line each second while waiting', async () => {
    const job = await stageJob('mw-wait', { wait: 1.2 });
    const run = runMockWait(job);
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('mock-wait: waited 1 s');
    expect(JSON.parse(await readFile(path.join(job.outputDir, 'waited.json'), 'utf8')).waited_s).toBe(1.2);
  });

  it('exits 3 with "mock failure requested" when fail is set', async () => {
    const job = await stageJob('mw-fail', { wait: 0, fail: true });
    const run = runMockWait(job);
    expect(run.status).toBe(3);
    expect(run.stderr).toContain('mock failure requested');
  });

  it('appends one marker line per run, and treats config values as data', async () => {
    const markerFile = path.join(tmp, 'marker.txt');
    const job = await stageJob('mw-marker', { wait: 0, marker: '$(touch pwned)' });
    job.env.CAAS_MOCK_MARKER_FILE = markerFile;
    job.env.dataname = 'demo/inputs/$(touch pwned)';
    expect(runMockWait(job).status).toBe(0);
    expect(runMockWait(job).status).toBe(0);
    expect(await readFile(markerFile, 'utf8')).toBe('demo/inputs/$(touch pwned) config.json\n'.repeat(2));
    await expect(readFile(path.join(job.cwd, 'pwned'))).rejects.toThrow();
  });

  it('writes no marker when CAAS_MOCK_MARKER_FILE is unset', async () => {
    const job = await stageJob('mw-no-marker-file', { wait: 0, marker: 'm' });
    delete job.env.CAAS_MOCK_MARKER_FILE;
    expect(runMockWait(job).status).toBe(0);
  });
});
