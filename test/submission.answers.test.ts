import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getText, type ObjectStore, openStore } from '../backends/storage/index.ts';
import { recordDraft } from '../fixtures/records.ts';
import { statusKey } from '../models/bucket-contract.ts';
import { StatusFile } from '../models/status.ts';
import { CertificateNotes, certificateLine, oneLine } from '../wrapper/certificate-notes.ts';
import type { PreparedJob } from '../wrapper/prepare.ts';
import { folderKeys, readSubmitObject, type SubmittedDataset } from '../wrapper/submission.ts';
import { type AnswerBucket, answerFromRecord, recordLink, watcherStatus } from '../wrapper/watcher-answers.ts';
import { removeDir, scratchDir } from './support/workspace.ts';

const BUCKET = 'mock-wait';
const AT = new Date('2024-05-01T12:00:00.000Z');
const dataset: SubmittedDataset = { dataname: 'inputs/d1.json', key: 'demo/inputs/d1.json', prepared: {} as PreparedJob };

describe('lines the watcher writes', () => {
  it('escape control characters, so a reason cannot forge a line of the certificate or of end.txt', () => {
    expect(oneLine('dataname "a\nSUCCESS": bad')).toBe('dataname "a\\nSUCCESS": bad');
    expect(oneLine('cr\r, tab\t, nul\u0000')).toBe('cr\\r, tab\\t, nul\\u0000');
    expect(oneLine('plain “unicode” stays')).toBe('plain “unicode” stays');
  });

  it('a certificate line is the time, "caas watcher:" and the line, ending in one newline', () => {
    expect(certificateLine('job failed: x\ny', AT)).toBe('2024-05-01T12:00:00.000Z caas watcher: job failed: x\\ny\n');
  });

  it('a watcher status file is a valid status file that names the dataset and no machine', () => {
    const status = watcherStatus(dataset, 'FAILED', 'no agent ran', AT);
    expect(StatusFile.parse(status)).toEqual(status);
    expect(status).toMatchObject({
      status: 'FAILED',
      reason: 'no agent ran',
      input: 'inputs/d1.json',
      instance: 'none: caas watcher',
      job_start: AT.toISOString(),
      job_finish: AT.toISOString(),
    });
  });

  it('a link names the record, where its results and logs are, and what produced them', () => {
    const record = recordDraft({ seed: 'link' });
    expect(recordLink(record)).toEqual({
      answered_from: record._id,
      results: null,
      logs: null,
      analysis: record.analysis,
      code: record.code,
      recorded: record.updated,
    });
  });
});

describe('answers the watcher writes into a job folder', () => {
  let base: string;
  let store: ObjectStore;
  let where: AnswerBucket;

  beforeAll(async () => {
    base = scratchDir('submission-answers');
    store = await openStore('file:', { home: path.join(base, 'home') });
    await store.createBucket(BUCKET);
    where = { store, bucket: BUCKET, notes: new CertificateNotes(store, BUCKET) };
  });
  afterAll(async () => {
    await store?.close();
    removeDir(base);
  });

  it('appends every line to one certificate when they come at once, after what was there', async () => {
    const folder = folderKeys(BUCKET, 'demo', 'notes');
    await store.put(BUCKET, folder.certificate, 'the agent was here\n');
    await Promise.all(Array.from({ length: 8 }, (_, i) => where.notes.append(folder, `line ${i}`)));
    const lines = (await getText(store, BUCKET, folder.certificate))!.split('\n').filter(Boolean);
    expect(lines[0]).toBe('the agent was here');
    expect(lines.slice(1).map((line) => line.replace(/^\S+ caas watcher: /, ''))).toEqual(Array.from({ length: 8 }, (_, i) => `line ${i}`));
  });

  it('an answer from a record links it, says SUCCESS in the status file and end.txt, and notes it', async () => {
    const folder = folderKeys(BUCKET, 'demo', 'answered');
    const results = 's3://mock-wait/demo/results/job__mock-wait_earlier/process_results/';
    const logs = 's3://mock-wait/demo/results/job__mock-wait_earlier/logs/';
    const record = {
      ...recordDraft({ seed: 'answered' }),
      job: { store: 's3', bucket: BUCKET, group: 'demo', timestamp: 'earlier', results, logs },
    };
    const result = await answerFromRecord(where, folder, dataset, record);
    expect(result).toEqual({ outcome: 'answered', reason: `identical data and config: answered from record ${record._id}`, results });
    expect(JSON.parse((await getText(store, BUCKET, folder.link))!)).toMatchObject({ answered_from: record._id, results, logs });
    const status = StatusFile.parse(JSON.parse((await getText(store, BUCKET, statusKey(folder.logs, dataset.key)))!));
    expect(status).toMatchObject({ status: 'SUCCESS', reason: `answered from record ${record._id}` });
    expect(await getText(store, BUCKET, folder.end)).toBe(`SUCCESS\nanswered from record ${record._id}\nresults at ${results}\n`);
    expect(await getText(store, BUCKET, folder.certificate)).toMatch(
      new RegExp(`caas watcher: identical data and config: answered from record ${record._id}, results at ${results}\\n$`),
    );
  });

  it('a submit file too large to read is not downloaded: named by its etag, refused as not JSON', async () => {
    const key = 'demo/submissions/big_submit.json';
    await store.put(BUCKET, key, `{"timestamp":"big","pad":"${'x'.repeat(70 * 1024)}"}`);
    const read = await readSubmitObject(store, BUCKET, key, 'demo');
    const info = await store.head(BUCKET, key);
    expect(read).toMatchObject({
      key,
      group: 'demo',
      sha256: `etag:${info!.etag}`,
      jsonError: 'larger than 65536 bytes',
      timestamp: 'big',
    });
    expect(read?.value).toBeUndefined();
    expect(await readSubmitObject(store, BUCKET, 'demo/submissions/gone_submit.json', 'demo')).toBeUndefined();
  });
});
