import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileStore } from '../backends/storage/fs.ts';
import type { ObjectInfo, ObjectStore } from '../backends/storage/index.ts';
import { S3Store } from '../backends/storage/s3.ts';
import { startS3rver } from '../fixtures/s3rver.ts';
import { uploadFolder } from '../wrapper/upload.ts';
import { removeDir, scratchDir } from './support/workspace.ts';

const PREFIX = 'grp/results/job__b_ts/process_results/';
// Over S3Store's 8 MiB part size, so it goes up in two parts (s3rver's ETag does not show that: it is
// the md5 of the whole object, not of the parts).
const BIG_FILE_BYTES = 9 * 1024 * 1024 + 1_234;
const SMALL_FILES = 60;

interface Subject {
  store: ObjectStore;
  close(): Promise<void>;
}

/** A results folder as analyses write them: nested folders, an empty file, one large file, many small ones. */
function writeResultsFolder(dir: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  const write = (relativePath: string, body: Buffer) => {
    const file = path.join(dir, ...relativePath.split('/'));
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, body);
    files.set(relativePath, body);
  };
  write('empty.txt', Buffer.alloc(0));
  write('big/recording.bin', randomBytes(BIG_FILE_BYTES));
  write('deep/a/b/c/d/leaf.csv', Buffer.from('unit,rate\n1,3.5\n'));
  write('notes/naïve summary ✓.txt', Buffer.from('keys keep spaces and unicode\n'));
  for (let i = 0; i < SMALL_FILES; i++) {
    write(`units/shank-${i % 3}/unit-${String(i).padStart(3, '0')}.json`, randomBytes(1 + ((i * 7919) % 20_000)));
  }
  return files;
}

function sha256(body: Buffer): string {
  return createHash('sha256').update(body).digest('hex');
}

async function objectsUnder(store: ObjectStore, bucket: string, prefix: string): Promise<ObjectInfo[]> {
  const found: ObjectInfo[] = [];
  for await (const info of store.list(bucket, prefix)) found.push(info);
  return found;
}

/** The real store, counting the putFile calls in flight, so a test can see how many overlapped. */
function countingUploads(store: ObjectStore): { store: ObjectStore; inFlight: () => number; mostInFlight: () => number } {
  let inFlight = 0;
  let mostInFlight = 0;
  const counting: ObjectStore = Object.create(store);
  counting.putFile = async (bucket, key, localPath) => {
    inFlight++;
    mostInFlight = Math.max(mostInFlight, inFlight);
    try {
      return await store.putFile(bucket, key, localPath);
    } finally {
      inFlight--;
    }
  };
  return { store: counting, inFlight: () => inFlight, mostInFlight: () => mostInFlight };
}

