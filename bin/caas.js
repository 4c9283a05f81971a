#!/usr/bin/env node
// The CLI is TypeScript, so `npx caas` works right after `npm ci` with no build step: it starts from
// a bundle of its sources that backends/bundled-entry.mjs keeps current, or through tsx when it cannot.
import { register as registerHook } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { bundledEntry, touchBundle } from '../backends/bundled-entry.mjs';

let typeScriptLoader;
/** Lets Node import TypeScript: analyses are TypeScript modules loaded at run time, outside the bundle. */
function loadTypeScript() {
  typeScriptLoader ??= import('tsx/esm/api').then(({ register }) => {
    // Before tsx: an analysis repository without a package.json still loads as the ES module it is.
    registerHook('../analyses/typescript-esm.mjs', import.meta.url);
    register();
  });
  return typeScriptLoader;
}

const main = new URL('../cli/main.ts', import.meta.url);
const bundle = await bundledEntry(fileURLToPath(main), 'cli');
if (bundle) {
  // A long command (`caas serve`, a batch) loads chunks of its bundle on first use: it keeps the
  // bundle marked as in use, so that no other process prunes it meanwhile.
  setInterval(() => touchBundle(bundle), 3600_000).unref();
  // The loader costs ~0.3 s to start, so only a command that loads an analysis starts it (analyses/typescript.ts).
  globalThis[Symbol.for('caas.loadTypeScript')] = loadTypeScript;
  await import(pathToFileURL(bundle).href);
} else {
  await loadTypeScript();
  await import(main.href);
}
