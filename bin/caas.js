#!/usr/bin/env node
// The CLI is TypeScript run through tsx, so `npx caas` works right after `npm ci` with no build step.
import { register as registerHook } from 'node:module';
import { register } from 'tsx/esm/api';

// Before tsx: an analysis repository without a package.json still loads as the ES module it is.
registerHook('../analyses/typescript-esm.mjs', import.meta.url);
register();
await import('../cli/main.ts');
