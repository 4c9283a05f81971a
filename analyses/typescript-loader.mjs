// What ${tsx} in an analysis command names: `node --import <this>` runs TypeScript through tsx, and
// bare imports the analysis' own folder cannot resolve (zod, ...) come from the caas install.
import { register } from 'node:module';

await import('tsx');
register('./resolve-from-caas.mjs', import.meta.url);
