import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MongoClient, ObjectId } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Store } from '../backends/storage/s3.ts';
import { type DispatchRequest, runDispatch } from '../dispatcher/dispatch.ts';
import { mongoUri, withDatabase } from '../fixtures/mongo.ts';
import { startS3rver } from '../fixtures/s3rver.ts';
import { runCli } from './support/workspace.ts';

const mongo = await mongoUri();
if (mongo.reason) console.warn(mongo.reason);

const SUBJECTS = ['774659', '774660', '790115', null];

/**
 * Documents shaped as aind-data-schema's Metadata records in AIND's metadata DB: a uuid `_id`,
 * `name`, `location` (s3://bucket/name), `created`, and the core files (subject, data_description
 * with its modalities, processing, quality_control), some of them null as in real records.
 */
const DOCUMENTS = Array.from({ length: 24 }, (_, i) => {
  const subject = SUBJECTS[i % SUBJECTS.length];
  const day = String(1 + ((i * 7) % 28)).padStart(2, '0');
  const name = `ecephys_${subject ?? 'unknown'}_2024-03-${day}_10-00-00${i % 3 === 0 ? '' : '_sorted_2024-04-01_00-00-00'}`;
  const modalities = [{ name: 'Extracellular electrophysiology', abbreviation: 'ecephys' }];
  if (i % 4 === 1) modalities.push({ name: 'Behavior videos', abbreviation: 'behavior-videos' });
  return {
    _id: `${(0x1f0e8a00 + i * 0x1111).toString(16)}-7c3a-4e5b-9d2f-${String(i).padStart(12, '0')}`,
    object_type: 'Metadata',
    describedBy: 'https://raw.githubusercontent.com/AllenNeuralDynamics/aind-data-schema/main/src/aind_data_schema/core/metadata.py',
    schema_version: '2.0.72',
    name,
    location: `s3://aind-open-data/${name}`,
    created: `2024-04-${day}T12:00:00.000000Z`,
    last_modified: `2024-05-${day}T12:00:00.000000Z`,
    subject: subject === null ? null : { subject_id: subject, subject_details: { sex: i % 2 ? 'Male' : 'Female', genotype: 'wt/wt' } },
    data_description: {
      name,
      subject_id: subject,
      project_name: i % 3 === 2 ? 'Behavior Platform' : 'Ephys Platform',
      data_level: i % 3 === 0 ? 'raw' : 'derived',
      modalities,
      institution: { name: 'Allen Institute for Neural Dynamics', abbreviation: 'AIND' },
    },
    processing:
      i % 3 === 0
        ? null
        : {
            data_processes: [
              {
                process_type: 'Spike sorting',
                stage: 'Processing',
                code: { url: 'https://github.com/AllenNeuralDynamics/aind-ephys-pipeline' },
              },
            ],
          },
    quality_control: null,
  };
});

const DISPATCHED_AT = '2025-01-31T12:00:00Z';

/**
 * AIND analysts keep their assets where they are: `--catalog mongodb://…/db.collection` reads a
 * collection of aind-data-schema documents in place, read-only, and dispatches from it exactly what
 * the embedded catalog filled with the same documents (`caas catalog import`) dispatches.
 */
