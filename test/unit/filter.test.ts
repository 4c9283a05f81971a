import { describe, expect, it } from 'vitest';
import { checkFilter } from '../../models/filter.ts';
import { MAX_JSON_DEPTH } from '../../models/untrusted-json.ts';
import { DEEP, problem, TOO_DEEP } from '../support/filters.ts';

const EXAMPLE_OPERATORS = /expected one of \$eq, \$ne, .*\$bitsAnyClear$/;

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

  it('accepts the filters the docs and the demo use', () => {
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
