import { readFileSync } from 'node:fs';

/** The caas version recorded in every record (package.json is the single source). */
export const CAAS_VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string })
  .version;
