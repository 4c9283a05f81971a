import { isPlainObject } from '../models/plain-object.ts';

type Tree = Map<string, Tree | true>;

/**
 * A MongoDB-style projection of dotted paths: nested objects keep their shape and a path through an
 * array applies to each of its documents, so `inputs.name` gives `{inputs: [{name}, ...]}`.
 * `_id` (the identity) is always kept, as MongoDB does.
 */
export function project(doc: Record<string, unknown>, fields: readonly string[]): Record<string, unknown> {
  const tree: Tree = new Map([['_id', true]]);
  for (const field of fields) {
    let node = tree;
    const parts = field.split('.');
    parts.forEach((part, i) => {
      const existing = node.get(part);
      if (existing === true) return;
      if (i === parts.length - 1) {
        node.set(part, true);
        return;
      }
      const next: Tree = existing ?? new Map();
      node.set(part, next);
      node = next;
    });
  }
  return projectTree(doc, tree) as Record<string, unknown>;
}

function projectTree(value: unknown, tree: Tree): unknown {
  if (Array.isArray(value)) return value.filter(isPlainObject).map((v) => projectTree(v, tree));
  if (!isPlainObject(value)) return undefined;
  const out: Record<string, unknown> = {};
  for (const [key, sub] of tree) {
    if (!(key in value)) continue;
    if (sub === true) out[key] = value[key];
    else {
      const inner = projectTree(value[key], sub);
      if (inner !== undefined) out[key] = inner;
    }
  }
  return out;
}

/** Every value a dotted path reaches, through arrays, as MongoDB's filter does. */
export function valuesAt(doc: unknown, field: string): unknown[] {
  let current: unknown[] = [doc];
  for (const part of field.split('.')) {
    const next: unknown[] = [];
    for (const value of current) {
      const items = Array.isArray(value) ? value : [value];
      for (const item of items) if (isPlainObject(item) && part in item) next.push(item[part]);
    }
    current = next;
  }
  return current.flatMap((v) => (Array.isArray(v) ? v : [v]));
}
