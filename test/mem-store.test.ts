import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, parseObjectUrl } from '../backends/storage/index.ts';
import { dispatch, generateSample, query, run, show } from '../library/index.ts';
import { MemStore, registerMemStore } from './support/mem-store.ts';
import { objectStoreContract } from './support/object-store-contract.ts';

// The architecture's promise: a new kind of object store is its own file plus one registration,
// and then it passes the storage contract and carries a whole job, with no other edit.
registerMemStore();

objectStoreContract('a toy mem:// store registered from a test', async () => ({
  store: await openStore('mem://conformance', { home: os.tmpdir() }),
  close: async () => {},
}));

describe('a job end to end on the mem:// store', () => {
  let home: string;
  beforeAll(async () => {
    home = await mkdtemp(path.join(os.tmpdir(), 'caas-mem-'));
  });
  afterAll(async () => {
    await rm(home, { recursive: true, force: true });
  });

  it('sample data, dispatch, run (agent inline), records and results all in mem://', { timeout: 120_000 }, async () => {
    const storeUrl = 'mem://e2e';
    const workspace = { home, storeUrl, dbUrl: 'sqlite:' };
    const sample = await generateSample(workspace);
    const jobs = path.join(home, 'jobs.jsonl');
    const dispatched = await dispatch({
      ...workspace,
      query: '{"subject.subject_id": "774659", "data_description.data_level": "derived"}',
      analysis: 'unit-filter',
      fileExt: '.spikes.json',
      group: 'demo',
      output: jobs,
    });
    expect(dispatched.jobs).toBeGreaterThan(0);

    const first = await run({ ...workspace, source: jobs, compute: 'inline' });
    expect(first.results.map((result) => result.outcome)).toEqual(Array(dispatched.jobs).fill('succeeded'));

    const records = [];
    for await (const record of query({ 'analysis.name': 'unit-filter' }, workspace)) records.push(record);
    expect(records).toHaveLength(dispatched.jobs);
    const store = new MemStore(storeUrl);
    for (const record of records) {
      expect(record.status).toBe('succeeded');
      expect(record.job?.store).toBe('mem');
      // The inputs were read from, and the results written to, the mem:// store.
      for (const input of record.inputs) expect(input.location).toMatch(new RegExp(`^mem://${sample.bucket}/`));
      const results = parseObjectUrl(record.job!.results);
      const written = [];
      for await (const object of store.list(results.bucket, results.key)) written.push(object.key);
      expect(written.length).toBeGreaterThan(0);
      const { place } = await show(record._id, workspace);
      expect(place?.results).toBe(record.job!.results);
      expect(place?.localResults).toBeUndefined();
    }

    // The gate holds on the new store as on the others: the same jobs again run nothing.
    const second = await run({ ...workspace, source: jobs, compute: 'inline' });
    expect(second.results).toEqual([]);
    expect(second.summary.planned.SKIP).toBe(dispatched.jobs);
  });

  it('a launcher whose agents cannot reach the store refuses it before anything runs (its reach is declared)', async () => {
    const workspace = { home, storeUrl: 'mem://refused', dbUrl: 'sqlite:' };
    await generateSample(workspace);
    const jobs = path.join(home, 'refused.jsonl');
    await dispatch({
      ...workspace,
      query: '{"subject.subject_id": "774659"}',
      analysis: 'unit-filter',
      fileExt: '.spikes.json',
      output: jobs,
    });
    await expect(run({ ...workspace, source: jobs, compute: 'local' })).rejects.toMatchObject({
      exitCode: 2,
      message: expect.stringMatching(
        /--compute local starts an agent process per job, which cannot open "mem:\/\/refused": use --compute inline/,
      ),
    });
    await expect(run({ ...workspace, source: jobs, compute: 'ec2' })).rejects.toThrow(/--compute ec2 needs --store s3:\/\//);
    expect(await new MemStore('mem://refused').bucketExists('unit-filter')).toBe(false);
  });
});
