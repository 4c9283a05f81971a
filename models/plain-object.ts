/**
 * A JSON object, as opposed to null, an array or a scalar. Kept in models, free of zod, so the
 * filter check, the wrapper and the dispatcher share one definition without breaking the layers.
 */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
