import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Database, openDatabase } from '../backends/db/index.ts';
import { mongoUri, withDatabase } from '../fixtures/mongo.ts';
import { checkFilter, InvalidFilterError } from '../models/filter.ts';
import { MAX_JSON_DEPTH } from '../models/untrusted-json.ts';
import { runCli } from './support/workspace.ts';

const EXAMPLE_OPERATORS = /expected one of \$eq, \$ne, .*\$bitsAnyClear$/;
const TOO_DEEP = `objects and arrays nested more than ${MAX_JSON_DEPTH} levels deep: expected at most ${MAX_JSON_DEPTH} levels`;

/** Filters nested `depth` times, built as text: the test's own JSON.stringify and the checks would recurse as deep. */
const DEEP: [string, (depth: number) => string, string][] = [
  ['$and', (n) => `${'{"$and":['.repeat(n)}{}${']}'.repeat(n)}`, '$and[0].$and[0].$and[0].$and[0]…'],
  ['$or', (n) => `${'{"$or":[{"a":1},'.repeat(n)}{}${']}'.repeat(n)}`, '$or[1].$or[1].$or[1].$or[1]…'],
  ['$not', (n) => `{"a":${'{"$not":'.repeat(n)}{"$gt":1}${'}'.repeat(n)}}`, 'a.$not.$not.$not.$not.$not.$not.$not…'],
  ['objects', (n) => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`, 'a.a.a.a.a.a.a.a…'],
];

/** The message checkFilter gives, which every command and store must repeat word for word. */
function problem(filter: unknown): string {
  try {
    checkFilter(filter);
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidFilterError);
    return (error as Error).message;
  }
  throw new Error(`${JSON.stringify(filter)} was accepted`);
}

describe('one filter check for every command and store', () => {
  it('names the field path and what an array operator expects, with an example built from the field', () => {
    expect(problem({ 'subject.subject_id': { $in: '774659' } })).toBe(
      'invalid filter: subject.subject_id: $in needs an array, got "774659" (e.g. {"subject.subject_id":{"$in":["774659"]}})',
    );
    expect(problem({ x: { $nin: 1 } })).toBe('invalid filter: x: $nin needs an array, got 1 (e.g. {"x":{"$nin":[1]}})');
    expect(problem({ $and: [{ status: 'failed' }, { tags: { $all: 'a' } }] })).toBe(
      'invalid filter: $and[1].tags: $all needs an array, got "a" (e.g. {"tags":{"$all":["a"]}})',
    );
    expect(problem({ inputs: { $elemMatch: { name: { $in: 'x' } } } })).toMatch(/^invalid filter: inputs\.name: \$in needs an array/);
    expect(problem({ $or: { status: 'failed' } })).toMatch(/^invalid filter: \$or needs a non-empty array of filters/);
  });

  it('refuses unknown operators, at the top and on a field, listing what is known', () => {
    expect(problem({ status: { $almost: 'failed' } })).toMatch(/^invalid filter: status: unknown query operator \$almost; /);
    expect(problem({ status: { $almost: 'failed' } })).toMatch(EXAMPLE_OPERATORS);
    expect(problem({ $nor2: [] })).toBe(
      'invalid filter: unknown top-level operator $nor2; expected $and, $or, $nor, $expr or a field name',
    );
    expect(problem({ a: { $eq: 1, b: 2 } })).toMatch(/^invalid filter: a: "b" is not a query operator/);
    expect(problem({ $expr: { $gt: [{ $nosuch: '$a' }, 1] } })).toBe('invalid filter: $expr.$gt[0]: unknown expression operator $nosuch');
  });

  it('always refuses server-side JavaScript ($where, $function, $accumulator), wherever it hides', () => {
    expect(problem({ $where: 'this.a == 1' })).toMatch(
      /^invalid filter: \$where runs JavaScript on the database server and is never allowed/,
    );
    expect(problem({ $expr: { $function: { body: 'function () { return true }', args: [], lang: 'js' } } })).toMatch(
      /^invalid filter: \$expr: \$function runs JavaScript/,
    );
    expect(problem({ $or: [{ a: 1 }, { $expr: { $accumulator: {} } }] })).toMatch(/^invalid filter: \$or\[1\]\.\$expr: \$accumulator runs/);
  });

  it('checks the operands mingo would only trip over at the first document', () => {
    expect(problem({ a: { $size: 'x' } })).toBe('invalid filter: a: $size needs a whole number >= 0, got "x"');
    expect(problem({ a: { $mod: 4 } })).toMatch(/^invalid filter: a: \$mod needs \[divisor, remainder\]/);
    expect(problem({ a: { $regex: 1 } })).toMatch(/^invalid filter: a: \$regex needs a string/);
    expect(problem({ a: { $options: 'i' } })).toBe('invalid filter: a: $options needs a $regex beside it');
    expect(problem({ a: { $type: 'text' } })).toMatch(/^invalid filter: a: \$type needs a BSON type/);
    expect(problem({ a: { $not: 5 } })).toMatch(/^invalid filter: a: \$not needs an object of operators/);
    expect(problem({ a: { $elemMatch: 1 } })).toMatch(/^invalid filter: a: \$elemMatch needs an object/);
    // What the walk leaves to mingo is still checked when mingo compiles the filter.
    expect(problem({ a: { $regex: 'x', $options: 'q' } })).toMatch(/^invalid filter: .*flags/i);
  });

  it(`refuses a filter nested more than ${MAX_JSON_DEPTH} levels deep, naming where, however deep it goes`, () => {
    for (const [name, build, where] of DEEP) {
      expect(problem(JSON.parse(build(5000))), name).toBe(`invalid filter: ${where}: ${TOO_DEEP}`);
      expect(problem(JSON.parse(build(200_000))), name).toBe(`invalid filter: ${where}: ${TOO_DEEP}`);
    }
    // The limit itself is fine: the document and 63 objects inside it.
    const deepest = JSON.parse(DEEP[3]![1](MAX_JSON_DEPTH));
    expect(checkFilter(deepest)).toBe(deepest);
    expect(problem(JSON.parse(DEEP[3]![1](MAX_JSON_DEPTH + 1)))).toBe(`invalid filter: a.a.a.a.a.a.a.a…: ${TOO_DEEP}`);
  });

  it('accepts the filters the README and the demo use', () => {
    for (const filter of [
      {},
      { 'subject.subject_id': '774659' },
      { status: { $in: ['failed', 'running'] } },
      { 'parameters.isi_violations_cutoff': { $lte: 0.05 } },
      { $and: [{ status: 'failed' }, { created: { $gte: '2024-05-01' } }] },
      { 'code.commit': { $regex: '^3f2a' } },
      { name: { $regex: 'ecephys', $options: 'i' } },
      { inputs: { $elemMatch: { name: 'x', 'files.size': { $gt: 0 } } } },
      { tags: { $elemMatch: { $gt: 1, $lt: 5 } } },
      { a: { $not: { $gt: 5 } }, b: { $exists: false }, c: { $type: ['string', 'null'] }, d: { $size: 0 } },
      { $expr: { $gt: [{ $size: '$inputs' }, 1] } },
      { $expr: { $eq: [{ $literal: { $notAnOperator: 1 } }, '$a'] } },
      // A document to equal: its keys are field names, not operators.
      { subject: { subject_id: '774659' } },
    ]) {
      expect(checkFilter(filter)).toBe(filter);
    }
  });
});

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
