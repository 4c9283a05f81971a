import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobDocument } from '../models/job-document.ts';
import { AnalysisRepo, readRecords, removeDir, runCli, scratchDir } from './support/workspace.ts';

/** Copies the job document it is handed into its results, and says whether the file its CAAS_JOB names exists. */
const COPY_JOB = `#!/usr/bin/env bash
set -euo pipefail
cp "$CAAS_JOB" "$CAAS_OUTPUT_DIR/job-seen.json"
`;

describe('the analysis knows its job: $CAAS_JOB', () => {
  let base: string;
  let repo: AnalysisRepo;
  let home: string;

  beforeAll(() => {
    base = scratchDir('job-document');
    repo = new AnalysisRepo(base, []);
    repo.addScriptAnalysis('job-reader', COPY_JOB);
    home = path.join(base, 'home');
  });
  afterAll(() => removeDir(base));

  it('names a JSON file with the identity, the parameters as validated, every input with its files, the group and its metadata; the record keeps the group metadata', {
    timeout: 120_000,
  }, async () => {
    const data = path.join(base, 'data');
    mkdirSync(data, { recursive: true });
    for (const name of ['a.json', 'b.json', 'c.json']) writeFileSync(path.join(data, name), `${name}\n`);
    const file = (name: string) => ({ url: `file://${path.join(data, name)}` });
    const jobs = path.join(base, 'jobs.jsonl');
    const input = {
      analysis: 'job-reader',
      inputs: [
        { asset_id: 'asset-1', name: 'session one', location: `file://${data}/`, files: [file('a.json'), file('b.json')] },
        { asset_id: 'asset-2', name: 'session two', location: `file://${data}/`, files: [file('c.json')] },
      ],
      parameters: { mode: 'pooled' },
      group_metadata: { subject_id: '774659', sessions: 2 },
    };
    writeFileSync(jobs, `${JSON.stringify(input)}\n`);
    const ran = await runCli(['--home', home, 'run', jobs, '--execute'], { env: { CAAS_ANALYSES: repo.dir } });
    expect(ran.code).toBe(0);
    const [record] = await readRecords(home);
    const seenKey = record!.outputs!.manifest.find((entry) => entry.key.endsWith('/job-seen.json'))!.key;
    const seen = JobDocument.parse(JSON.parse(readFileSync(path.join(home, 'buckets', 'job-reader', seenKey), 'utf8')));
    expect(seen.identity).toBe(record!._id);
    expect(seen.analysis).toEqual({ name: 'job-reader', version: '1.0.0' });
    expect(seen.code.commit).toBe(repo.head());
    expect(seen.parameters).toEqual({ mode: 'pooled' });
    expect(seen.inputs.map((i) => [i.asset_id, i.name, i.files?.map((f) => path.basename(f.url))])).toEqual([
      ['asset-1', 'session one', ['a.json', 'b.json']],
      ['asset-2', 'session two', ['c.json']],
    ]);
    expect(seen.group).toBe('caas');
    expect(seen.group_metadata).toEqual({ subject_id: '774659', sessions: 2 });
    expect(record!.group_metadata).toEqual({ subject_id: '774659', sessions: 2 });
    expect(seen.results).toBe(record!.job!.results);
  });
});
