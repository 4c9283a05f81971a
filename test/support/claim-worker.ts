/**
 * One of several runners racing for the same identities (store conformance suite).
 * Usage: node --import tsx claim-worker.ts <db url> <home> <count> <run> [<module>]
 * Imports the module first when given (one that registers the URL's kind, as toy-database.ts
 * does), opens the store, prints "ready", waits for a line on stdin so that every runner starts claiming
 * at once, then prints the ids it won as one JSON array.
 */
import { once } from 'node:events';
import { openDatabase } from '../../backends/db/index.ts';
import { owner, recordDraft } from '../../fixtures/records.ts';

const [url = '', home = '', count = '0', run = 'worker', setup] = process.argv.slice(2);
if (setup) await import(setup);
const db = await openDatabase(url, { home });
process.stdout.write('ready\n');
await once(process.stdin, 'data');
process.stdin.pause();

const me = owner(run, process.pid);
const won: string[] = [];
for (let i = 0; i < Number(count); i++) {
  const draft = recordDraft({ seed: `race-${i}` });
  const outcome = await db.claim(draft._id, { draft, owner: me, leaseMs: 600_000 });
  if (outcome.won) won.push(draft._id);
}
await db.close();
process.stdout.write(`${JSON.stringify(won)}\n`);
