/**
 * When a heartbeat (models/status.ts) is stale: a few of its own intervals, and never less than the
 * interval plus 5 s, so a loaded machine that writes late is not taken for a dead one. The agent
 * stops its analysis itself when it could not write one for nearly this long (another runner may
 * then start the job again). Kept apart from the schemas: the agent reads it without loading zod.
 */
export function staleAfterMs(intervalMs: number): number {
  return Math.max(3 * intervalMs, intervalMs + 5000);
}
