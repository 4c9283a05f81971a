import path from 'node:path';
import { type Command, Option } from 'commander';
import { describeCatalogs, describeDatabases } from '../backends/db/index.ts';
import { settingOptionName, storeKinds, storeSettingsFrom, storeUrlHelp } from '../backends/storage/index.ts';
import { CaasError } from '../models/caas-error.ts';
import { defaultSettings, statusIntervalOf } from '../models/caas-settings.ts';
import type { Workspace } from '../wrapper/workspace.ts';

/** Where things live: flags first, then environment, then the embedded defaults under the workspace. */
export type Settings = Workspace;

/** Each store kind's own flags (--s3-endpoint, ...), defaulting to their environment variables. */
function storeSettingOptions(): Option[] {
  return storeKinds().flatMap((kind) =>
    (kind.settings ?? []).map((setting) => {
      const option = new Option(setting.flag, `${setting.description}${setting.env ? ` (env ${setting.env})` : ''}`);
      if (setting.env && process.env[setting.env]) option.default(process.env[setting.env]);
      return option;
    }),
  );
}

export function addGlobalOptions(program: Command): Command {
  const defaults = defaultSettings();
  program
    .option('--home <dir>', 'workspace for the embedded defaults (env CAAS_HOME)', defaults.home)
    .option('--store <url>', `object store: ${storeUrlHelp()} (env CAAS_STORE)`, defaults.storeUrl)
    .option('--db <url>', `metadata DB: ${describeDatabases()} (env CAAS_DB)`, defaults.dbUrl);
  for (const option of storeSettingOptions()) program.addOption(option);
  return program;
}

/**
 * --catalog, for the commands that read assets (dispatch, catalog query): not a global option, since
 * the commands that write the catalog (import, generate-sample) fill the one in --db.
 */
export function catalogOption(): Option {
  const option = new Option(
    '--catalog <url>',
    `where assets are read from, read-only: ${describeCatalogs()} (env CAAS_CATALOG; default: the catalog in --db, which caas catalog import fills)`,
  );
  const fromEnv = defaultSettings().catalogUrl;
  if (fromEnv) option.default(fromEnv);
  return option;
}

export function settingsOf(command: Command): Settings {
  const options = command.optsWithGlobals<Record<string, string | undefined> & { home: string; store: string; db: string }>();
  const storeSettings = storeSettingsFrom((setting) => options[settingOptionName(setting)]);
  return { home: path.resolve(options.home), storeUrl: options.store, dbUrl: options.db, storeSettings };
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
