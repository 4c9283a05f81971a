import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { durableDbUrl, handleS3Event, type S3EventLike } from '../wrapper/s3-event-handler.ts';
import type { SubmissionOutcome, SubmissionWatcher } from '../wrapper/watch.ts';

describe('the metadata DB the S3 event handler accepts', () => {
  it('is any named database but a SQLite file a function runtime throws away', () => {
    expect(durableDbUrl('mongodb://db.example.org/caas')).toBe('mongodb://db.example.org/caas');
    expect(durableDbUrl('sqlite:///mnt/efs/caas.sqlite')).toBe('sqlite:///mnt/efs/caas.sqlite');
    expect(() => durableDbUrl(undefined)).toThrow(/^CAAS_DB is not set: .* set CAAS_DB to mongodb:\/\/user:pass@host\/caas/);
    expect(() => durableDbUrl('sqlite://')).toThrow(
      /^CAAS_DB=sqlite:\/\/ names no file \(it would be under CAAS_HOME, \/tmp\/caas by default\)/,
    );
    expect(() => durableDbUrl('sqlite:/tmp/records.sqlite')).toThrow(
      /\/tmp\/records.sqlite is under \/tmp, which a function runtime discards/,
    );
    expect(() => durableDbUrl(`sqlite:${path.join(tmpdir(), 'x', 'records.sqlite')}`)).toThrow(/which a function runtime discards/);
  });

  it('judges a relative SQLite path by where it resolves', () => {
    const inside = path.relative(process.cwd(), path.join('/tmp', 'caas', 'records.sqlite'));
    expect(() => durableDbUrl(`sqlite:${inside}`)).toThrow(/is under \/tmp/);
    // Relative to wherever the tests run (a checkout may itself be under /tmp): a path that resolves outside it.
    const outside = path.relative(process.cwd(), '/var/lib/caas/records.sqlite');
    expect(durableDbUrl(`sqlite:${outside}`)).toBe(`sqlite:${outside}`);
  });
});

describe('S3 events', () => {
  /** A watcher of `bucket` that answers every key it is given and remembers them. */
  const watcherOf = (bucket: string) => {
    const processed: string[] = [];
    const watcher = {
      bucket,
      process: async (key: string): Promise<SubmissionOutcome> => {
        processed.push(key);
        return { key, outcome: 'done', reason: 'test' };
      },
    };
    return { watcher: watcher as unknown as SubmissionWatcher, processed };
  };
  const record = (eventName: string, bucket: string, key: string) => ({ eventName, s3: { bucket: { name: bucket }, object: { key } } });

  it('are answered for created submit files of the watched bucket, with keys decoded as S3 sends them', async () => {
    const { watcher, processed } = watcherOf('mock-wait');
    const event: S3EventLike = {
      Records: [
        record('ObjectCreated:Put', 'mock-wait', 'demo/submissions/my+run%281%29_submit.json'),
        record('ObjectCreated:CompleteMultipartUpload', 'mock-wait', 'demo/submissions/submit.json'),
        record('ObjectRemoved:Delete', 'mock-wait', 'demo/submissions/gone_submit.json'),
        record('ObjectCreated:Put', 'other-bucket', 'demo/submissions/theirs_submit.json'),
        record('ObjectCreated:Put', 'mock-wait', 'demo/inputs/d1.json'),
        record('ObjectCreated:Put', 'mock-wait', 'demo/submissions/bad%E0%A4%A_submit.json'),
      ],
    };
    const outcomes = await handleS3Event(event, watcher);
    expect(processed).toEqual(['demo/submissions/my run(1)_submit.json', 'demo/submissions/submit.json']);
    expect(outcomes.map((o) => o.key)).toEqual(processed);
  });

  it('without records answer nothing', async () => {
    const { watcher, processed } = watcherOf('mock-wait');
    expect(await handleS3Event({}, watcher)).toEqual([]);
    expect(processed).toEqual([]);
  });
});
