/**
 * One of several runners racing for a user group's slots (store conformance suite).
 * Usage: node --import tsx slot-worker.ts <db url> <home> <tries> <limit> <run> [<module>]
 * Imports the module first when given (one that registers the URL's kind), opens the store, prints
 * "ready", waits for a line on stdin so that every runner starts at once, asks for a slot of group
 * "lab" (instance_limit <limit>) <tries> times, then prints the slot ids it took as one JSON array.
 */
import { once } from 'node:events';
import { openDatabase } from '../../backends/db/index.ts';
import { owner, recordDraft } from '../../fixtures/records.ts';

const [url = '', home = '', tries = '0', limit = '1', run = 'worker', setup] = process.argv.slice(2);
if (setup) await import(setup);
const db = await openDatabase(url, { home });
process.stdout.write('ready\n');
await once(process.stdin, 'data');
process.stdin.pause();

const me = owner(run, process.pid);
const taken: string[] = [];
for (let i = 0; i < Number(tries); i++) {
  const slot = await db.takeSlot({
    analysis: 'mock-wait',
    group: 'lab',
    limit: Number(limit),
    identity: recordDraft({ seed: `${run}-${i}` })._id,
    owner: me,
    leaseMs: 600_000,
    worstUsd: 0.1,
    instanceType: 't3.micro',
  });
  if (slot) taken.push(slot._id);
}
await db.close();
process.stdout.write(`${JSON.stringify(taken)}\n`);
