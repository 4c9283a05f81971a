import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * caas's folders from the bottom up: a folder imports only folders below it (and itself), so data
 * and dependencies flow one way and a backend never reaches into the wrapper that drives it.
 */
const LAYERS = ['models', 'analyses', 'backends', 'wrapper', 'dispatcher', 'library', 'cli'] as const;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    // unit-filter and mock-wait are analysis repositories of their own, loaded by caas, not part of it.
    if (entry.isDirectory()) return entry.name === 'node_modules' ? [] : sources(full);
    return /\.(ts|mts|mjs)$/.test(entry.name) ? [full] : [];
  });
}

/** Every relative module a file imports: static, type-only, re-exports and dynamic `import()`. */
function importsOf(file: string): { line: number; target: string }[] {
  const found: { line: number; target: string }[] = [];
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((text, i) => {
      for (const match of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]+)['"]/g)) {
        found.push({ line: i + 1, target: path.resolve(path.dirname(file), match[1]!) });
      }
    });
  return found;
}

const layerOf = (file: string) => LAYERS.indexOf(path.relative(ROOT, file).split(path.sep)[0] as (typeof LAYERS)[number]);

describe('the layers of caas', () => {
  it('no folder imports a folder above it (models → analyses → backends → wrapper → dispatcher → library → cli)', () => {
    const upward: string[] = [];
    let checked = 0;
    for (const layer of LAYERS) {
      for (const file of sources(path.join(ROOT, layer))) {
        for (const { line, target } of importsOf(file)) {
          checked++;
          const to = layerOf(target);
          if (to > layerOf(file)) upward.push(`${path.relative(ROOT, file)}:${line} imports ${path.relative(ROOT, target)}`);
        }
      }
    }
    expect(checked).toBeGreaterThan(200);
    expect(upward).toEqual([]);
  });

  it('models, the contracts, import nothing of caas but other models', () => {
    const outside = sources(path.join(ROOT, 'models')).flatMap((file) =>
      importsOf(file)
        .filter(({ target }) => layerOf(target) !== 0)
        .map(({ line, target }) => `${path.relative(ROOT, file)}:${line} imports ${path.relative(ROOT, target)}`),
    );
    expect(outside).toEqual([]);
  });

  it('the check finds an upward import when there is one', () => {
    // The rule above passes vacuously if the import scan finds nothing: it must see this one.
    const file = path.join(ROOT, 'backends', 'compute', 'example.ts');
    const target = path.resolve(path.dirname(file), '../../wrapper/agent.ts');
    expect(layerOf(target)).toBeGreaterThan(layerOf(file));
    const scanned = sources(path.join(ROOT, 'cli')).flatMap(importsOf);
    expect(scanned.some(({ target: t }) => layerOf(t) === LAYERS.indexOf('wrapper'))).toBe(true);
  });
});
