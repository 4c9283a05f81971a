import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AnalysisRepo, ROOT, readRecords, removeDir, runCli, scratchDir } from './support/workspace.ts';

const FOLDER = path.join(ROOT, 'analyses', 'spike-rate');

/** The same spike-train file the demo's catalog points at: 3 units over 10 s. */
const SPIKES = JSON.stringify({
  session: 's1',
  units: [
    { unit_id: 'a', spike_times_s: [0.5, 1, 2, 4, 8, 10] },
    { unit_id: 'b', spike_times_s: [9] },
    { unit_id: 'c', spike_times_s: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] },
  ],
});

/** An analysis in Python with pydantic-exported models, declared by analysis.json: no TypeScript anywhere in its folder. */
describe('spike-rate: an analysis in Python, its models exported from pydantic', () => {
  let base: string;
  let repo: AnalysisRepo;
  let home: string;
  let data: string;
  const caas = (...args: string[]) => runCli(['--home', home, ...args], { env: { CAAS_ANALYSES: repo.dir } });
  const jobFile = (name: string, jobs: Record<string, unknown>[]) => {
    const file = path.join(base, `${name}.jsonl`);
    const input = { asset_id: 's1', name: 's1', location: `file://${path.dirname(data)}/`, files: [{ url: `file://${data}` }] };
    writeFileSync(
      file,
      `${jobs.map((parameters) => JSON.stringify({ analysis: 'spike-rate', inputs: [input], parameters })).join('\n')}\n`,
    );
    return file;
  };
  const planned = async (file: string) => {
    const result = await caas('run', file, '--json');
    return result.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { action?: string; identity?: string; reason?: string; where?: string });
  };

  beforeAll(() => {
    base = scratchDir('python-analysis');
    repo = new AnalysisRepo(base, ['spike-rate']);
    home = path.join(base, 'home');
    data = path.join(base, 'data', 's1.spikes.json');
    mkdirSync(path.dirname(data), { recursive: true });
    writeFileSync(data, SPIKES);
  });
  afterAll(() => removeDir(base));

  it('has no TypeScript in its folder', () => {
    const files = readdirSync(FOLDER, { recursive: true }).map(String);
    expect(files).toContain('analysis.json');
    expect(files.filter((file) => /\.(ts|mts|cts|js|mjs)$/.test(file))).toEqual([]);
  });

  it('runs from analysis.json: validated config with defaults in, summary.json verified against its schema and recorded', {
    timeout: 120_000,
  }, async () => {
    const ran = await caas('run', jobFile('one', [{ min_rate_hz: 0.5 }]), '--execute');
    expect(ran.stderr).toBe('');
    expect(ran.code).toBe(0);
    const [record] = await readRecords(home);
    expect(record!.status).toBe('succeeded');
    expect(record!.parameters).toEqual({ min_rate_hz: 0.5, duration_s: null, analysis_tag: 'default' });
    expect(record!.outputs!.output_parameters).toEqual({
      n_units: 3,
      n_passing: 2,
      mean_rate_hz: (0.6 + 0.1 + 1) / 3,
      analysis_tag: 'default',
    });
    expect(record!.outputs!.manifest.map((entry) => path.posix.basename(entry.key))).toContain('rates.csv');
  });

  it("beside its results lies metadata.nd.json, AIND's processing section, which python3 reads with the standard library alone; the record holds the same section", {
    timeout: 60_000,
  }, async () => {
    const [record] = await readRecords(home);
    const folder = path.join(home, 'buckets', record!.job!.results.replace(/^file:\/\//, ''), '..');
    const check = [
      'import json, sys',
      'doc = json.load(open(sys.argv[1]))',
      'assert doc["object_type"] == "Metadata", doc["object_type"]',
      'process = doc["processing"]["data_processes"][0]',
      'assert process["stage"] == "Analysis" and process["process_type"] == "Analysis"',
      'print(json.dumps({"name": process["name"], "code": process["code"], "start": process["start_date_time"], "end": process["end_date_time"], "output_path": process["output_path"], "output_parameters": process["output_parameters"]}))',
    ].join('\n');
    const read = JSON.parse(execFileSync('python3', ['-I', '-c', check, path.join(folder, 'metadata.nd.json')], { encoding: 'utf8' })) as {
      name: string;
      code: { url: string; name: string; version: string; parameters: unknown; input_data: { url: string }[] };
      start: string;
      end: string;
      output_path: string;
      output_parameters: unknown;
    };
    expect(read.name).toBe('spike-rate@1.0.0');
    expect(read.code).toMatchObject({ url: 'https://example.org/lab/analyses.git', name: 'spike-rate', version: repo.head() });
    expect(read.code.parameters).toEqual(record!.parameters);
    expect(read.code.input_data).toEqual([{ url: `file://${path.dirname(data)}/` }]);
    expect([read.start, read.end]).toEqual([record!.start, record!.end]);
    expect(read.output_path).toBe(record!.job!.results);
    expect(read.output_parameters).toEqual(record!.outputs!.output_parameters);
    const doc = JSON.parse(readFileSync(path.join(folder, 'metadata.nd.json'), 'utf8')) as { processing: unknown };
    expect(record!.processing).toEqual(doc.processing);
    const queried = await caas('query', '{"processing.data_processes.code.parameters.min_rate_hz": 0.5}', '--fields', '_id');
    expect(queried.code).toBe(0);
    expect(queried.stdout).toContain(record!._id);
  });

  it('the same parameters written with and without their defaults have one identity', async () => {
    const plan = await planned(
      jobFile('defaults', [{}, { min_rate_hz: 0.5 }, { min_rate_hz: 0.5, duration_s: null, analysis_tag: 'default' }, { min_rate_hz: 1 }]),
    );
    const identities = plan.filter((line) => line.identity).map((line) => line.identity);
    expect(identities).toHaveLength(4);
    expect(new Set(identities.slice(0, 3)).size).toBe(1);
    expect(identities[3]).not.toBe(identities[0]);
  });

  it('a bad parameter is INVALID with its field path; a misspelt one is refused (the model forbids extra keys)', async () => {
    const file = jobFile('bad', [{ min_rate_hz: -1 }, { min_rate: 1 }, { duration_s: 'long' }]);
    const result = await caas('run', file);
    expect(result.code).toBe(2);
    const invalid = result.stdout.split('\n').filter((line) => line.startsWith('INVALID'));
    expect(invalid).toHaveLength(3);
    expect(invalid[0]).toMatch(/bad\.jsonl:1 .*parameters\.min_rate_hz: Too small: expected number to be >=0/);
    expect(invalid[1]).toMatch(/bad\.jsonl:2 .*parameters: Unrecognized key: "min_rate"/);
    expect(invalid[2]).toMatch(/bad\.jsonl:3 .*parameters\.duration_s/);
  });

  it('caas schema prints the parameter model as JSON Schema, defaults included', async () => {
    const shown = await caas('schema', 'spike-rate');
    expect(shown.code).toBe(0);
    const schema = JSON.parse(shown.stdout) as { properties: Record<string, { default?: unknown }>; additionalProperties?: unknown };
    expect(schema.properties.min_rate_hz?.default).toBe(0.5);
    expect(schema.additionalProperties).toBe(false);
  });

  const pydantic = spawnSync('python3', ['-c', 'import pydantic; assert pydantic.VERSION.startswith("2")']).status === 0;
  it.skipIf(!pydantic)('the committed schemas are what models.py exports (skipped without pydantic 2 for python3)', () => {
    const out = path.join(base, 'exported');
    mkdirSync(out, { recursive: true });
    for (const file of ['models.py', 'export_schemas.py']) writeFileSync(path.join(out, file), readFileSync(path.join(FOLDER, file)));
    execFileSync('python3', ['-B', path.join(out, 'export_schemas.py')], { cwd: out });
    for (const file of ['parameters.schema.json', 'outputs.schema.json']) {
      expect(JSON.parse(readFileSync(path.join(out, file), 'utf8')), file).toEqual(
        JSON.parse(readFileSync(path.join(FOLDER, file), 'utf8')),
      );
    }
  });
});
