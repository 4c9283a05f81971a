import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MongoClient } from 'mongodb';
import { afterAll, describe, expect, it } from 'vitest';
import { openDatabase, type QueryExplanation } from '../backends/db/index.ts';
import { INDEXED_PATHS } from '../backends/db/record-index.ts';
import { mongoUri, withDatabase } from '../fixtures/mongo.ts';
import { finishedRecord } from '../fixtures/records.ts';

const home = mkdtempSync(path.join(tmpdir(), 'caas-record-index-mongo-'));
const mongo = await mongoUri();
if (mongo.reason) console.warn(mongo.reason);
const name = `caas_record_index_${process.pid}`;

afterAll(async () => {
  rmSync(home, { recursive: true, force: true });
  if (mongo.uri) {
    const client = await MongoClient.connect(mongo.uri);
    await client.db(name).dropDatabase();
    await client.close();
  }
  await mongo.stop();
});

describe.skipIf(!mongo.uri)(`MongoDB gets the record indexes at open${mongo.uri ? '' : ` (${mongo.reason})`}`, () => {
  it('creates one index per indexed path, again without change at the next open, and --explain reports what the server did', async () => {
    const url = withDatabase(mongo.uri!, name);
    for (const round of [1, 2]) {
      const db = await openDatabase(url, { home });
      if (round === 1) await db.importRecords(Array.from({ length: 20 }, (_, i) => finishedRecord({ seed: i })));
      await db.close();
    }
    const client = await MongoClient.connect(mongo.uri!);
    const indexes = await client.db(name).collection('records').listIndexes().toArray();
    await client.close();
    const keys = indexes.map((index) => Object.keys(index.key as object).join(','));
    for (const indexed of INDEXED_PATHS) expect(keys).toContain(indexed);
    // Each once: a second open adds nothing.
    expect(new Set(keys).size).toBe(keys.length);

    const db = await openDatabase(url, { home, readOnly: true });
    let explanation: QueryExplanation | undefined;
    const found: string[] = [];
    const explain = (e: QueryExplanation) => {
      explanation = e;
    };
    for await (const record of db.find({ 'inputs.name': 'ecephys_7_2024-01-01_00-00-00' }, { explain })) found.push(record._id);
    await db.close();
    expect(found).toHaveLength(1);
    expect(explanation?.store).toBe('mongodb');
    // A real server names the index it used; a server that cannot explain says so instead of claiming one.
    if (explanation!.indexes.length > 0) expect(explanation!.indexes).toContain('inputs.name_1');
    else expect(explanation!.plan).toMatch(/did not explain|no index/);
  });
});
