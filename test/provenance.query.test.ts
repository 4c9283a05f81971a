import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Database, openDatabase } from '../backends/db/index.ts';
import { mongoUri, withDatabase } from '../fixtures/mongo.ts';
import { concluded, owner, recordDraft } from '../fixtures/records.ts';
import { buildFilter, parseFilter, parseSort } from '../wrapper/record-query.ts';

const NOW = new Date('2024-03-10T12:00:00.000Z');

/** One filter language: each filter finds the same records on every store. */
interface Backend {
  title: string;
  skip?: string;
  open(): Promise<Database>;
  cleanup(): Promise<void>;
}

const home = mkdtempSync(path.join(tmpdir(), 'caas-query-'));
const mongo = await mongoUri();
if (mongo.reason) console.warn(mongo.reason);
const backends: Backend[] = [
  {
    title: 'SQLite (mingo)',
    open: () => openDatabase('sqlite:', { home }),
    cleanup: async () => rmSync(home, { recursive: true, force: true }),
  },
  {
    title: mongo.uri ? 'MongoDB' : `MongoDB (${mongo.reason})`,
    ...(mongo.uri ? {} : { skip: mongo.reason }),
    open: () => openDatabase(withDatabase(mongo.uri!, `caas_query_${process.pid}`), { home }),
    cleanup: () => mongo.stop(),
  },
];

for (const backend of backends) {
  describe.skipIf(backend.skip !== undefined)(`the same filters on ${backend.title}`, () => {
    let db: Database;
    const seeds: Record<string, string> = {};

    beforeAll(async () => {
      db = await backend.open();
      const specs = [
        { seed: 'a', parameters: { isi_violations_cutoff: 0.05 }, created: '2024-03-01T00:00:00.000Z', status: 'succeeded' as const },
        { seed: 'b', parameters: { isi_violations_cutoff: 0.1 }, created: '2024-03-05T00:00:00.000Z', status: 'failed' as const },
        { seed: 'c', parameters: { isi_violations_cutoff: 0.5 }, created: '2024-03-09T00:00:00.000Z', status: 'succeeded' as const },
        {
          seed: 'd',
          analysis: { name: 'mock-wait', version: '1.0.0' },
          parameters: { wait: 0 },
          created: '2024-03-10T00:00:00.000Z',
          status: 'succeeded' as const,
        },
      ];
      for (const spec of specs) {
        const draft = recordDraft(spec);
        await db.claim(draft._id, { draft, owner: owner('q'), leaseMs: 60_000 });
        await db.finish(draft._id, owner('q'), concluded(spec.status));
        seeds[spec.seed] = draft._id;
      }
    });

    afterAll(async () => {
      await db.close();
      await backend.cleanup();
    });

    const found = async (filter: Record<string, unknown>, sort?: Record<string, 1 | -1>) => {
      const ids: string[] = [];
      for await (const record of db.find(filter, { sort })) ids.push(record._id);
      return ids.map((id) => Object.entries(seeds).find(([, v]) => v === id)?.[0]);
    };

    it.each([
      ['a plain field', '{"status":"failed"}', {}, ['b']],
      ['a comparison on a parameter', '{"parameters.isi_violations_cutoff":{"$lte":0.1}}', {}, ['a', 'b']],
      ['$in and $ne', '{"status":{"$in":["failed","succeeded"]},"analysis.name":{"$ne":"mock-wait"}}', {}, ['a', 'b', 'c']],
      ['$exists on a parameter', '{"parameters.wait":{"$exists":true}}', {}, ['d']],
      ['a $regex', '{"inputs.name":{"$regex":"^ecephys_[ab]_"}}', {}, ['a', 'b']],
      ['the --input shortcut', '{}', { input: 'asset-c' }, ['c']],
      ['the --analysis and --status shortcuts', '{}', { analysis: 'unit-filter', status: 'succeeded' }, ['a', 'c']],
      ['the --commit shortcut', '{}', { commit: 'aaaaaaa', analysis: 'mock-wait' }, ['d']],
      ['the --since shortcut', '{}', { since: '2d' }, ['c', 'd']],
    ])('%s', async (_title, text, shortcuts, expected) => {
      const filter = buildFilter(parseFilter(text), shortcuts, NOW);
      expect((await found(filter, { created: 1 })).sort()).toEqual(expected);
    });

    it('sorts descending and limits', async () => {
      const ids: string[] = [];
      for await (const record of db.find({}, { sort: parseSort('-created'), limit: 2 })) ids.push(record._id);
      expect(ids).toEqual([seeds.d, seeds.c]);
    });
  });
}
