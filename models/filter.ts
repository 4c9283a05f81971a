import { Query } from 'mingo';
import * as accumulatorOperators from 'mingo/operators/accumulator';
import * as expressionOperators from 'mingo/operators/expression';
import { CaasError } from './caas-error.ts';
import { isPlainObject } from './plain-object.ts';
import { MAX_JSON_DEPTH } from './untrusted-json.ts';

/**
 * The MongoDB filter language as caas accepts it, on every store and from every command (`caas
 * query`, `caas dispatch --query`, `caas catalog query`, and the stores' find and findAssets).
 * The SQLite store runs filters through mingo, which checks an operator's operand only when it
 * meets the first document, with messages such as "b.filter is not a function"; MongoDB checks
 * them on the server. Checking here first makes a mistake fail the same way everywhere, before any
 * store is asked, with a message that names the field and what is expected.
 */
export type Filter = Record<string, unknown>;

/** A filter no store will run: the user's input, never a fault of the store (exit code 2). */
export class InvalidFilterError extends CaasError {
  constructor(detail: string, options?: ErrorOptions) {
    super(`invalid filter: ${detail}`, options);
  }
}

/** Operators that run JavaScript on the database server: arbitrary code, refused wherever they appear. */
const SERVER_JAVASCRIPT = new Set(['$where', '$function', '$accumulator']);

const LOGICAL = new Set(['$and', '$or', '$nor']);

/** The field-level query operators both stores run the same way. */
const FIELD_OPERATORS = [
  '$eq',
  '$ne',
  '$gt',
  '$gte',
  '$lt',
  '$lte',
  '$in',
  '$nin',
  '$all',
  '$elemMatch',
  '$size',
  '$exists',
  '$type',
  '$regex',
  '$options',
  '$mod',
  '$not',
  '$bitsAllSet',
  '$bitsAllClear',
  '$bitsAnySet',
  '$bitsAnyClear',
];
const FIELD_OPERATOR_SET = new Set(FIELD_OPERATORS);

/** $expr's operators: those mingo evaluates (MongoDB has them all), accumulators included as $project allows them. */
const EXPRESSION_OPERATORS = new Set(
  [...Object.keys(expressionOperators), ...Object.keys(accumulatorOperators)].filter((name) => name.startsWith('$')),
);

/** MongoDB's $type aliases (numbers are the BSON type codes). */
const TYPE_ALIASES = new Set([
  'double',
  'string',
  'object',
  'array',
  'binData',
  'undefined',
  'objectId',
  'bool',
  'date',
  'null',
  'regex',
  'dbPointer',
  'javascript',
  'symbol',
  'int',
  'timestamp',
  'long',
  'decimal',
  'minKey',
  'maxKey',
  'number',
]);

/** Checks a filter and returns it; throws InvalidFilterError naming the field path and what is expected. */
export function checkFilter(filter: unknown): Filter {
  compileFilter(filter);
  return filter as Filter;
}

/** The checked filter, compiled by mingo (the SQLite store's engine). */
export function compileFilter(filter: unknown): Query {
  refuseTooDeep(filter, [], 1);
  refuseServerJavaScript(filter, '');
  checkQuery(filter, '');
  try {
    return new Query(filter as never);
  } catch (error) {
    // The walk knows every operator mingo compiles, so this is a last resort for operands it leaves to mingo.
    throw new InvalidFilterError((error as Error).message, { cause: error });
  }
}

/** Path segments shown before "…": the path to a too-deep value is as long as the limit. */
const SHOWN_SEGMENTS = 8;

/**
 * The walks below, mingo and the messages' JSON.stringify all recurse, so a filter nested deeper
 * than MAX_JSON_DEPTH (as job parameters are bounded) is refused first, by a walk that stops there.
 * `path` holds the segments down to `value` ("$and", "[0]", ...).
 */
function refuseTooDeep(value: unknown, path: string[], depth: number): void {
  if (typeof value !== 'object' || value === null) return;
  if (depth > MAX_JSON_DEPTH) {
    const shown = path.length > SHOWN_SEGMENTS ? [...path.slice(0, SHOWN_SEGMENTS), '…'] : path;
    fail(
      shown.reduce((at, segment) => (segment.startsWith('[') || segment === '…' ? at + segment : join(at, segment)), ''),
      `objects and arrays nested more than ${MAX_JSON_DEPTH} levels deep: expected at most ${MAX_JSON_DEPTH} levels`,
    );
  }
  const entries: [string, unknown][] = Array.isArray(value) ? value.map((item, i) => [`[${i}]`, item]) : Object.entries(value);
  for (const [segment, item] of entries) {
    path.push(segment);
    refuseTooDeep(item, path, depth + 1);
    path.pop();
  }
}

function refuseServerJavaScript(value: unknown, at: string): void {
  if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) refuseServerJavaScript(item, `${at}[${i}]`);
    return;
  }
  if (!isPlainObject(value)) return;
  for (const [key, operand] of Object.entries(value)) {
    if (SERVER_JAVASCRIPT.has(key)) {
      fail(
        at,
        `${key} runs JavaScript on the database server and is never allowed; write the condition with query operators ($expr, $regex, $in, ...) instead`,
      );
    }
    refuseServerJavaScript(operand, join(at, key));
  }
}