/** `unusableBucket`: a bucket every upload to this store fails for. */
function uploadFolderPromises(name: string, unusableBucket: string, open: () => Promise<Subject>): void {
  describe(`uploadFolder to ${name}`, () => {
    const bucket = 'caas-upload';
    let subject: Subject;
    let store: ObjectStore;
    let base: string;

    beforeAll(async () => {
      subject = await open();
      store = subject.store;
      await store.createBucket(bucket);
      base = scratchDir(`upload-${name.split(' ')[0]}`);
    });
    afterAll(async () => {
      await subject?.close();
      if (base) removeDir(base);
    });

    it('uploads every file byte for byte under prefix + relative path, and its manifest says what was stored', async () => {
      const dir = path.join(base, 'every-file');
      const files = writeResultsFolder(dir);
      const manifest = await uploadFolder(store, bucket, PREFIX, dir);

      const expectedKeys = [...files.keys()].map((relativePath) => PREFIX + relativePath).sort();
      expect(manifest.map((entry) => entry.key)).toEqual(expectedKeys);
      for (const entry of manifest) {
        const body = files.get(entry.key.slice(PREFIX.length))!;
        expect(entry).toEqual({ key: entry.key, size: body.length, sha256: sha256(body) });
        const stored = await store.get(bucket, entry.key);
        expect(stored.length).toBe(body.length);
        expect(Buffer.compare(stored, body)).toBe(0);
      }
      expect((await objectsUnder(store, bucket, PREFIX)).map((info) => info.key).sort()).toEqual(expectedKeys);
    });

    it('leaves out the files skip names, by their relative path with "/" separators', async () => {
      const dir = path.join(base, 'skip');
      writeResultsFolder(dir);
      writeFileSync(path.join(dir, 'end.txt'), 'SUCCESS\n');
      const prefix = 'skip/process_results/';
      const manifest = await uploadFolder(store, bucket, prefix, dir, {
        skip: (relativePath) => relativePath === 'end.txt' || relativePath.startsWith('units/shank-1/'),
      });
      const keys = manifest.map((entry) => entry.key);
      expect(keys).not.toContain(`${prefix}end.txt`);
      expect(keys.some((key) => key.startsWith(`${prefix}units/shank-1/`))).toBe(false);
      expect(keys).toContain(`${prefix}units/shank-0/unit-000.json`);
      expect(keys).toContain(`${prefix}deep/a/b/c/d/leaf.csv`);
      expect((await objectsUnder(store, bucket, prefix)).map((info) => info.key).sort()).toEqual(keys);
    });

    it('keeps as many files in flight as asked, and no more', async () => {
      const dir = path.join(base, 'in-flight');
      writeResultsFolder(dir);
      const byDefault = countingUploads(store);
      await uploadFolder(byDefault.store, bucket, 'in-flight/default/', dir);
      expect(byDefault.mostInFlight()).toBe(8);
      const three = countingUploads(store);
      await uploadFolder(three.store, bucket, 'in-flight/three/', dir, { concurrency: 3 });
      expect(three.mostInFlight()).toBe(3);
    });

    it('rejects naming a file that vanished before it was read, after the other uploads have settled', async () => {
      const dir = path.join(base, 'vanished');
      writeResultsFolder(dir);
      const vanished = path.join(dir, 'units', 'shank-2', 'unit-005.json');
      const counting = countingUploads(store);
      const upload = uploadFolder(counting.store, bucket, 'vanished/', dir, {
        // The folder is listed before any upload starts; removing the file here makes its read fail.
        skip: (relativePath) => {
          if (relativePath === 'units/shank-2/unit-005.json') rmSync(vanished);
          return false;
        },
      });
      await expect(upload).rejects.toThrow(`could not upload ${vanished} to vanished/units/shank-2/unit-005.json in bucket ${bucket}`);
      expect(counting.inFlight()).toBe(0);
    });

    it(`rejects naming a file when the bucket cannot be written (${unusableBucket})`, async () => {
      const dir = path.join(base, 'unusable-bucket');
      writeResultsFolder(dir);
      const counting = countingUploads(store);
      const message = await uploadFolder(counting.store, unusableBucket, 'x/', dir).then(
        () => 'resolved',
        (error: Error) => error.message,
      );
      const named = new RegExp(`^could not upload (.+?) to x/(.+) in bucket ${unusableBucket}: `).exec(message);
      expect(named, message).not.toBeNull();
      expect(named![1]).toBe(path.join(dir, named![2]!));
      expect(counting.inFlight()).toBe(0);
    });
  });
}

// The file store makes a missing bucket's folder on write, so only a name it refuses fails there.
uploadFolderPromises('FileStore', 'not/a bucket', async () => {
  const root = scratchDir('upload-filestore');
  return { store: new FileStore(`file://${root}`, { home: root }), close: async () => removeDir(root) };
});

uploadFolderPromises('S3Store on s3rver', 'caas-no-such-bucket', async () => {
  const server = await startS3rver();
  const home = scratchDir('upload-s3-home');
  const store = new S3Store('s3://', { home, endpoint: server.endpoint });
  return {
    store,
    close: async () => {
      await store.close();
      await server.stop();
      removeDir(home);
    },
  };
});
