// Runs s3rver in its own node process (started by s3rver.ts with --openssl-legacy-provider, which
// s3rver's DES-encrypted ListObjectsV2 continuation tokens need) and reports the port over IPC.
import { rmSync } from 'node:fs';
import S3rver from 's3rver';

const directory = process.argv[2];
if (!directory || !process.send) {
  console.error('usage: fork s3rver-child.mjs <directory> (with an IPC channel)');
  process.exit(2);
}

// The folder is removed here rather than only by the parent, because a test worker that is killed
// runs none of its own exit hooks; this process still sees its IPC channel close.
const shutdown = () => {
  rmSync(directory, { recursive: true, force: true });
  process.exit(0);
};
process.on('disconnect', shutdown);
process.on('SIGTERM', shutdown);

const server = new S3rver({ address: '127.0.0.1', port: 0, directory, silent: true });
const { port } = await server.run();
process.send({ port });