/** A filter document: field conditions and the top-level operators $and, $or, $nor, $expr. */
function checkQuery(filter: unknown, at: string): void {
  if (!isPlainObject(filter)) fail(at, `a filter is a JSON object such as {"status":"failed"}, got ${show(filter)}`);
  for (const [key, value] of Object.entries(filter)) {
    if (LOGICAL.has(key)) {
      if (!Array.isArray(value) || value.length === 0) {
        fail(
          at,
          `${key} needs a non-empty array of filters, got ${show(value)} (e.g. {"${key}":[{"status":"failed"},{"status":"running"}]})`,
        );
      }
      for (const [i, clause] of value.entries()) checkQuery(clause, `${join(at, key)}[${i}]`);
    } else if (key === '$expr') {
      checkExpression(value, join(at, key));
    } else if (key.startsWith('$')) {
      fail(at, `unknown top-level operator ${key}; expected $and, $or, $nor, $expr or a field name`);
    } else {
      checkCondition(value, join(at, key), key);
    }
  }
}

/** What a field must satisfy: a value to equal, or an object of operators. */
function checkCondition(condition: unknown, at: string, field: string): void {
  if (!isPlainObject(condition) || !Object.keys(condition).some((key) => key.startsWith('$'))) return;
  for (const [op, operand] of Object.entries(condition)) {
    if (!FIELD_OPERATOR_SET.has(op)) {
      if (!op.startsWith('$')) fail(at, `"${op}" is not a query operator: an object with $ operators holds only operators`);
      fail(at, `unknown query operator ${op}; expected one of ${FIELD_OPERATORS.join(', ')}`);
    }
    checkOperand(op, operand, condition, at, field);
  }
}

function checkOperand(op: string, operand: unknown, condition: Record<string, unknown>, at: string, field: string): void {
  switch (op) {
    case '$in':
    case '$nin':
    case '$all':
      if (!Array.isArray(operand)) {
        fail(at, `${op} needs an array, got ${show(operand)} (e.g. {"${field}":{"${op}":[${show(operand)}]}})`);
      }
      return;
    case '$elemMatch':
      if (!isPlainObject(operand))
        fail(at, `$elemMatch needs an object, got ${show(operand)} (e.g. {"${field}":{"$elemMatch":{"name":"x"}}})`);
      // Either conditions on the element itself ({"$gt":1}) or a filter over its fields ({"name":"x"}).
      if (Object.keys(operand).every((key) => FIELD_OPERATOR_SET.has(key))) checkCondition(operand, at, field);
      else checkQuery(operand, at);
      return;
    case '$not':
      if (!isPlainObject(operand) || !Object.keys(operand).some((key) => key.startsWith('$'))) {
        fail(at, `$not needs an object of operators, got ${show(operand)} (e.g. {"${field}":{"$not":{"$gt":5}}})`);
      }
      checkCondition(operand, at, field);
      return;
    case '$size':
      if (!Number.isInteger(operand) || (operand as number) < 0) fail(at, `$size needs a whole number >= 0, got ${show(operand)}`);
      return;
    case '$mod':
      if (!Array.isArray(operand) || operand.length !== 2 || !operand.every((n) => typeof n === 'number') || operand[0] === 0) {
        fail(at, `$mod needs [divisor, remainder] with a divisor other than 0, got ${show(operand)} (e.g. {"${field}":{"$mod":[4,0]}})`);
      }
      return;
    case '$regex':
      if (typeof operand !== 'string') fail(at, `$regex needs a string, got ${show(operand)} (e.g. {"${field}":{"$regex":"^ecephys_"}})`);
      return;
    case '$options':
      if (typeof operand !== 'string') fail(at, `$options needs a string of regex flags such as "i", got ${show(operand)}`);
      if (!('$regex' in condition)) fail(at, '$options needs a $regex beside it');
      return;
    case '$type':
      for (const type of Array.isArray(operand) ? operand : [operand]) {
        if (!(typeof type === 'number' ? Number.isInteger(type) : TYPE_ALIASES.has(type as string))) {
          fail(at, `$type needs a BSON type such as "string", "number" or "array", got ${show(type)}`);
        }
      }
      return;
    case '$bitsAllSet':
    case '$bitsAllClear':
    case '$bitsAnySet':
    case '$bitsAnyClear':
      if (!(Number.isInteger(operand) || (Array.isArray(operand) && operand.every((n) => Number.isInteger(n) && n >= 0)))) {
        fail(at, `${op} needs a bitmask (a whole number) or an array of bit positions, got ${show(operand)}`);
      }
      return;
  }
}

/** An aggregation expression ($expr): every $ key is an operator mingo and MongoDB both know. */
function checkExpression(expression: unknown, at: string): void {
  if (Array.isArray(expression)) {
    for (const [i, item] of expression.entries()) checkExpression(item, `${at}[${i}]`);
    return;
  }
  if (!isPlainObject(expression)) return;
  for (const [key, operand] of Object.entries(expression)) {
    if (key.startsWith('$') && !EXPRESSION_OPERATORS.has(key)) fail(at, `unknown expression operator ${key}`);
    // A literal's content is data, not expressions.
    if (key !== '$literal') checkExpression(operand, join(at, key));
  }
}

function fail(at: string, problem: string): never {
  throw new InvalidFilterError(at ? `${at}: ${problem}` : problem);
}

function join(at: string, key: string): string {
  return at ? `${at}.${key}` : key;
}

function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
