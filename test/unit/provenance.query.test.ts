import { describe, expect, it } from 'vitest';
import { ObjectLocator, openStore } from '../../backends/storage/index.ts';
import { recordDraft } from '../../fixtures/records.ts';
import { InvalidFilterError } from '../../models/filter.ts';
import { project, valuesAt } from '../../wrapper/projection.ts';
import { resultsPlace } from '../../wrapper/record-lookup.ts';
import { buildFilter, parseFields, parseFilter, parseSort, QueryError, sinceInstant } from '../../wrapper/record-query.ts';
import { preimageDiff } from '../../wrapper/why.ts';

const NOW = new Date('2024-03-10T12:00:00.000Z');

describe('query building', () => {
  it('rejects what is not a JSON object or uses an unknown operator, before any store is asked', () => {
    expect(() => parseFilter('{"status":')).toThrow(QueryError);
    expect(() => parseFilter('[1]')).toThrow(/must be a JSON object/);
    expect(() => parseFilter('{"status":{"$almost":1}}')).toThrow(/unknown query operator \$almost/);
    expect(() => parseFilter('{"$nor2":[]}')).toThrow(InvalidFilterError);
    expect(() => parseFilter('{"status":{"$in":"failed"}}')).toThrow(/\$in needs an array/);
    expect(() => parseFilter('{"$or":{"status":"failed"}}')).toThrow(/\$or (needs|expects) .*array/i);
    expect(() => parseFilter('{"$and":[{"inputs":{"$elemMatch":{"name":{"$nin":"x"}}}}]}')).toThrow(/\$nin needs an array/);
    expect(parseFilter('{"parameters.cutoff":{"$lt":0.5}}')).toEqual({ 'parameters.cutoff': { $lt: 0.5 } });
  });

  it('ANDs the shortcuts with the filter', () => {
    expect(buildFilter({}, {})).toEqual({});
    expect(buildFilter({ status: 'failed' }, { analysis: 'unit-filter' })).toEqual({
      $and: [{ status: 'failed' }, { 'analysis.name': 'unit-filter' }],
    });
    expect(buildFilter({}, { input: 'asset-1' })).toEqual({
      $or: [
        { 'inputs.asset_id': 'asset-1' },
        { 'inputs.name': 'asset-1' },
        { 'inputs.location': 'asset-1' },
        { 'inputs.files.url': 'asset-1' },
      ],
    });
    expect(buildFilter({}, { commit: 'ABC1234' })).toEqual({ 'code.commit': { $regex: '^abc1234' } });
    expect(buildFilter({}, { commit: 'a'.repeat(40) })).toEqual({ 'code.commit': 'a'.repeat(40) });
    expect(buildFilter({}, { status: 'failed,running' })).toEqual({ status: { $in: ['failed', 'running'] } });
    expect(() => buildFilter({}, { status: 'done' })).toThrow(/expected claimed, running, succeeded, failed/);
    expect(() => buildFilter({}, { commit: 'xyz' })).toThrow(/commit hash/);
  });

  it('--since takes an ISO date or a span back from now', () => {
    expect(sinceInstant('7d', NOW)).toBe('2024-03-03T12:00:00.000Z');
    expect(sinceInstant('12h', NOW)).toBe('2024-03-10T00:00:00.000Z');
    expect(sinceInstant('30m', NOW)).toBe('2024-03-10T11:30:00.000Z');
    expect(sinceInstant('2w', NOW)).toBe('2024-02-25T12:00:00.000Z');
    expect(sinceInstant('2024-01-02', NOW)).toBe('2024-01-02T00:00:00.000Z');
    expect(sinceInstant('2024-01-02T03:04:05+01:00', NOW)).toBe('2024-01-02T02:04:05.000Z');
    expect(() => sinceInstant('last week', NOW)).toThrow(QueryError);
  });

  it('--sort takes field:-1, -field and lists', () => {
    expect(parseSort('created:-1')).toEqual({ created: -1 });
    expect(parseSort('-end,analysis.name')).toEqual({ end: -1, 'analysis.name': 1 });
    expect(parseSort('created:desc')).toEqual({ created: -1 });
    expect(() => parseSort('-created:1')).toThrow(QueryError);
    expect(() => parseSort('')).toThrow(QueryError);
  });

  it('--fields projects dotted paths as MongoDB does, through arrays, keeping _id', () => {
    const doc = {
      _id: 'x',
      status: 'succeeded',
      code: { commit: 'c', url: null },
      inputs: [{ name: 'a', files: [{ url: 'u1' }] }, { name: 'b' }],
    };
    expect(project(doc, parseFields('status, code.commit,inputs.name'))).toEqual({
      _id: 'x',
      status: 'succeeded',
      code: { commit: 'c' },
      inputs: [{ name: 'a' }, { name: 'b' }],
    });
    expect(project(doc, ['inputs.files.url', 'missing.path'])).toEqual({ _id: 'x', inputs: [{ files: [{ url: 'u1' }] }, {}] });
    expect(valuesAt(doc, 'inputs.files.url')).toEqual(['u1']);
    expect(valuesAt(doc, 'inputs.name')).toEqual(['a', 'b']);
    expect(() => parseFields('a..b')).toThrow(QueryError);
  });
});

