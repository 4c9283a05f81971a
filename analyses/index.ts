import { existsSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { register } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';
import { type Analysis, AnalysisDeclaration, AnalysisDefinition, FreeFormParameters } from '../models/analysis.ts';
import { Blueprint } from '../models/blueprint.ts';
import { CaasError } from '../models/caas-error.ts';
import { describeIssues } from '../models/issues.ts';
import { isPlainObject } from '../models/plain-object.ts';
import { loadTypeScript } from './typescript.ts';

const BUILT_IN = path.dirname(fileURLToPath(import.meta.url));

/**
 * Folders searched for analyses, in order: each extra folder named by CAAS_ANALYSES (path-list,
 * like PATH), then the analyses shipped with caas. An analysis is a folder with an index.ts whose
 * default export is a defineAnalysis(...) result, or with an analysis.json (no TypeScript: a
 * NeuroCAAS-style script or a command in any language, models as JSON Schema; see AnalysisDeclaration).
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
      if (entry.isDirectory() && declarationIn(path.join(root, entry.name))) names.add(entry.name);
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

/** The file that declares the analysis in this folder: index.ts (TypeScript) first, else analysis.json (a script). */
function declarationIn(dir: string): 'index.ts' | 'analysis.json' | undefined {
  if (existsSync(path.join(dir, 'index.ts'))) return 'index.ts';
  if (existsSync(path.join(dir, 'analysis.json'))) return 'analysis.json';
  return undefined;
}

export function loadAnalysis(name: string, roots = analysisRoots()): Promise<Analysis> {
  const dir = roots.map((root) => path.join(root, name)).find((candidate) => declarationIn(candidate) !== undefined);
  if (!/^[a-z0-9][a-z0-9-]*$/.test(name) || !dir) {
    const known = listAnalysisNames(roots);
    return Promise.reject(new UnknownAnalysisError(`unknown analysis "${name}": expected one of ${known.join(', ') || '(none found)'}`));
  }
  let analysis = loaded.get(dir);
  if (!analysis && declarationIn(dir) === 'analysis.json') {
    analysis = loadDeclaredAnalysis(name, dir);
    loaded.set(dir, analysis);
  }
  if (!analysis) {
    analysis = loadTypeScript()
      .then(() => {
        // After the TypeScript loader, as when it is loaded at start: hooks registered later run first.
        if (!dir.startsWith(BUILT_IN)) registerResolver();
        return import(pathToFileURL(path.join(dir, 'index.ts')).href);
      })
      .then(
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

async function readJsonFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new AnalysisError(`${file} could not be read: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new AnalysisError(`${file} is not JSON: ${(error as Error).message}`);
  }
}

/** A model from a JSON Schema of analysis.json (written out, or in a file of the folder); its problems name the file. */
async function modelFrom(schemaOrFile: string | Record<string, unknown>, dir: string, where: string): Promise<z.ZodType> {
  const file = typeof schemaOrFile === 'string' ? path.join(dir, schemaOrFile) : where;
  const schema = typeof schemaOrFile === 'string' ? await readJsonFile(file) : schemaOrFile;
  if (!isPlainObject(schema)) throw new AnalysisError(`${file}: expected a JSON Schema object`);
  try {
    return z.fromJSONSchema(schema as z.core.JSONSchema.JSONSchema);
  } catch (error) {
    throw new AnalysisError(`${file}: not a JSON Schema caas can turn into a model: ${(error as Error).message}`);
  }
}

/**
 * An analysis.json folder: a bash script run with the NeuroCAAS variables, or a command in any
 * language; its parameter and output models are JSON Schemas, turned into zod models here.
 */
async function loadDeclaredAnalysis(name: string, dir: string): Promise<Analysis> {
  const file = path.join(dir, 'analysis.json');
  const declared = AnalysisDeclaration.safeParse(await readJsonFile(file));
  if (!declared.success) throw new AnalysisError(`${file} is not a valid analysis declaration: ${describeIssues(declared.error)}`);
  const declaration = declared.data;
  if (declaration.name !== name) throw new AnalysisError(`${file} names the analysis "${declaration.name}", expected "${name}"`);
  if (declaration.script && !existsSync(path.join(dir, declaration.script)))
    throw new AnalysisError(`${file}: script ${declaration.script} does not exist in ${dir}`);
  let blueprint: unknown = declaration.blueprint;
  let blueprintFile = file;
  if (typeof declaration.blueprint === 'string') {
    blueprintFile = path.join(dir, declaration.blueprint);
    blueprint = await readJsonFile(blueprintFile);
  }
  const parsedBlueprint = Blueprint.safeParse(blueprint);
  if (!parsedBlueprint.success) throw new AnalysisError(`${blueprintFile}: ${describeIssues(parsedBlueprint.error)}`);
  const parameters = declaration.parameters ? await modelFrom(declaration.parameters, dir, file) : FreeFormParameters;
  const outputs = declaration.outputs && {
    file: declaration.outputs.file,
    model: declaration.outputs.model ? await modelFrom(declaration.outputs.model, dir, file) : FreeFormParameters,
  };
  const definition = AnalysisDefinition.parse({
    name: declaration.name,
    version: declaration.version,
    description: declaration.description,
    parameters,
    ...(outputs ? { outputs } : {}),
    // The ${analysis_dir} placeholder is expanded by the agent on the machine that runs the job.
    command: declaration.command ?? ['bash', `\${analysis_dir}/${declaration.script}`],
    blueprint: parsedBlueprint.data,
  });
  return { ...definition, dir, ...(declaration.script ? { script: declaration.script } : {}) };
}
