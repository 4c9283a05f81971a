// Module resolution hook: TypeScript is an ES module unless a package.json says otherwise, so an
// analysis repository needs no package.json. Without one, Node and tsx take a .ts file for
// CommonJS, and CommonJS cannot import caas/analysis (require() of an ES module in a cycle).
// Registered BEFORE tsx, so that tsx's resolver sees the format already decided: after it, tsx
// would have rewritten the URL of a CommonJS file for its own CommonJS loader.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context);
  if (resolved.format || !resolved.url.startsWith('file:')) return resolved;
  const file = fileURLToPath(resolved.url);
  // .mts is a module and .cts CommonJS by name; packages in node_modules decide for themselves.
  if (!/\.tsx?$/.test(file) || file.split(path.sep).includes('node_modules')) return resolved;
  if (declaredType(path.dirname(file)) !== undefined) return resolved;
  return { ...resolved, format: 'module' };
}

/** The "type" of the package.json nearest to a folder, as Node looks it up; undefined when none says. */
const declared = new Map();
function declaredType(dir) {
  if (declared.has(dir)) return declared.get(dir);
  let type;
  try {
    type = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')).type;
  } catch (error) {
    // Only a missing file passes the question up; a broken package.json is Node's to report.
    const parent = path.dirname(dir);
    if (error?.code === 'ENOENT' && parent !== dir) type = declaredType(parent);
  }
  declared.set(dir, type);
  return type;
}
