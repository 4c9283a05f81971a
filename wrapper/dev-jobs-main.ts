// Entry point of a development instance's test-job loop: `node --import tsx wrapper/dev-jobs-main.ts`,
// started by the instance's boot script (backends/compute/dev-user-data.ts) with the store and
// bucket it was launched for (CAAS_DEV_STORE, CAAS_DEV_BUCKET), its id (CAAS_INSTANCE_ID), and
// CAAS_DEV_POLL_MS (how often it looks for jobs, default 5 s).
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { condenseAwsSdkNodeNotice } from '../backends/aws-sdk-notice.ts';
import { openStore } from '../backends/storage/index.ts';
import { DevJobLoop } from './dev-job-loop.ts';

const log = (line: string) => process.stdout.write(`${new Date().toISOString()} ${line}\n`);
const { CAAS_DEV_STORE: storeUrl, CAAS_DEV_BUCKET: bucket, CAAS_INSTANCE_ID: instance } = process.env;
if (!storeUrl || !bucket || !instance) {
  console.error('caas dev: CAAS_DEV_STORE, CAAS_DEV_BUCKET and CAAS_INSTANCE_ID must be set (the boot script sets them)');
  process.exit(2);
}
const pollMs = Number(process.env.CAAS_DEV_POLL_MS ?? 5000);
condenseAwsSdkNodeNotice();

const stop = new AbortController();
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => stop.abort(signal));
const store = await openStore(storeUrl, { home: tmpdir() });
const caasRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
log(`caas dev: test jobs for ${instance} from ${store.scheme}://${bucket}, every ${pollMs} ms`);
try {
  await new DevJobLoop({ store, bucket, instance, caasRoot, log }).run(Number.isFinite(pollMs) && pollMs > 0 ? pollMs : 5000, stop.signal);
} finally {
  await store.close();
}