describe('where results are', () => {
  const job = (store: 'file' | 's3') => ({
    store,
    bucket: 'mock-wait',
    group: 'caas',
    timestamp: 't',
    results: `${store}://mock-wait/caas/results/job__mock-wait_t/process_results/`,
    logs: `${store}://mock-wait/caas/results/job__mock-wait_t/logs/`,
  });

  // Opening these stores touches neither the disk nor the network.
  const locator = async (storeUrl: string) => {
    const options = { home: '/nowhere' };
    return new ObjectLocator(await openStore(storeUrl, options), options);
  };

  it('an S3 record is fetched with aws s3 cp --recursive', async () => {
    expect((await resultsPlace(job('s3'), await locator('file:'))).fetch).toBe(
      'aws s3 cp --recursive s3://mock-wait/caas/results/job__mock-wait_t/process_results/ ./results',
    );
  });

  it('an S3 record in an S3-compatible server names its endpoint', async () => {
    expect((await resultsPlace(job('s3'), await locator('s3://?endpoint=http://127.0.0.1:4569'))).fetch).toBe(
      'aws s3 cp --recursive --endpoint-url http://127.0.0.1:4569 s3://mock-wait/caas/results/job__mock-wait_t/process_results/ ./results',
    );
  });

  it('a file-store record is a folder under the store root, quoted for the shell when needed', async () => {
    const place = await resultsPlace(job('file'), await locator("file:///data/lab's buckets"));
    expect(place.localResults).toBe("/data/lab's buckets/mock-wait/caas/results/job__mock-wait_t/process_results/");
    expect(place.fetch).toBe(`cp -R '/data/lab'\\''s buckets/mock-wait/caas/results/job__mock-wait_t/process_results' ./results`);
  });
});

describe('pre-image differences', () => {
  const base = recordDraft({ seed: 1, parameters: { isi_violations_cutoff: 0.05 } }).preimage;

  it('are leaf paths with both values', () => {
    const changed = structuredClone(base);
    changed.parameters.isi_violations_cutoff = 0.1;
    changed.code.commit = 'b'.repeat(40);
    expect(preimageDiff(base, changed)).toEqual([
      { path: 'code.commit', recorded: 'a'.repeat(40), job: 'b'.repeat(40) },
      { path: 'parameters.isi_violations_cutoff', recorded: 0.05, job: 0.1 },
    ]);
  });

  it('count a subtree present on one side only once', () => {
    const changed = structuredClone(base);
    changed.code.dirty = 'd'.repeat(64);
    changed.inputs[0]!.files = [
      { url: 'file:///x', etag: 'e', size: 1 },
      { url: 'file:///y', etag: 'f', size: 2 },
    ];
    expect(preimageDiff(base, changed).map((d) => d.path)).toEqual(['code.dirty', 'inputs[0].files']);
    expect(preimageDiff(changed, changed)).toEqual([]);
  });
});
