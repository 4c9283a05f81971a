import { Composer, type CST, LineCounter, Parser } from 'yaml';
import { MAX_JSON_DEPTH, parseJsonText } from './untrusted-json.ts';

/**
 * A user's config (a submission's `configname`, `caas dispatch --params`) as JSON or YAML text.
 * NeuroCAAS analyses are configured with YAML as often as with JSON; caas reads either into the
 * same plain data, which then goes through the same guards and the analysis' model as JSON does.
 */

/**
 * Aliases a YAML config may expand: a few anchors are how YAML repeats a block, while nested
 * aliases ("billion laughs") expand exponentially into memory. The yaml package counts each
 * alias by the size of what it expands to.
 */
export const MAX_YAML_ALIASES = 100;

export type ParsedConfig =
  | { ok: true; value: unknown }
  /** `line` and `column` (1-based) say where in the text, when the problem has a place. */
  | { ok: false; reason: string; line?: number; column?: number };

/** A `.yaml` or `.yml` name: read as YAML; any other name is read as JSON, as before YAML was accepted. */
export function isYamlName(name: string): boolean {
  return /\.ya?ml$/i.test(name);
}

/** The config's data, read as YAML or JSON by its name. */
export function parseConfigText(name: string, text: string): ParsedConfig {
  return isYamlName(name) ? parseYamlText(text) : parseJsonText(text);
}

/** `name:line:column: reason`, or `name: reason` when the problem has no place in the text. */
export function describeConfigProblem(name: string, problem: Extract<ParsedConfig, { ok: false }>): string {
  const at = problem.line === undefined ? '' : `:${problem.line}${problem.column === undefined ? '' : `:${problem.column}`}`;
  return `${name}${at}: ${problem.reason}`;
}

/**
 * One YAML 1.2 document as JSON data, or the first problem with its line and column. Refused, as
 * no JSON could say them: several documents, tags caas cannot resolve (`!!python/object`), keys
 * that are aliases, lists or mappings, duplicate keys, more aliases than MAX_YAML_ALIASES, values
 * JSON has no form for. What JSON can say too (nesting after aliases, `__proto__` keys, ...) is
 * left to `untrustedJsonProblem`, which every config goes through next.
 */
export function parseYamlText(text: string): ParsedConfig {
  const lines = new LineCounter();
  const at = (offset: number) => {
    const { line, col } = lines.linePos(offset);
    return { line, column: col };
  };
  // The composer recurses once per level, and the yaml package fails slowly on thousands of levels
  // (or runs out of memory on hundreds of thousands); its parser does not recurse, so the levels
  // are counted between the two.
  const tokens = Array.from(new Parser(lines.addNewLine).parse(text));
  const deep = firstTooDeep(tokens);
  if (deep !== undefined) {
    return { ok: false, reason: `invalid YAML: nested more than ${MAX_JSON_DEPTH} levels deep`, ...at(deep) };
  }
  // stringKeys: a key is the text written (`1:` is "1", `null:` is "null"), as JSON keys are strings.
  const documents = Array.from(new Composer({ uniqueKeys: true, stringKeys: true }).compose(tokens, true, text.length));
  const [document, second] = documents;
  if (!document) return { ok: true, value: null };
  if (second) {
    return { ok: false, reason: 'invalid YAML: several documents (---): expected one config', ...at(second.range[0]) };
  }
  const problem = document.errors[0] ?? document.warnings[0];
  if (problem) {
    const message =
      problem.code === 'NON_STRING_KEY' ? 'a key that is an alias, a list or a mapping: expected keys written as text' : problem.message;
    return { ok: false, reason: `invalid YAML: ${message}`, ...at(problem.pos[0]) };
  }
  let value: unknown;
  try {
    value = document.toJS({ maxAliasCount: MAX_YAML_ALIASES });
  } catch (error) {
    // The yaml package's ReferenceError for expanded aliases: "Excessive alias count indicates a resource exhaustion attack".
    return {
      ok: false,
      reason: `invalid YAML: its aliases expand to too much (${(error as Error).message}): expected at most ${MAX_YAML_ALIASES} alias expansions`,
    };
  }
  const notJson = firstNonJsonValue(value);
  return notJson === undefined ? { ok: true, value } : { ok: false, reason: notJson };
}

/**
 * The path and kind of the first value JSON has no form for (`.inf`, `!!binary`, `!!set`, a
 * `%YAML 1.1` date), which JSON.stringify would silently turn into something else. Walked without
 * recursion, each object once (aliases share them), down to MAX_JSON_DEPTH: deeper values are
 * `untrustedJsonProblem`'s to refuse.
 */
function firstNonJsonValue(root: unknown): string | undefined {
  const stack: { value: unknown; path: string[] }[] = [{ value: root, path: [] }];
  const seen = new Set<object>();
  for (let next = stack.pop(); next; next = stack.pop()) {
    const { value, path } = next;
    const problem = nonJsonProblem(value);
    if (problem !== undefined) return `${path.join('.') || '(root)'}: ${problem}`;
    if (typeof value !== 'object' || value === null || seen.has(value) || path.length >= MAX_JSON_DEPTH) continue;
    seen.add(value);
    // Reversed onto the stack, so the first problem in document order is found first.
    for (const [key, child] of Object.entries(value).reverse()) stack.push({ value: child, path: [...path, key] });
  }
  return undefined;
}

function nonJsonProblem(value: unknown): string | undefined {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return undefined;
  if (typeof value === 'number') return Number.isFinite(value) ? undefined : `${value} is not a JSON number: expected a finite number`;
  if (typeof value === 'object') {
    const prototype = Object.getPrototypeOf(value);
    if (Array.isArray(value) || prototype === Object.prototype || prototype === null) return undefined;
  }
  const kind = typeof value === 'object' ? `a ${value.constructor?.name ?? 'special object'}` : `a ${typeof value}`;
  return `${kind} is not JSON data: expected null, true or false, a number, text, a list or a mapping`;
}

/** Offset of a collection nested more than MAX_JSON_DEPTH levels deep in the parsed tokens (walked without recursion), if any. */
function firstTooDeep(tokens: CST.Token[]): number | undefined {
  const stack: { token: CST.Token; depth: number }[] = tokens.map((token) => ({ token, depth: 0 }));
  for (let next = stack.pop(); next; next = stack.pop()) {
    const { token, depth } = next;
    if (token.type === 'document') {
      if (token.value) stack.push({ token: token.value, depth });
      continue;
    }
    if (token.type !== 'block-map' && token.type !== 'block-seq' && token.type !== 'flow-collection') continue;
    if (depth + 1 > MAX_JSON_DEPTH) return token.offset;
    for (const item of token.items) {
      if (item.key) stack.push({ token: item.key, depth: depth + 1 });
      if (item.value) stack.push({ token: item.value, depth: depth + 1 });
    }
  }
  return undefined;
}
