import path from 'node:path';
import type { Command } from 'commander';
import { CaasError } from '../models/caas-error.ts';
import type { Workspace } from '../wrapper/workspace.ts';

/** Where things live: flags first, then environment, then the embedded defaults under the workspace. */
export type Settings = Workspace;

export function addGlobalOptions(program: Command): Command {
  return program
    .option('--home <dir>', 'workspace for the embedded defaults (env CAAS_HOME)', process.env.CAAS_HOME ?? '.caas')
    .option(
      '--store <url>',
      'object store: file: (folder per bucket under the workspace) or s3:// (env CAAS_STORE)',
      process.env.CAAS_STORE ?? 'file:',
    )
    .option(
      '--db <url>',
      'metadata DB: sqlite: (under the workspace), sqlite:<file> or mongodb://... (env CAAS_DB)',
      process.env.CAAS_DB ?? 'sqlite:',
    )
    .option('--s3-endpoint <url>', 'S3-compatible endpoint, path-style (env AWS_ENDPOINT_URL)', process.env.AWS_ENDPOINT_URL);
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

/**
 * CAAS_STATUS_INTERVAL_MS: how often agents write their status file (the heartbeat), default 2000.
 * Leases are checked against it, so a value that is not a sensible number is refused up front.
 */
export function statusIntervalMs(): number | undefined {
  const given = process.env.CAAS_STATUS_INTERVAL_MS;
  if (given === undefined || given === '') return undefined;
  const ms = Number(given);
  if (!Number.isInteger(ms) || ms < 100) {
    throw new UsageError(`CAAS_STATUS_INTERVAL_MS expects a whole number of milliseconds >= 100, got "${given}"`);
  }
  return ms;
}
