import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../backends/db/index.ts';
import { type DispatchRequest, runDispatch } from '../dispatcher/dispatch.ts';
import { mongoUri, withDatabase } from '../fixtures/mongo.ts';

const mongo = await mongoUri();
if (mongo.reason) console.warn(mongo.reason);

const ASSETS = Array.from({ length: 30 }, (_, i) => ({
  _id: `asset-${String(29 - i).padStart(2, '0')}`,
  name: `ses-${i}`,
  location: `s3://bucket/ses-${i}/`,
  subject: i % 7 === 0 ? {} : { subject_id: String(i % 4) },
  data_description: { modality: [{ abbreviation: i % 2 ? 'ecephys' : 'behavior' }] },
  created: `2024-01-${String(1 + (i % 28)).padStart(2, '0')}`,
}));

/** The catalog query runs in MongoDB's aggregation, everything after it in the dispatcher: both catalogs must dispatch alike. */
describe.skipIf(!mongo.uri)(mongo.uri ? 'dispatch on MongoDB' : `dispatch on MongoDB (${mongo.reason})`, () => {
  let tmp: string;
  let mongoUrl: string;
  let sqliteUrl: string;
  let runs = 0;

  beforeAll(async () => {
    tmp = await mkdtemp(path.join(tmpdir(), 'caas-dispatch-mongo-'));
    mongoUrl = withDatabase(mongo.uri as string, `caas_dispatch_${process.pid}`);
    sqliteUrl = `sqlite:${path.join(tmp, 'catalog.sqlite')}`;
    for (const url of [mongoUrl, sqliteUrl]) {
      const db = await openDatabase(url, { home: tmp });
      await db.importAssets(ASSETS);
      await db.close();
    }
  });

  afterAll(async () => {
    const client = await MongoClient.connect(mongoUrl);
    await client.db().dropDatabase();
    await client.close();
    await mongo.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  async function lines(dbUrl: string, request: Partial<DispatchRequest>): Promise<string> {
    const output = path.join(tmp, `jobs-${++runs}.jsonl`);
    await runDispatch(
      { home: tmp, dbUrl, storeUrl: 'file:', analysis: 'unit-filter', dispatchedAt: '2025-01-31T12:00:00Z', output, ...request },
      { warn: () => {} },
    );
    return readFile(output, 'utf8');
  }

  it.each<[string, Partial<DispatchRequest>]>([
    ['a filter', { query: '{"data_description.modality.abbreviation":"ecephys","created":{"$gte":"2024-01-10"}}' }],
    ['groups', { query: '{}', groupBy: ['subject.subject_id'] }],
    ['the latest per group', { query: '{}', filterLatest: 'created', filterBy: ['subject.subject_id'] }],
  ])('gives the same lines as the embedded catalog for %s', async (_, request) => {
    const embedded = await lines(sqliteUrl, request);
    expect(embedded).not.toBe('');
    expect(await lines(mongoUrl, request)).toBe(embedded);
  });

  it('refuses an unknown operator as a usage error', async () => {
    await expect(lines(mongoUrl, { query: '{"created":{"$newerThan":"2024"}}' })).rejects.toThrow(
      /^invalid filter: created: unknown query operator \$newerThan;/,
    );
  });
});
