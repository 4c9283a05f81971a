import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * caas's folders from the bottom up: a folder imports only folders below it (and itself), so data
 * and dependencies flow one way and a backend never reaches into the wrapper that drives it.
 */
const LAYERS = ['models', 'analyses', 'backends', 'wrapper', 'dispatcher', 'library', 'server', 'cli'] as const;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' ? [] : sources(full);
    return /\.(c|m)?[jt]sx?$/.test(entry.name) ? [full] : [];
  });
}

/**
 * Every module a source imports: static (also over several lines), type-only, re-exports,
 * dynamic `import()` and `require()`, relative ones resolved against the file; `caas` (the package
 * itself) as its own name.
 */
function importsOf(file: string, text: string): { line: number; target: string }[] {
  const found: { line: number; target: string }[] = [];
  const pattern = /(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|^\s*import\s+)(['"`])([^'"`]+)\1/gm;
  for (const match of text.matchAll(pattern)) {
    const specifier = match[2]!;
    const line = text.slice(0, match.index).split('\n').length;
    if (specifier.startsWith('.')) found.push({ line, target: path.resolve(path.dirname(file), specifier) });
    else if (specifier === 'caas' || specifier.startsWith('caas/')) found.push({ line, target: specifier });
  }
  return found;
}

const layerOf = (target: string) => LAYERS.indexOf(path.relative(ROOT, target).split(path.sep)[0] as (typeof LAYERS)[number]);

/** What is wrong with one import: upward, out of the layers (tests, fixtures), or through the package's own name. */
function problemOf(file: string, target: string): string | undefined {
  // An analysis folder (analyses/<name>/) is an analysis repository of its own: it imports caas/analysis as any analysis does.
  const analysisRepository = /^analyses[/\\][^/\\]+[/\\]/.test(path.relative(ROOT, file));
  if (analysisRepository && target === 'caas/analysis') return undefined;
  if (!path.isAbsolute(target)) return `imports caas by its package name (${target}): inside caas, import the module itself`;
  const to = layerOf(target);
  if (to < 0) return `imports ${path.relative(ROOT, target)}, outside the layers`;
  if (to > layerOf(file)) return `imports ${path.relative(ROOT, target)}, a layer above it`;
  return undefined;
}

function problemsIn(file: string, text: string): string[] {
  return importsOf(file, text).flatMap(({ line, target }) => {
    const problem = problemOf(file, target);
    return problem ? [`${path.relative(ROOT, file)}:${line} ${problem}`] : [];
  });
}

describe('the layers of caas', () => {
  it('no folder imports a folder above it (models → analyses → backends → wrapper → dispatcher → library → cli), nor outside them', () => {
    const problems: string[] = [];
    let checked = 0;
    for (const layer of LAYERS) {
      for (const file of sources(path.join(ROOT, layer))) {
        const text = readFileSync(file, 'utf8');
        checked += importsOf(file, text).length;
        problems.push(...problemsIn(file, text));
      }
    }
    expect(checked).toBeGreaterThan(200);
    expect(problems).toEqual([]);
  });

  it('models, the contracts, import nothing of caas but other models', () => {
    const outside = sources(path.join(ROOT, 'models')).flatMap((file) =>
      importsOf(file, readFileSync(file, 'utf8'))
        .filter(({ target }) => layerOf(target) !== 0)
        .map(({ line, target }) => `${path.relative(ROOT, file)}:${line} imports ${target}`),
    );
    expect(outside).toEqual([]);
  });

  it('the check sees every form of import', () => {
    const file = path.join(ROOT, 'backends', 'compute', 'example.ts');
    const text = [
      "import {\n  runAgent,\n} from '../../wrapper/agent.ts';",
      "export * from '../../cli/main.ts';",
      "import type { X } from '../../dispatcher/dispatch.ts';",
      "const lazy = await import(\n  '../../library/index.ts'\n);",
      "const old = require('../../wrapper/run.ts');",
      "import { s3 } from '../../fixtures/s3rver.ts';",
      "import { run } from 'caas';",
      "import { ok } from '../storage/index.ts';",
    ].join('\n');
    expect(problemsIn(file, text)).toEqual([
      'backends/compute/example.ts:3 imports wrapper/agent.ts, a layer above it',
      'backends/compute/example.ts:4 imports cli/main.ts, a layer above it',
      'backends/compute/example.ts:5 imports dispatcher/dispatch.ts, a layer above it',
      'backends/compute/example.ts:6 imports library/index.ts, a layer above it',
      'backends/compute/example.ts:9 imports wrapper/run.ts, a layer above it',
      'backends/compute/example.ts:10 imports fixtures/s3rver.ts, outside the layers',
      'backends/compute/example.ts:11 imports caas by its package name (caas): inside caas, import the module itself',
    ]);
  });
});
