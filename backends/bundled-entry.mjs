// caas runs from its TypeScript sources, with no build step. Started through tsx, a process spends
// about 1 s of CPU before it runs anything: tsx's loader hooks see every module, zod's ninety
// included. The CLI pays that on every command and the local launcher on every job's agent. So an
// entry point is bundled once with esbuild into node_modules/.cache/caas and started as plain
// JavaScript, and bundled again when one of the files it was built from has changed since.
// Packages stay external: they load from this install, the same copies the sources would use.
import { createHash } from 'node:crypto';
import { constants, existsSync, readFileSync, statSync, utimesSync } from 'node:fs';
import { access, mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const BUNDLE_CACHE = path.join(ROOT, 'node_modules/.cache/caas');
const BUNDLED_PACKAGES = new Set(['mingo', 'yaml']);

/**
 * The bundle of `entry` (a caas source file), built if none is current: the path of its JavaScript
 * file, or undefined when it cannot be had (no esbuild, a cache folder this user cannot write), and
 * the caller then starts the sources through tsx as before.
 * @param {string} entry absolute path of the TypeScript entry point
 * @param {string} name the bundle's name in the cache, one per entry point
 * @returns {Promise<string | undefined>}
 */
export async function bundledEntry(entry, name) {
  try {
    const current = currentBundle(entry, name);
    if (current) return current;
    // Fails at once where the cache cannot be written, rather than after a whole build.
    await mkdir(BUNDLE_CACHE, { recursive: true });
    await access(BUNDLE_CACHE, constants.W_OK);
    return await buildBundle(entry, name);
  } catch (error) {
    if (process.env.CAAS_DEBUG) process.stderr.write(`caas: no bundle of ${entry}, starting from the sources: ${error?.stack ?? error}\n`);
    return undefined;
  }
}

/**
 * Marks a bundle as in use, so that pruning leaves it alone: at every start from it, and by a
 * process that keeps using it (a runner's agents, a long `caas serve` that loads chunks on first use).
 * @param {string} file the bundle's JavaScript file
 */
export function touchBundle(file) {
  try {
    const now = new Date();
    utimesSync(path.dirname(file), now, now);
  } catch {
    // A read-only install is never pruned either.
  }
}

/**
 * The record of the bundle of one entry point. Named after the entry's path too: checkouts that
 * share a node_modules folder (worktrees, a link) keep their own bundles apart.
 */
function pointerFile(entry, name) {
  return path.join(BUNDLE_CACHE, `${name}-${createHash('sha256').update(entry).digest('hex').slice(0, 12)}.json`);
}

/** The bundle recorded for `entry`, if every file it was built from is still as it was read then. */
function currentBundle(entry, name) {
  let pointer;
  try {
    pointer = JSON.parse(readFileSync(pointerFile(entry, name), 'utf8'));
    if (pointer.entry !== entry || typeof pointer.dir !== 'string' || !Array.isArray(pointer.sources)) return undefined;
  } catch {
    // None yet, or unreadable: built (again) and written whole.
    return undefined;
  }
  const file = path.join(BUNDLE_CACHE, pointer.dir, `${name}.js`);
  if (!existsSync(file)) return undefined;
  for (const [source, size, mtimeMs] of pointer.sources) {
    const now = statSync(source, { throwIfNoEntry: false });
    if (!now || now.size !== size || now.mtimeMs !== mtimeMs) return undefined;
  }
  touchBundle(file);
  return file;
}

/** How esbuild reads a file of caas by its name. */
function loaderOf(file) {
  if (/\.[mc]?ts$/.test(file)) return 'ts';
  if (file.endsWith('.json')) return 'json';
  return 'js';
}

/** Whether a file is one of caas's own sources (not a package's, though packages live under ROOT too). */
function isSource(file) {
  const relative = path.relative(ROOT, file);
  return !relative.startsWith('..') && !path.isAbsolute(relative) && relative.split(path.sep)[0] !== 'node_modules';
}

async function buildBundle(entry, name) {
  const { build } = await import('esbuild');
  const started = Date.now();
  /**
   * Each source as it was when read: stat before reading, so a file changed meanwhile reads as
   * changed next time. This file (how bundles are made) counts as a source of every bundle.
   */
  const sources = [];
  const record = (file) => {
    const info = statSync(file, { throwIfNoEntry: false });
    // A file written in the second before the build may be written again within its timestamp's
    // granularity (some file systems keep whole seconds) without a new size: it counts as unknown,
    // so the next start bundles again.
    if (info) sources.push([file, info.size, info.mtimeMs >= started - 2000 ? -1 : info.mtimeMs]);
  };
  record(fileURLToPath(import.meta.url));
  // What esbuild reads besides the sources: how to compile them, and the bundled packages' versions.
  for (const file of ['package.json', 'package-lock.json', 'tsconfig.json']) record(path.join(ROOT, file));
  const result = await build({
    entryPoints: { [name]: entry },
    absWorkingDir: ROOT,
    bundle: true,
    // What a command or a job may not need (the S3 and EC2 clients, MongoDB, the server) stays in
    // chunks loaded on first use.
    splitting: true,
    outdir: BUNDLE_CACHE,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    write: false,
    // An expression, not text: the name is each module's own constant (esbuild renames them apart).
    define: { 'import.meta.url': 'caasModuleUrl' },
    // The CommonJS in bundled packages requires Node's built-ins, which an ES module bundle can only do through this.
    banner: { js: "import { createRequire as caasCreateRequire } from 'node:module'; const require = caasCreateRequire(import.meta.url);" },
    logLevel: 'silent',
    plugins: [
      {
        name: 'caas-packages',
        setup(builder) {
          // Packages load from this install, as the sources would load them (zod must be the copy the
          // analyses use), except those made of many small CommonJS files: mingo's 76 modules cost
          // more to find and load one by one than to parse as one chunk.
          builder.onResolve({ filter: /^[^./]/ }, (args) => {
            const name = args.path
              .split('/')
              .slice(0, args.path.startsWith('@') ? 2 : 1)
              .join('/');
            if (args.path.startsWith('node:') || !BUNDLED_PACKAGES.has(name)) return { path: args.path, external: true };
            return undefined;
          });
        },
      },
      {
        name: 'caas-sources',
        setup(builder) {
          builder.onLoad({ filter: /.*/ }, (args) => {
            const source = isSource(args.path);
            if (source) record(args.path);
            const text = readFileSync(args.path, 'utf8');
            const loader = loaderOf(args.path);
            // Each module keeps its own URL (see `define`): caas finds its files (web pages, loaders,
            // package.json) relative to its sources, not to the bundle. A bundled package gets one
            // only if it asks for it.
            if (loader === 'json' || (!source && !text.includes('import.meta.url'))) return { contents: text, loader };
            return { contents: `const caasModuleUrl = ${JSON.stringify(pathToFileURL(args.path).href)};\n${text}`, loader };
          });
        },
      },
    ],
  });
  const digest = createHash('sha256');
  for (const file of result.outputFiles) digest.update(file.path).update(file.contents);
  const dir = `${name}-${digest.digest('hex').slice(0, 16)}`;
  const target = path.join(BUNDLE_CACHE, dir);
  if (!existsSync(path.join(target, `${name}.js`))) {
    // Written whole to a temporary folder and renamed, so a concurrent process never sees half a bundle.
    const tmp = `${target}.${process.pid}.tmp`;
    await mkdir(tmp, { recursive: true });
    for (const file of result.outputFiles) await writeFile(path.join(tmp, path.relative(BUNDLE_CACHE, file.path)), file.contents);
    await rename(tmp, target).catch(async (error) => {
      // Another process renamed the same bundle into place first.
      await rm(tmp, { recursive: true, force: true });
      if (!existsSync(path.join(target, `${name}.js`))) throw error;
    });
  }
  const file = path.join(target, `${name}.js`);
  touchBundle(file);
  const pointer = pointerFile(entry, name);
  await writeFile(`${pointer}.${process.pid}.tmp`, JSON.stringify({ entry, dir, sources }));
  await rename(`${pointer}.${process.pid}.tmp`, pointer);
  // A bundle that was built is used even if tidying up fails.
  await pruneUnusedBundles(name, dir).catch(() => {});
  return file;
}

/**
 * Bundles of earlier sources that no process has started from, or marked as still in use, for a
 * week (see touchBundle).
 */
async function pruneUnusedBundles(name, current) {
  const weekAgo = Date.now() - 7 * 24 * 3600_000;
  for (const dir of await readdir(BUNDLE_CACHE)) {
    if (dir === current || !dir.startsWith(`${name}-`) || dir.endsWith('.json')) continue;
    const used = await stat(path.join(BUNDLE_CACHE, dir)).catch(() => undefined);
    if (used?.isDirectory() && used.mtimeMs < weekAgo) await rm(path.join(BUNDLE_CACHE, dir), { recursive: true, force: true });
  }
}
