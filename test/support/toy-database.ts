/**
 * A metadata DB kind registered from outside backends/: `toy:<file>` is a SQLite file under a
 * scheme of its own. Importing this module is all it takes for --db to open it, which is what the
 * store conformance suite shows (claim-worker.ts imports it too, to race claims through it).
 */
import { registerDatabase } from '../../backends/db/index.ts';

export const TOY_PREFIX = 'toy:';

registerDatabase({
  prefixes: [TOY_PREFIX],
  usage: "toy:<file> (a test's SQLite file)",
  open: async (url, options) => {
    const { SqliteDatabase } = await import('../../backends/db/sqlite.ts');
    return SqliteDatabase.open(`sqlite:${url.slice(TOY_PREFIX.length)}`, options);
  },
});
