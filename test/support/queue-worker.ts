/**
 * One of several servers racing to take the same queued jobs (store conformance suite).
 * Usage: node --import tsx queue-worker.ts <db url> <home> <run> [<module>]
 * Prints "ready", waits for a line on stdin so that every server starts taking at once, takes jobs
 * until the queue has none left for it, then prints the ids it took as one JSON array.
 */
import { once } from 'node:events';
import { openDatabase } from '../../backends/db/index.ts';
import { owner } from '../../fixtures/records.ts';

const [url = '', home = '', run = 'worker', setup] = process.argv.slice(2);
if (setup) await import(setup);
const db = await openDatabase(url, { home });
process.stdout.write('ready\n');
await once(process.stdin, 'data');
process.stdin.pause();

const me = owner(run, process.pid);
const took: string[] = [];
for (;;) {
  const job = await db.queue.take(me, 600_000);
  if (!job) break;
  took.push(job._id);
}
await db.close();
process.stdout.write(`${JSON.stringify(took)}\n`);
