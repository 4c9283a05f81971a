import { expect } from 'vitest';
import { checkFilter, InvalidFilterError } from '../../models/filter.ts';
import { MAX_JSON_DEPTH } from '../../models/untrusted-json.ts';

// Shared by the filter check's own tests (unit/filter.test.ts) and those of the stores and commands
// that must repeat its messages (filter.test.ts).

export const TOO_DEEP = `objects and arrays nested more than ${MAX_JSON_DEPTH} levels deep: expected at most ${MAX_JSON_DEPTH} levels`;

/** Filters nested `depth` times, built as text: the test's own JSON.stringify and the checks would recurse as deep. */
export const DEEP: [string, (depth: number) => string, string][] = [
  ['$and', (n) => `${'{"$and":['.repeat(n)}{}${']}'.repeat(n)}`, '$and[0].$and[0].$and[0].$and[0]…'],
  ['$or', (n) => `${'{"$or":[{"a":1},'.repeat(n)}{}${']}'.repeat(n)}`, '$or[1].$or[1].$or[1].$or[1]…'],
  ['$not', (n) => `{"a":${'{"$not":'.repeat(n)}{"$gt":1}${'}'.repeat(n)}}`, 'a.$not.$not.$not.$not.$not.$not.$not…'],
  ['objects', (n) => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`, 'a.a.a.a.a.a.a.a…'],
];

/** The message checkFilter gives, which every command and store must repeat word for word. */
export function problem(filter: unknown): string {
  try {
    checkFilter(filter);
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidFilterError);
    return (error as Error).message;
  }
  throw new Error(`${JSON.stringify(filter)} was accepted`);
}
