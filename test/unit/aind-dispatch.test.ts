import { describe, expect, it } from 'vitest';
import { AindDispatchModel, aindOfJobInput, isAindDispatchModel, jobInputOfAind } from '../../models/aind-dispatch.ts';
import { describeIssues } from '../../models/issues.ts';
import { JobInput } from '../../models/job-input.ts';

const ONE_FILE = JobInput.parse({
  analysis: 'unit-filter',
  inputs: [
    {
      asset_id: 'a1',
      name: 'ses-1',
      location: 's3://aind-open-data/ses-1/',
      files: [{ url: 's3://aind-open-data/ses-1/spikes/units.spikes.json', etag: 'e1', size: 10 }],
    },
  ],
  parameters: { analysis_tag: 'x', isi_violations_cutoff: 0.1 },
  group: 'lab-7',
  provenance: { source: 'query', query: '{"subject.subject_id":"1"}', dispatched_at: '2025-01-31T12:00:00.000Z' },
});

const GROUP = JobInput.parse({
  analysis: 'unit-filter',
  inputs: [
    { asset_id: 'a1', name: 'ses-1', location: 's3://b/ses-1', files: [{ url: 's3://b/ses-1/x.nwb', etag: 'e1', size: 1 }] },
    {
      asset_id: 'a2',
      name: 'ses-2',
      location: 's3://b/ses-2',
      files: [
        { url: 's3://b/ses-2/a.nwb', etag: 'e2', size: 2 },
        { url: 's3://b/ses-2/b.nwb', etag: 'e3', size: 3 },
      ],
    },
  ],
  group_metadata: { subject__subject_id: '1' },
  bucket: 'unit-filter',
  instance_type: 'm5.large',
  provenance: { source: 'csv', query: 'assets.csv', dispatched_at: '2025-01-31T12:00:00.000Z' },
});

const FOLDERS = JobInput.parse({
  analysis: 'unit-filter',
  inputs: [{ asset_id: 'a1', name: 'ses-1', location: 'file://sample-data/ses-1/' }],
});

/** The caas job an AIND model means, as `caas run` reads it back. */
function readBack(model: unknown, analysis = 'unit-filter'): JobInput {
  return JobInput.parse(jobInputOfAind(AindDispatchModel.parse(model), analysis));
}

describe('AIND dispatch models and caas job inputs', () => {
  it.each([
    ['one file of one asset', ONE_FILE],
    ['a group of assets with several files, a bucket and an instance type', GROUP],
    ['whole folders, nothing but the defaults', FOLDERS],
  ])('a caas job written as an AIND model reads back as the same job (%s)', (_, job) => {
    const model = aindOfJobInput(job);
    expect(AindDispatchModel.safeParse(model).success).toBe(true);
    expect(isAindDispatchModel(model)).toBe(true);
    expect(readBack(JSON.parse(JSON.stringify(model)))).toEqual(job);
  });

  it("writes AIND's own fields as AIND's dispatcher does, with caas's additions under caas", () => {
    expect(aindOfJobInput(GROUP)).toEqual({
      s3_location: ['s3://b/ses-1', 's3://b/ses-2'],
      asset_name: ['ses-1', 'ses-2'],
      docdb_record_id: ['a1', 'a2'],
      file_location: ['s3://b/ses-1/x.nwb', 's3://b/ses-2/a.nwb', 's3://b/ses-2/b.nwb'],
      distributed_parameters: null,
      group_metadata: { subject__subject_id: '1' },
      // Only a catalog query is AIND's query; a CSV stays in caas's provenance.
      query: null,
      analysis_code: null,
      caas: {
        analysis: 'unit-filter',
        group: 'caas',
        bucket: 'unit-filter',
        instance_type: 'm5.large',
        files: [
          { etag: 'e1', size: 1 },
          { etag: 'e2', size: 2 },
          { etag: 'e3', size: 3 },
        ],
        provenance: GROUP.provenance,
      },
    });
  });

  it("merges parameters as AIND's wrapper does: distributed over analysis_code's, without its tracked file_location", () => {
    const job = readBack({
      s3_location: ['s3://b/ses-1'],
      asset_name: ['ses-1'],
      docdb_record_id: ['a1'],
      file_location: ['s3://b/ses-1/x.nwb'],
      distributed_parameters: { isi_violations_cutoff: 0.2 },
      group_metadata: null,
      query: '{"subject.subject_id": "1"}',
      analysis_code: {
        url: 'https://example.org/wrapper',
        parameters: { isi_violations_cutoff: 0.05, analysis_tag: 'fixed', file_location: ['s3://b/ses-1/x.nwb'] },
      },
    });
    expect(job.parameters).toEqual({ isi_violations_cutoff: 0.2, analysis_tag: 'fixed' });
    expect(job.inputs).toEqual([{ asset_id: 'a1', name: 'ses-1', location: 's3://b/ses-1', files: [{ url: 's3://b/ses-1/x.nwb' }] }]);
    expect(job.provenance).toEqual({ source: 'query', query: '{"subject.subject_id": "1"}' });
    expect(job.group).toBe('caas');
  });

  it('says what is wrong with a model by its field paths', () => {
    const issues = (model: Record<string, unknown>) => {
      const parsed = AindDispatchModel.safeParse(model);
      return parsed.success ? 'valid' : describeIssues(parsed.error);
    };
    const base = { s3_location: ['s3://b/s1', 's3://b/s2'], asset_name: ['s1', 's2'], docdb_record_id: ['1', '2'] };
    expect(issues(base)).toBe('valid');
    expect(issues({ ...base, docdb_record_id: ['1'] })).toBe('docdb_record_id: expected 2 entries, one per s3_location entry, got 1');
    expect(issues({ ...base, file_location: ['s3://b/s1/x'] })).toBe(
      'file_location: no file under s3_location[1] (s3://b/s2): list its files, or leave file_location out to read whole folders',
    );
    expect(issues({ ...base, file_location: ['s3://b/s1/x', 's3://b/s2/y'], caas: { files: [{ size: 1 }] } })).toBe(
      'caas.files: expected 2 entries, one per file_location entry, got 1',
    );
    expect(issues({ ...base, s3_location: ['s3://b/s1', 's3://b/s2\n'] })).toMatch(/^s3_location\.1: no control characters/);
    expect(issues({ ...base, caas: { analysis: 'x', cost: 1 } })).toBe('caas: Unrecognized key: "cost"');
  });

  it('tells an AIND model from a caas job input by their own fields', () => {
    expect(isAindDispatchModel({ s3_location: [] })).toBe(true);
    expect(isAindDispatchModel({ asset_name: ['x'], docdb_record_id: ['1'] })).toBe(true);
    // A caas job with a stray AIND field stays a caas job, and its schema names the stray key.
    expect(isAindDispatchModel({ analysis: 'a', inputs: [], s3_location: [] })).toBe(false);
    expect(isAindDispatchModel({ group_metadata: {} })).toBe(false);
    expect(isAindDispatchModel([{ s3_location: [] }])).toBe(false);
  });
});
