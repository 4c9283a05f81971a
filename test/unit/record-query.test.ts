import { describe, expect, it } from 'vitest';
import { buildFilter, parseFields, parseFilter, parseSort, QueryError } from '../../wrapper/record-query.ts';

const NOW = new Date('2024-03-10T12:00:00.000Z');

describe('what caas query accepts, beyond the common cases', () => {
  it('a filter is a JSON object: null, a string or a number is refused the same way as a list', () => {
    for (const text of ['null', '"failed"', '3']) expect(() => parseFilter(text)).toThrow(/the filter must be a JSON object/);
    expect(parseFilter('{}')).toEqual({});
  });

  it('shortcuts alone are ANDed in a fixed order, and a status list ignores blanks', () => {
    expect(buildFilter({}, { since: '7d', analysis: 'unit-filter' }, NOW)).toEqual({
      $and: [{ 'analysis.name': 'unit-filter' }, { created: { $gte: '2024-03-03T12:00:00.000Z' } }],
    });
    expect(buildFilter({}, { status: ' failed , ' })).toEqual({ status: 'failed' });
    expect(() => buildFilter({}, { status: ',' })).toThrow(/^--status expects one of claimed, running, succeeded, failed/);
  });

  it('a commit is 4 to 64 hex digits, matched exactly from 40 on and by prefix below', () => {
    expect(() => buildFilter({}, { commit: 'abc' })).toThrow(QueryError);
    expect(buildFilter({}, { commit: 'B'.repeat(64) })).toEqual({ 'code.commit': 'b'.repeat(64) });
    expect(buildFilter({}, { commit: ' abcd ' })).toEqual({ 'code.commit': { $regex: '^abcd' } });
  });

  it('sort keys take asc and 1 too; other directions are refused', () => {
    expect(parseSort('end:asc, created:1')).toEqual({ end: 1, created: 1 });
    expect(() => parseSort('created:2')).toThrow(/--sort "created:2" is not a sort key/);
  });

  it('fields may use $ and _; a list of blanks is no field at all', () => {
    expect(parseFields('$x,a_b.c')).toEqual(['$x', 'a_b.c']);
    expect(() => parseFields(' , ')).toThrow(/--fields needs at least one field/);
  });
});
