// Module resolution hook for analyses that live outside the caas tree (CAAS_ANALYSES): their bare
// imports (zod, caas/analysis) resolve from the caas install when their own folder has no
// node_modules, so an analysis repository needs nothing but its code (typescript-esm.mjs does the rest).
const CAAS_PACKAGE = new URL('../package.json', import.meta.url).href;

export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (error) {
    const bare = !specifier.startsWith('.') && !specifier.startsWith('/') && !/^[a-z][a-z0-9+.-]*:/i.test(specifier);
    if (!bare || error?.code !== 'ERR_MODULE_NOT_FOUND' || context.parentURL === CAAS_PACKAGE) throw error;
    return next(specifier, { ...context, parentURL: CAAS_PACKAGE });
  }
}
