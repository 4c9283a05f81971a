import { existsSync, readdirSync } from 'node:fs';
import { register } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type Analysis, AnalysisDefinition } from '../models/analysis.ts';
import { CaasError } from '../models/caas-error.ts';
import { describeIssues } from '../models/issues.ts';

const BUILT_IN = path.dirname(fileURLToPath(import.meta.url));

/**
 * Folders searched for analyses, in order: each extra folder named by CAAS_ANALYSES (path-list,
 * like PATH), then the analyses shipped with caas. An analysis is a folder with an index.ts whose
 * default export is a defineAnalysis(...) result.
 */
export function analysisRoots(extra: string | undefined = process.env.CAAS_ANALYSES): string[] {
  const roots = (extra ?? '')
    .split(path.delimiter)
    .filter(Boolean)
    .map((dir) => path.resolve(dir));
  return [...roots, BUILT_IN];
}

export function listAnalysisNames(roots = analysisRoots()): string[] {
  const names = new Set<string>();
  for (const root of roots) {
    if (!existsSync(root)) continue;
    for (const entry of readdirSync(root, { withFileTypes: true })) {
      if (entry.isDirectory() && existsSync(path.join(root, entry.name, 'index.ts'))) names.add(entry.name);
    }
  }
  return [...names].sort();
}

/** An analysis that cannot be used, unknown or failing to load: the user's input (exit code 2), not a fault of caas. */
export class AnalysisError extends CaasError {}
export class UnknownAnalysisError extends AnalysisError {}

const loaded = new Map<string, Promise<Analysis>>();
let resolverRegistered = false;

/** Analyses outside the caas tree resolve zod and caas/analysis from this install. */
function registerResolver(): void {
  if (resolverRegistered) return;
  resolverRegistered = true;
  register('./resolve-from-caas.mjs', import.meta.url);
}

export function loadAnalysis(name: string, roots = analysisRoots()): Promise<Analysis> {
  const dir = roots.map((root) => path.join(root, name)).find((candidate) => existsSync(path.join(candidate, 'index.ts')));
  if (!/^[a-z0-9][a-z0-9-]*$/.test(name) || !dir) {
    const known = listAnalysisNames(roots);
    return Promise.reject(new UnknownAnalysisError(`unknown analysis "${name}": expected one of ${known.join(', ') || '(none found)'}`));
  }
  let analysis = loaded.get(dir);
  if (!analysis) {
    if (!dir.startsWith(BUILT_IN)) registerResolver();
    analysis = import(pathToFileURL(path.join(dir, 'index.ts')).href).then(
      (module: { default: unknown }) => {
        const definition = AnalysisDefinition.safeParse(module.default);
        if (!definition.success)
          throw new AnalysisError(`${dir}/index.ts does not export a valid analysis: ${describeIssues(definition.error)}`);
        if (definition.data.name !== name)
          throw new AnalysisError(`${dir}/index.ts names itself "${definition.data.name}", expected "${name}"`);
        return { ...definition.data, dir };
      },
      (error: unknown) => {
        // One line, as every input error is (a syntax error arrives with a code frame).
        const reason = String((error as Error)?.message ?? error).replace(/\s*\n\s*/g, ' ');
        throw new AnalysisError(`${dir}/index.ts could not be loaded: ${reason}`, { cause: error });
      },
    );
    loaded.set(dir, analysis);
  }
  return analysis;
}
