import { describe, expect, it } from 'vitest';
import { isJobFolderTimestamp, jobFolder, MAX_TIMESTAMP_BYTES, parseJobRef, timestampProblem } from '../../models/bucket-contract.ts';
import { SubmitFile } from '../../models/submit.ts';
import { fallbackTimestamp, readSubmit } from '../../wrapper/submission.ts';

/** What a NeuroCAAS client writes: a clock time and a free-text condition name. */
const NEUROCAAS = '23:05:47.219155condition_0_2';

describe('a submitted timestamp is free text that cannot leave its job folder', () => {
  it.each([
    NEUROCAAS,
    'lab7-run1',
    '2024-01-31 23:59:59',
    'run (1), again!',
    '.starts-with-a-dot',
    'ends.',
    'a.b',
    'ümlaut-データ',
    'x'.repeat(MAX_TIMESTAMP_BYTES),
  ])('%j names job__{bucket}_{timestamp}/ as it is', (timestamp) => {
    expect(timestampProblem(timestamp)).toBeUndefined();
    expect(SubmitFile.safeParse({ dataname: 'd.json', configname: 'c.yaml', timestamp }).success).toBe(true);
    expect(jobFolder('mock-wait', 'demo', timestamp).results).toBe(`demo/results/job__mock-wait_${timestamp}/`);
  });

  it.each([
    { timestamp: '', says: /^empty: expected text that names the results folder/ },
    { timestamp: 'a/b', says: /^"\/" and "\\" are path separators that would put the answer outside its job folder/ },
    { timestamp: '/abs', says: /path separators/ },
    { timestamp: 'a\\b', says: /path separators/ },
    { timestamp: '..', says: /^"\.\." is not allowed/ },
    { timestamp: 'a..b', says: /^"\.\." is not allowed/ },
    { timestamp: 'a\u0000b', says: /^control characters \(NUL, newline, \.\.\.\) are not allowed/ },
    { timestamp: 'a\nSUCCESS', says: /^control characters/ },
    { timestamp: 'a\u007f', says: /^control characters/ },
    { timestamp: 'a\u0085', says: /^control characters/ },
    { timestamp: 'a\u2028b', says: /^control characters/ },
    { timestamp: 'T~1', says: /^"~" is reserved for the folders of a submission's datasets/ },
    { timestamp: 'a\ud800', says: /^a lone surrogate is not Unicode text/ },
    { timestamp: 'x'.repeat(MAX_TIMESTAMP_BYTES + 1), says: /^101 bytes long: expected at most 100 bytes \(UTF-8\)/ },
    { timestamp: 'é'.repeat(51), says: /^102 bytes long/ },
  ])('$timestamp is refused: $says', ({ timestamp, says }) => {
    expect(timestampProblem(timestamp)).toMatch(says);
    const parsed = SubmitFile.safeParse({ dataname: 'd.json', configname: 'c.json', timestamp });
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues[0]?.path).toEqual(['timestamp']);
    expect(parsed.error?.issues[0]?.message).toMatch(says);
  });

  it('a refused timestamp is answered in the folder named after the submit file, which is always usable', () => {
    const answeredIn = (key: string, timestamp: unknown) =>
      readSubmit(key, 'demo', Buffer.from(JSON.stringify({ dataname: 'd.json', configname: 'c.json', timestamp }))).timestamp;
    expect(answeredIn('demo/submissions/t9_submit.json', NEUROCAAS)).toBe(NEUROCAAS);
    expect(answeredIn('demo/submissions/t9_submit.json', 'a/b')).toBe('t9');
    expect(answeredIn('demo/submissions/t9_submit.json', '..')).toBe('t9');
    expect(answeredIn('demo/submissions/t9_submit.json', 'a\u0001')).toBe('t9');
    for (const key of ['demo/submissions/a..b_submit.json', 'demo/submissions/x~1_submit.json', 'demo/submissions/..._submit.json']) {
      expect(timestampProblem(fallbackTimestamp(key)), key).toBeUndefined();
    }
  });
});

describe('job references name folders with free-text timestamps', () => {
  it('reads bucket/group/timestamp and URLs with a NeuroCAAS timestamp, and its dataset folders', () => {
    const job = { bucket: 'mock-wait', group: 'demo', timestamp: NEUROCAAS };
    expect(parseJobRef(`mock-wait/demo/${NEUROCAAS}`)).toEqual(job);
    expect(parseJobRef(`s3://mock-wait/demo/results/job__mock-wait_${NEUROCAAS}/process_results/end.txt`)).toEqual(job);
    expect(parseJobRef(`file://mock-wait/demo/results/job__mock-wait_${NEUROCAAS}/`)).toEqual(job);
    expect(parseJobRef(`mock-wait/demo/${NEUROCAAS}~2`)).toEqual({ ...job, timestamp: `${NEUROCAAS}~2` });
    expect(parseJobRef('mock-wait/demo/run (1)')).toEqual({ ...job, timestamp: 'run (1)' });
  });

  it('names no job with a timestamp no folder can have', () => {
    for (const ref of ['mock-wait/demo/..', 'mock-wait/demo/a\u0000b', 'mock-wait/demo/T~x', 'mock-wait/demo/a/b', 'mock-wait/demo/']) {
      expect(parseJobRef(ref), JSON.stringify(ref)).toBeUndefined();
    }
    expect(parseJobRef('s3://mock-wait/demo/results/job__mock-wait_a..b/')).toBeUndefined();
    expect(isJobFolderTimestamp(`${NEUROCAAS}~12`)).toBe(true);
    expect(isJobFolderTimestamp('~1')).toBe(false);
  });
});
