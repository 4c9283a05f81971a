import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Database, openDatabase } from '../backends/db/index.ts';
import { mongoUri, withDatabase } from '../fixtures/mongo.ts';
import { InvalidFilterError } from '../models/filter.ts';
import { DEEP, problem, TOO_DEEP } from './support/filters.ts';
import { runCli } from './support/workspace.ts';

const home = mkdtempSync(path.join(tmpdir(), 'caas-filter-'));
const mongo = await mongoUri();
if (mongo.reason) console.warn(mongo.reason);
const stores: { title: string; skip?: string; open(): Promise<Database> }[] = [
  { title: 'SQLite (mingo)', open: () => openDatabase('sqlite:', { home }) },
  {
    title: mongo.uri ? 'MongoDB' : `MongoDB (${mongo.reason})`,
    ...(mongo.uri ? {} : { skip: mongo.reason }),
    open: () => openDatabase(withDatabase(mongo.uri!, `caas_filter_${process.pid}`), { home }),
  },
];

afterAll(async () => {
  rmSync(home, { recursive: true, force: true });
  await mongo.stop();
});

for (const store of stores) {
  describe.skipIf(store.skip !== undefined)(`find and findAssets on ${store.title}`, () => {
    let db: Database;
    beforeAll(async () => {
      db = await store.open();
      // A document to meet: mingo's own errors about operands only surfaced at the first one.
      await db.importAssets([{ _id: 'a1', name: 'a1', location: 'file://data/a1/', subject: { subject_id: '774659' } }]);
    });
    afterAll(async () => {
      await db.close();
    });

    it.each([[{ 'subject.subject_id': { $in: '774659' } }], [{ x: { $in: 1 } }], [{ $where: 'true' }], [{ a: { $bogus: 1 } }]])(
      'refuse %j with the message of the shared check',
      async (filter) => {
        const refusal = async (rows: AsyncIterable<unknown>) => {
          try {
            for await (const _ of rows) {
              // Reading is the check.
            }
          } catch (error) {
            expect(error).toBeInstanceOf(InvalidFilterError);
            return (error as Error).message;
          }
          return 'accepted';
        };
        const expected = problem(filter);
        expect(await refusal(db.findAssets(filter))).toBe(expected);
        expect(await refusal(db.find(filter))).toBe(expected);
        // Even when nothing would be read.
        expect(await refusal(db.find(filter, { limit: 0 }))).toBe(expected);
      },
    );
  });
}

describe('caas dispatch, caas query and caas catalog query answer a bad filter alike', () => {
  const cliHome = mkdtempSync(path.join(tmpdir(), 'caas-filter-cli-'));
  afterAll(() => rmSync(cliHome, { recursive: true, force: true }));

  it.each([
    ['$in without an array', { 'subject.subject_id': { $in: '774659' } }],
    ['$nin without an array', { 'subject.subject_id': { $nin: 774659 } }],
    ['$all without an array', { 'data_description.modality': { $all: 'ecephys' } }],
    ['an unknown operator', { created: { $newerThan: '2024' } }],
    ['$where', { $where: 'this.subject.subject_id == "774659"' }],
    ['$function', { $expr: { $function: { body: 'function () { return true }', args: [], lang: 'js' } } }],
  ])('%s: exit 2 and the same one line from each', async (_, filter) => {
    const text = JSON.stringify(filter);
    const line = `caas: ${problem(filter)}\n`;
    const [dispatched, queried, catalogued] = await Promise.all([
      runCli(['--home', cliHome, 'dispatch', '--query', text, '--analysis', 'unit-filter']),
      runCli(['--home', cliHome, 'query', text]),
      runCli(['--home', cliHome, 'catalog', 'query', text]),
    ]);
    expect(dispatched).toEqual({ code: 2, stdout: '', stderr: line });
    expect(queried).toEqual({ code: 2, stdout: '', stderr: line });
    expect(catalogued).toEqual({ code: 2, stdout: '', stderr: line });
  });
});

describe('a filter nested 5000 deep is an invalid filter on the command line, not a stack overflow', () => {
  const cliHome = mkdtempSync(path.join(tmpdir(), 'caas-filter-deep-'));
  afterAll(() => rmSync(cliHome, { recursive: true, force: true }));

  it.each(DEEP)('%s: caas query (and dispatch --query, catalog query) exit 2 with one line naming where', async (_, build, where) => {
    const text = build(5000);
    const line = `caas: invalid filter: ${where}: ${TOO_DEEP}\n`;
    const [queried, dispatched, catalogued] = await Promise.all([
      runCli(['--home', cliHome, 'query', text]),
      runCli(['--home', cliHome, 'dispatch', '--query', text, '--analysis', 'unit-filter']),
      runCli(['--home', cliHome, 'catalog', 'query', text]),
    ]);
    expect(queried).toEqual({ code: 2, stdout: '', stderr: line });
    expect(dispatched).toEqual({ code: 2, stdout: '', stderr: line });
    expect(catalogued).toEqual({ code: 2, stdout: '', stderr: line });
  });
});

describe('caas catalog query', () => {
  const catalogHome = mkdtempSync(path.join(tmpdir(), 'caas-catalog-query-'));
  afterAll(() => rmSync(catalogHome, { recursive: true, force: true }));

  it('lists the assets a dispatch --query would read, as a table or as JSON lines', async () => {
    expect((await runCli(['--home', catalogHome, 'catalog', 'generate-sample', '--sessions', '2'])).code).toBe(0);
    const filter = '{"subject.subject_id":{"$in":["774660"]}}';
    const table = await runCli(['--home', catalogHome, 'catalog', 'query', filter]);
    expect(table.code, table.stderr).toBe(0);
    const [header, ...rows] = table.stdout.trim().split('\n');
    expect(header).toMatch(/^ID\s+NAME\s+LOCATION$/);
    expect(rows).toHaveLength(2);
    for (const row of rows) expect(row).toMatch(/\secephys_774660_\S+\s+file:\/\/sample-data\/ecephys_774660_/);

    const json = await runCli(['--home', catalogHome, 'catalog', 'query', filter, '--json', '--limit', '1']);
    expect(json.code).toBe(0);
    const docs = json.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(docs).toHaveLength(1);
    expect(docs[0]).toMatchObject({ subject: { subject_id: '774660' } });

    const none = await runCli(['--home', catalogHome, 'catalog', 'query', '{"subject.subject_id":"nobody"}']);
    expect(none).toEqual({ code: 0, stdout: '', stderr: 'no catalog documents match {"subject.subject_id":"nobody"}\n' });
  });
});
