// What ${tsx} in an analysis command names: `node --import <this>` runs TypeScript through tsx, and
// bare imports the analysis' own folder cannot resolve (zod, ...) come from the caas install.
import { register } from 'node:module';

// Before tsx, which must see that an analysis without a package.json is an ES module.
register('./typescript-esm.mjs', import.meta.url);
await import('tsx');
register('./resolve-from-caas.mjs', import.meta.url);