describe.skipIf(!mongo.uri)(
  mongo.uri ? 'dispatch --catalog on an AIND metadata collection' : `dispatch --catalog (${mongo.reason})`,
  () => {
    let tmp: string;
    let home: string;
    /** The collection AIND's metadata lives in, as --catalog names it: mongodb://host/db.collection. */
    let catalogUrl: string;
    let database: string;
    let client: MongoClient;
    let runs = 0;

    beforeAll(async () => {
      tmp = await mkdtemp(path.join(tmpdir(), 'caas-dispatch-catalog-'));
      home = path.join(tmp, 'home');
      database = `metadata_${process.pid}`;
      const dbUrl = withDatabase(mongo.uri as string, database);
      catalogUrl = dbUrl.replace(`/${database}`, `/${database}.data_assets`);
      client = await MongoClient.connect(dbUrl);
      await client.db(database).collection<{ _id: string; [field: string]: unknown }>('data_assets').insertMany(DOCUMENTS);
      // The embedded catalog, filled with the same documents the way a user fills it.
      const jsonl = path.join(tmp, 'assets.jsonl');
      await writeFile(jsonl, `${DOCUMENTS.map((doc) => JSON.stringify(doc)).join('\n')}\n`);
      expect(await runCli(['--home', home, 'catalog', 'import', jsonl])).toMatchObject({ code: 0, stdout: 'imported 24 assets\n' });
    });

    afterAll(async () => {
      await client?.db(database).dropDatabase();
      await client?.close();
      await mongo.stop();
      await rm(tmp, { recursive: true, force: true });
    });

    /** Every collection of the database, with its documents and indexes: what a write would change. */
    async function snapshot(): Promise<unknown> {
      const db = client.db(database);
      const names = (await db.listCollections({}, { nameOnly: true }).toArray()).map((c) => c.name).sort();
      const collections = await Promise.all(
        names.map(async (name) => ({
          name,
          documents: await db.collection(name).find().sort({ _id: 1 }).toArray(),
          indexes: await db.collection(name).listIndexes().toArray(),
        })),
      );
      return collections;
    }

    async function lines(request: Partial<DispatchRequest>): Promise<string> {
      const output = path.join(tmp, `jobs-${++runs}.jsonl`);
      await runDispatch(
        { home, dbUrl: 'sqlite:', storeUrl: 'file:', analysis: 'unit-filter', dispatchedAt: DISPATCHED_AT, output, ...request },
        { warn: () => {} },
      );
      return readFile(output, 'utf8');
    }

    it('gives the same jobs as the embedded catalog filled with the same documents (caas dispatch, flag and CAAS_CATALOG)', async () => {
      const query = '{"data_description.project_name":"Ephys Platform","data_description.data_level":"derived"}';
      const args = ['--home', home, 'dispatch', '--query', query, '--analysis', 'unit-filter', '--dispatched-at', DISPATCHED_AT];
      const embedded = await runCli(args);
      expect(embedded.code).toBe(0);
      expect(embedded.stderr).toBe('8 jobs from 8 assets\n');
      const fromFlag = await runCli([...args, '--catalog', catalogUrl]);
      expect(fromFlag).toMatchObject({ code: 0, stderr: '8 jobs from 8 assets\n' });
      expect(fromFlag.stdout).toBe(embedded.stdout);
      const fromEnv = await runCli(args, { env: { CAAS_CATALOG: catalogUrl } });
      expect(fromEnv.stdout).toBe(embedded.stdout);
      // Each job names its asset by the record's _id, name and location, as AIND's dispatcher does.
      const first = JSON.parse(embedded.stdout.split('\n')[0]!);
      const doc = DOCUMENTS.find((d) => d._id === first.inputs[0].asset_id)!;
      expect(first.inputs).toEqual([{ asset_id: doc._id, name: doc.name, location: doc.location }]);
    });

    it.each<[string, Partial<DispatchRequest>]>([
      ['a filter on nested fields', { query: '{"data_description.modalities.abbreviation":"behavior-videos"}' }],
      ['groups (group_metadata)', { query: '{}', groupBy: ['subject.subject_id'] }],
      ['groups kept with null members', { query: '{}', groupBy: ['subject.subject_id'], dropNullGroups: false }],
      ['the latest per group', { query: '{}', filterLatest: 'created', filterBy: ['subject.subject_id'] }],
      [
        'unwound modalities',
        { query: '{}', unwind: ['data_description.modalities'], groupBy: ['data_description.modalities.abbreviation'] },
      ],
      [
        'a parameter grid, as AIND dispatch models',
        { query: '{"subject.subject_id":"774660"}', params: 'examples/analysis_parameters.json', format: 'aind-jsonl' },
      ],
    ])('gives the same jobs as the embedded catalog for %s', async (_, request) => {
      const embedded = await lines(request);
      expect(embedded).not.toBe('');
      expect(await lines({ ...request, catalogUrl })).toBe(embedded);
    });

    it('looks up the asset ids of a CSV in the collection as in the embedded catalog', async () => {
      const csv = path.join(tmp, 'assets.csv');
      await writeFile(csv, `asset_id\n${DOCUMENTS[5]!._id}\nno-such-asset\n${DOCUMENTS[2]!._id}\n`);
      const warnings: string[] = [];
      const request = { assetsCsv: csv };
      const embedded = await lines(request);
      const output = path.join(tmp, 'csv-from-mongo.jsonl');
      await runDispatch(
        { home, dbUrl: 'sqlite:', catalogUrl, storeUrl: 'file:', analysis: 'unit-filter', dispatchedAt: DISPATCHED_AT, output, ...request },
        { warn: (message) => warnings.push(message) },
      );
      expect(await readFile(output, 'utf8')).toBe(embedded);
      expect(embedded.trim().split('\n')).toHaveLength(2);
      expect(warnings).toEqual([`${csv}:3: asset_id "no-such-asset" is not in the catalog; skipped`]);
    });

    it('writes nothing to the collection or its database: no document, index or collection of its own', async () => {
      const before = await snapshot();
      await lines({ query: '{}', catalogUrl, groupBy: ['subject.subject_id'] });
      // --skip-done opens the records too: they stay in --db, never beside the catalog. It also lists
      // each asset folder (what a folder holds is in the identity), so the assets' bucket is served here.
      const s3 = await startS3rver();
      try {
        const assets = new S3Store('s3://', { home: tmp, endpoint: s3.endpoint });
        await assets.createBucket('aind-open-data');
        for (const doc of DOCUMENTS) await assets.put('aind-open-data', `${doc.name}/units.json`, '{}');
        await assets.close();
        await lines({ query: '{}', catalogUrl, skipDone: true, allowDirty: true, storeSettings: { s3: { endpoint: s3.endpoint } } });
      } finally {
        await s3.stop();
      }
      const listed = await runCli([
        '--home',
        home,
        'catalog',
        'query',
        '--catalog',
        catalogUrl,
        '{"subject.subject_id":"790115"}',
        '--json',
      ]);
      expect(listed.code).toBe(0);
      expect(
        listed.stdout
          .trim()
          .split('\n')
          .map((line) => JSON.parse(line)._id),
      ).toEqual(
        DOCUMENTS.filter((d) => d.subject?.subject_id === '790115')
          .map((d) => d._id)
          .sort(),
      );
      expect(await snapshot()).toEqual(before);
      expect((before as { name: string }[]).map((c) => c.name)).toEqual(['data_assets']);
    });

    it('reads BSON values (dates, ObjectIds) as the JSON caas catalog import would have stored', async () => {
      const db = client.db(database);
      const bson = db.collection<{ _id: string; [field: string]: unknown }>('bson_assets');
      await bson.insertOne({
        _id: 'bson-1',
        name: 'ses-bson',
        location: 's3://aind-open-data/ses-bson',
        subject: { subject_id: 'bson' },
        acquisition: {
          acquisition_start_time: new Date('2024-03-04T10:00:00Z'),
          instrument_id: new ObjectId('65f0a1b2c3d4e5f6a7b8c9d0'),
        },
      });
      try {
        const jobs = await lines({
          query: '{}',
          catalogUrl: catalogUrl.replace('.data_assets', '.bson_assets'),
          groupBy: ['acquisition.acquisition_start_time', 'acquisition.instrument_id'],
        });
        expect(JSON.parse(jobs).group_metadata).toEqual({
          acquisition__acquisition_start_time: '2024-03-04T10:00:00.000Z',
          acquisition__instrument_id: '65f0a1b2c3d4e5f6a7b8c9d0',
        });
      } finally {
        await bson.drop();
      }
    });

    it('refuses a collection that does not exist, and a collection given as --db, naming the flag', async () => {
      const missing = catalogUrl.replace('.data_assets', '.data_asset');
      await expect(lines({ query: '{}', catalogUrl: missing })).rejects.toThrow(
        new RegExp(`^--catalog .*: database "${database}" has no collection "data_asset"`),
      );
      const asDb = await runCli(['--home', home, '--db', catalogUrl, 'query', '{}']);
      expect(asDb.code).toBe(2);
      expect(asDb.stderr).toMatch(/names a collection \(database\.collection\), where --db names a database/);
      const unknown = await runCli([
        '--home',
        home,
        'dispatch',
        '--catalog',
        'postgres://db/assets',
        '--query',
        '{}',
        '--analysis',
        'unit-filter',
      ]);
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toMatch(
        /^caas: --catalog "postgres:\/\/db\/assets" is not supported: use sqlite:.* or mongodb:\/\/host\/db\.collection/,
      );
    });
  },
);
