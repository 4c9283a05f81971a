/**
 * Makes sure this process can import an analysis' TypeScript. bin/caas.js runs caas from a bundle
 * without a TypeScript loader, since starting one costs ~0.3 s, and leaves here how to start it; a
 * process that runs the sources (tsx, vitest) loads TypeScript already and leaves nothing.
 */
export async function loadTypeScript(): Promise<void> {
  const start = (globalThis as Record<symbol, unknown>)[Symbol.for('caas.loadTypeScript')];
  if (typeof start === 'function') await start();
}
