import path from 'node:path';
import type { Command } from 'commander';
import { describeDatabases } from '../backends/db/index.ts';
import { CaasError } from '../models/caas-error.ts';
import { defaultSettings, statusIntervalOf } from '../models/caas-settings.ts';
import type { Workspace } from '../wrapper/workspace.ts';

/** Where things live: flags first, then environment, then the embedded defaults under the workspace. */
export type Settings = Workspace;

export function addGlobalOptions(program: Command): Command {
  const defaults = defaultSettings();
  return program
    .option('--home <dir>', 'workspace for the embedded defaults (env CAAS_HOME)', defaults.home)
    .option('--store <url>', 'object store: file: (folder per bucket under the workspace) or s3:// (env CAAS_STORE)', defaults.storeUrl)
    .option('--db <url>', `metadata DB: ${describeDatabases()} (env CAAS_DB)`, defaults.dbUrl)
    .option('--s3-endpoint <url>', 'S3-compatible endpoint, path-style (env AWS_ENDPOINT_URL)', defaults.s3Endpoint);
}

export function settingsOf(command: Command): Settings {
  const options = command.optsWithGlobals<{ home: string; store: string; db: string; s3Endpoint?: string }>();
  return { home: path.resolve(options.home), storeUrl: options.store, dbUrl: options.db, s3Endpoint: options.s3Endpoint };
}

/** Invalid input (flags, job files, queries) exits 2; the message says what to do. */
export class UsageError extends CaasError {}

/** Commander argument parsers that fail with the flag's name and what it expects. */
export function positiveInt(value: string, flag: string, min = 1): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`${flag} expects a whole number >= ${min}, got "${value}"`);
  return n;
}

export function positiveNumber(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${flag} expects a number > 0, got "${value}"`);
  return n;
}

/** CAAS_STATUS_INTERVAL_MS, checked (exit 2 when it is not a sensible number). */
export function statusIntervalMs(): number | undefined {
  return statusIntervalOf(process.env);
}
