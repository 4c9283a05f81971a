import { CaasError } from './caas-error.ts';

/**
 * The environment variables that are caas's own settings. They never reach an analysis, whatever
 * a blueprint says (they may hold passwords), nor a local agent (its analysis could read them in
 * /proc/<ppid>/environ). Kept apart from the schemas: the agent reads it without loading zod.
 */
export const CAAS_SETTINGS =
  /^(CAAS_(DB|STORE|HOME|COMPUTE|ANALYSES|CATALOG|LEASE_SECONDS|STATUS_INTERVAL_MS|PROGRESS_INTERVAL_MS|FAULT|DEBUG|USER|AGENT_.*|DEV_.*)|MONGODB_URI)$/;

/** What every entry point (the CLI's flags, the library's options) defaults to: the environment, then the embedded defaults. */
export interface DefaultSettings {
  home: string;
  storeUrl: string;
  dbUrl: string;
  /** Where dispatch reads assets (CAAS_CATALOG); unset, the catalog in the metadata DB. */
  catalogUrl?: string;
  compute: string;
  leaseSeconds: number;
  /** Who `caas run` runs for (CAAS_USER), when said. */
  user?: string;
}

/**
 * The defaults from the environment, so a library caller and the CLI in the same shell use the
 * same metadata DB and store: otherwise exactly-once would not hold between the two.
 */
export function defaultSettings(env: NodeJS.ProcessEnv = process.env): DefaultSettings {
  return {
    home: env.CAAS_HOME ?? '.caas',
    storeUrl: env.CAAS_STORE ?? 'file:',
    dbUrl: env.CAAS_DB ?? 'sqlite:',
    catalogUrl: env.CAAS_CATALOG || undefined,
    compute: env.CAAS_COMPUTE ?? 'local',
    leaseSeconds: Number(env.CAAS_LEASE_SECONDS ?? 60),
    ...(env.CAAS_USER ? { user: env.CAAS_USER } : {}),
  };
}

/**
 * CAAS_STATUS_INTERVAL_MS: how often agents write their status file (the heartbeat); undefined
 * means the agent's default (2000). Leases are checked against it, so a value that is not a
 * sensible number is refused up front (exit 2) by the commands that run jobs.
 */
export function statusIntervalOf(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const given = env.CAAS_STATUS_INTERVAL_MS;
  if (given === undefined || given === '') return undefined;
  const ms = Number(given);
  if (!Number.isInteger(ms) || ms < 100) {
    throw new CaasError(`CAAS_STATUS_INTERVAL_MS expects a whole number of milliseconds >= 100, got "${given}"`);
  }
  return ms;
}
