/**
 * The environment variables that are caas's own settings. They never reach an analysis, whatever
 * a blueprint says (they may hold passwords), nor a local agent (its analysis could read them in
 * /proc/<ppid>/environ). Kept apart from the schemas: the agent reads it without loading zod.
 */
export const CAAS_SETTINGS =
  /^(CAAS_(DB|STORE|HOME|COMPUTE|ANALYSES|CATALOG|LEASE_SECONDS|STATUS_INTERVAL_MS|PROGRESS_INTERVAL_MS|FAULT|DEBUG|AGENT_.*)|MONGODB_URI)$/;
