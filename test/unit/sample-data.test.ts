import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import unitFilter from '../../analyses/unit-filter/index.ts';
import { filterUnits, SpikeTrains } from '../../analyses/unit-filter/isi.ts';
import { UnitFilterParameters } from '../../analyses/unit-filter/parameters.ts';
import { FileStore } from '../../backends/storage/fs.ts';
import { generateSampleData, SPIKES_KEY, writeSampleJobs } from '../../dispatcher/sample-data.ts';
import { JobInput } from '../../models/job-input.ts';

let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'caas-sample-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function filesUnder(dir: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    files.set(path.relative(dir, file), await readFile(file));
  }
  return files;
}

async function generateInto(name: string, seed?: number) {
  const root = path.join(tmp, name);
  const store = new FileStore(`file://${root}`, { home: tmp });
  const result = await generateSampleData(store, seed === undefined ? {} : { seed });
  return { store, root, ...result };
}

describe('generateSampleData', () => {
  it('gives byte-identical catalog and files for the same seed', async () => {
    const first = await generateInto('first', 7);
    const second = await generateInto('second', 7);
    expect(second.catalogJsonl).toBe(first.catalogJsonl);
    const a = await filesUnder(path.join(first.root, 'sample-data'));
    const b = await filesUnder(path.join(second.root, 'sample-data'));
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
    for (const [key, body] of a) expect(b.get(key)?.equals(body), key).toBe(true);
    // 2 subjects x 3 sessions, a spike file and a metadata file each.
    expect(a.size).toBe(12);
  });

  it('changes the data, not the layout, with the seed', async () => {
    const other = await generateInto('other-seed', 8);
    const base = await generateInto('base-seed', 7);
    expect(other.assets.map((x) => x.name)).toEqual(base.assets.map((x) => x.name));
    expect(other.assets[0]?._id).not.toBe(base.assets[0]?._id);
    expect(await other.store.get('sample-data', `${other.assets[0]!.name}/${SPIKES_KEY}`)).not.toEqual(
      await base.store.get('sample-data', `${base.assets[0]!.name}/${SPIKES_KEY}`),
    );
  });

  it('writes AIND-shaped asset documents with fixed dates', async () => {
    const { assets, catalogJsonl, store } = await generateInto('shape');
    expect(assets).toHaveLength(6);
    expect(
      catalogJsonl
        .trimEnd()
        .split('\n')
        .map((line) => JSON.parse(line)),
    ).toEqual(assets);
    const [asset] = assets;
    expect(asset).toEqual({
      _id: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/),
      name: 'ecephys_774659_2024-03-04_10-00-00_processed',
      location: 'file://sample-data/ecephys_774659_2024-03-04_10-00-00_processed/',
      subject: { subject_id: '774659' },
      data_description: {
        modality: [{ abbreviation: 'ecephys' }],
        data_level: 'derived',
        project_name: 'Demo Ephys',
        creation_time: '2024-03-05T10:00:00.000Z',
      },
      created: '2024-03-05T10:00:00.000Z',
    });
    expect(new Set(assets.map((a) => a._id)).size).toBe(6);
    expect(new Set(assets.map((a) => a.subject.subject_id))).toEqual(new Set(['774659', '774660']));
    const metadata = JSON.parse((await store.get('sample-data', `${asset!.name}/metadata.nd.json`)).toString());
    expect(metadata).toEqual(asset);
  });

  it('writes spike trains unit-filter accepts, where some units fail the default cutoff and others pass', async () => {
    const { assets, store } = await generateInto('spikes');
    const defaults = UnitFilterParameters.parse({});
    for (const asset of assets) {
      const trains = SpikeTrains.parse(JSON.parse((await store.get('sample-data', `${asset.name}/${SPIKES_KEY}`)).toString()));
      expect(trains.session).toBe(asset.name);
      expect(trains.units).toHaveLength(12);
      const results = filterUnits(trains, defaults);
      expect(results.some((r) => r.passes)).toBe(true);
      expect(results.some((r) => !r.passes)).toBe(true);
    }
  });
});

describe('writeSampleJobs', () => {
  it('makes one valid unit-filter job per asset and cutoff, with etag and size from the store', async () => {
    const { assets, store } = await generateInto('jobs');
    const jobs = await writeSampleJobs(assets, { store });
    expect(jobs).toHaveLength(assets.length * 2);
    for (const job of jobs) expect(JobInput.parse(job)).toEqual(job);
    const asset = assets[0]!;
    const url = `${asset.location}${SPIKES_KEY}`;
    const info = await store.head('sample-data', `${asset.name}/${SPIKES_KEY}`);
    expect(jobs.slice(0, 2)).toEqual(
      [0.05, 0.1].map((cutoff) => ({
        analysis: 'unit-filter',
        inputs: [{ asset_id: asset._id, name: asset.name, location: asset.location, files: [{ url, etag: info!.etag, size: info!.size }] }],
        parameters: { analysis_tag: 'demo', isi_violations_cutoff: cutoff },
        group: 'demo',
        provenance: { source: 'generator' },
      })),
    );
    for (const job of jobs) expect(() => unitFilter.parameters.parse(job.parameters)).not.toThrow();
  });

  it('takes the cutoffs to sweep', async () => {
    const { assets, store } = await generateInto('cutoffs');
    const jobs = await writeSampleJobs(assets, { store, cutoffs: [0.2] });
    expect(jobs.map((j) => j.parameters.isi_violations_cutoff)).toEqual(assets.map(() => 0.2));
  });

  it('refuses assets that are not in the store', async () => {
    const { assets } = await generateInto('elsewhere');
    const empty = new FileStore(`file://${path.join(tmp, 'empty')}`, { home: tmp });
    await expect(writeSampleJobs(assets, { store: empty })).rejects.toThrow(/does not exist: run generateSampleData/);
  });
});
