import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../backends/db/index.ts';
import { S3Store } from '../backends/storage/s3.ts';
import { type DispatchRequest, runDispatch } from '../dispatcher/dispatch.ts';
import { type S3rverHandle, startS3rver } from '../fixtures/s3rver.ts';
import type { JobInput } from '../models/job-input.ts';

const BUCKET = 'aind-open-data';
const OBJECTS: Record<string, string> = {
  'ecephys_1/nwb/session.nwb': 'session one',
  'ecephys_1/nwb/units.nwb': 'units one',
  'ecephys_1/README.md': 'readme',
  'ecephys_2/session.nwb': 'session two',
  'ecephys_3/README.md': 'no nwb here',
};

let s3: S3rverHandle;
let tmp: string;
let home: string;
let runs = 0;

const md5 = (text: string) => createHash('md5').update(text).digest('hex');

beforeAll(async () => {
  s3 = await startS3rver();
  tmp = await mkdtemp(path.join(tmpdir(), 'caas-dispatch-s3-'));
  home = path.join(tmp, 'home');
  const store = new S3Store('s3://', { home, endpoint: s3.endpoint });
  await store.createBucket(BUCKET);
  for (const [key, body] of Object.entries(OBJECTS)) await store.put(BUCKET, key, body);
  await store.close();
  const db = await openDatabase('sqlite:', { home });
  await db.importAssets(
    ['ecephys_1', 'ecephys_2', 'ecephys_3'].map((name) => ({
      _id: `id-${name}`,
      name,
      location: `s3://${BUCKET}/${name}`,
      subject: { subject_id: '1' },
    })),
  );
  await db.close();
});

afterAll(async () => {
  await s3?.stop();
  await rm(tmp, { recursive: true, force: true });
});

async function dispatch(request: Partial<DispatchRequest>) {
  const output = path.join(tmp, `jobs-${++runs}.jsonl`);
  const warnings: string[] = [];
  await runDispatch(
    {
      home,
      dbUrl: 'sqlite:',
      storeUrl: 'file:',
      storeSettings: { s3: { endpoint: s3.endpoint } },
      analysis: 'unit-filter',
      dispatchedAt: '2025-01-31T12:00:00Z',
      output,
      ...request,
    },
    { warn: (message) => warnings.push(message) },
  );
  const jobs = (await readFile(output, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as JobInput);
  return { jobs, warnings };
}

describe('dispatch over S3 (s3rver)', () => {
  it("lists catalog assets' files in S3 with --file-ext, recording S3's etag and size", async () => {
    const { jobs, warnings } = await dispatch({ query: '{"subject.subject_id":"1"}', fileExt: '.nwb' });
    expect(jobs.map((job) => job.inputs[0]?.files)).toEqual([
      [{ url: `s3://${BUCKET}/ecephys_1/nwb/session.nwb`, etag: md5('session one'), size: 11 }],
      [{ url: `s3://${BUCKET}/ecephys_1/nwb/units.nwb`, etag: md5('units one'), size: 9 }],
      [{ url: `s3://${BUCKET}/ecephys_2/session.nwb`, etag: md5('session two'), size: 11 }],
    ]);
    expect(warnings).toEqual([`asset id-ecephys_3 (ecephys_3): no files ending in .nwb under s3://${BUCKET}/ecephys_3`]);
  });

  it('lists a prefix directly with --s3-prefix, each folder an asset, without the catalog', async () => {
    const { jobs } = await dispatch({
      s3Prefix: `s3://${BUCKET}`,
      fileExt: '.nwb',
      splitFiles: false,
      dbUrl: 'mongodb://unused.invalid:1/x',
    });
    expect(jobs.map((job) => job.inputs)).toEqual([
      [
        {
          asset_id: 'ecephys_1',
          name: 'ecephys_1',
          location: `s3://${BUCKET}/ecephys_1/`,
          files: [
            { url: `s3://${BUCKET}/ecephys_1/nwb/session.nwb`, etag: md5('session one'), size: 11 },
            { url: `s3://${BUCKET}/ecephys_1/nwb/units.nwb`, etag: md5('units one'), size: 9 },
          ],
        },
      ],
      [
        {
          asset_id: 'ecephys_2',
          name: 'ecephys_2',
          location: `s3://${BUCKET}/ecephys_2/`,
          files: [{ url: `s3://${BUCKET}/ecephys_2/session.nwb`, etag: md5('session two'), size: 11 }],
        },
      ],
    ]);
    await expect(dispatch({ s3Prefix: 's3://no-such-bucket/x/' })).rejects.toThrow(
      /--s3-prefix s3:\/\/no-such-bucket\/x\/: bucket "no-such-bucket"/,
    );
  });
});
