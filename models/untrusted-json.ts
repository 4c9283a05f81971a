/**
 * Checks on JSON from users (job lines, configs, submit files) that must run before zod and before
 * hashing: zod and the RFC 8785 canonicaliser recurse (a deep value overflows the stack), the
 * canonicaliser throws on lone surrogates, and zod's records and catch-alls assign keys one by
 * one, so a "__proto__" key silently disappears and two different inputs get one identity.
 */

/**
 * Objects and arrays nested inside each other, counting the document itself: far more than any
 * parameter model needs, and below what every store keeps (MongoDB refuses documents nested over
 * 100 levels; a record holds the parameters 3 levels down).
 */
export const MAX_JSON_DEPTH = 64;

/** Keys that mean something to JavaScript objects: dropped or dangerous as plain data, so refused. */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

// A lone surrogate is the only way a JS string can fail to be Unicode text: \ud800 escapes in JSON.
const LONE_SURROGATE = /\p{Cs}/u;
const UTF8_BOM = '\ufeff';
/** Path segments shown before "…": the path to a too-deep value is as long as the limit. */
const SHOWN_SEGMENTS = 8;

export type ParsedJson = { ok: true; value: unknown } | { ok: false; reason: string };

/** JSON.parse without the byte order mark Windows editors put first, which JSON itself does not allow. */
export function parseJsonText(text: string): ParsedJson {
  try {
    return { ok: true, value: JSON.parse(text.startsWith(UTF8_BOM) ? text.slice(1) : text) };
  } catch (error) {
    return { ok: false, reason: `invalid JSON: ${(error as Error).message}` };
  }
}

interface Problem {
  /** Innermost segment first: filled in as the walk returns. */
  path: string[];
  message: string;
}

/**
 * The first problem in a parsed JSON value, led by its field path as describeIssues writes them
 * (`parameters.extra.0: ...`), or undefined when there is none. The walk recurses, but never past
 * MAX_JSON_DEPTH + 1 levels, so no input can overflow the stack here.
 */
export function untrustedJsonProblem(value: unknown): string | undefined {
  const problem = problemIn(value, 1);
  if (!problem) return undefined;
  const segments = problem.path.map((key) => JSON.stringify(key).slice(1, -1));
  segments.reverse();
  const shown = segments.length > SHOWN_SEGMENTS ? [...segments.slice(0, SHOWN_SEGMENTS), '…'] : segments;
  return `${shown.join('.') || '(root)'}: ${problem.message}`;
}

function problemIn(value: unknown, depth: number): Problem | undefined {
  if (typeof value === 'string') return LONE_SURROGATE.test(value) ? { path: [], message: surrogateMessage(value) } : undefined;
  if (typeof value !== 'object' || value === null) return undefined;
  if (depth > MAX_JSON_DEPTH) {
    return {
      path: [],
      message: `objects and arrays nested more than ${MAX_JSON_DEPTH} levels deep: expected at most ${MAX_JSON_DEPTH} levels`,
    };
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const problem = problemIn(value[i], depth + 1);
      if (problem) return inside(problem, String(i));
    }
    return undefined;
  }
  for (const key of Object.keys(value)) {
    if (FORBIDDEN_KEYS.has(key)) {
      const others = [...FORBIDDEN_KEYS].filter((k) => k !== key).join(', ');
      return {
        path: [key],
        message: `the key "${key}" is not allowed (nor ${others}): expected data keys that are not JavaScript object internals`,
      };
    }
    if (LONE_SURROGATE.test(key)) return { path: [key], message: `${surrogateMessage(key)} in a key` };
    const problem = problemIn((value as Record<string, unknown>)[key], depth + 1);
    if (problem) return inside(problem, key);
  }
  return undefined;
}

function inside(problem: Problem, key: string): Problem {
  problem.path.push(key);
  return problem;
}

function surrogateMessage(text: string): string {
  const code = text.match(LONE_SURROGATE)![0].charCodeAt(0);
  return `a lone surrogate (\\u${code.toString(16)}) is not Unicode text: expected each \\ud800-\\udbff escape to be followed by a \\udc00-\\udfff one`;
}
