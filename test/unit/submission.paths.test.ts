import { describe, expect, it } from 'vitest';
import { parseJobRef } from '../../models/bucket-contract.ts';
import { confineKey, fallbackTimestamp, readSubmit, submitGroup } from '../../wrapper/submission.ts';

const where = { bucket: 'mock-wait', group: 'demo', area: 'inputs' } as const;

describe('confineKey: names from a submit file become keys inside the group', () => {
  it.each([
    ['x.json', 'demo/inputs/x.json'],
    ['inputs/x.json', 'demo/inputs/x.json'],
    ['demo/inputs/x.json', 'demo/inputs/x.json'],
    ['s3://mock-wait/demo/inputs/x.json', 'demo/inputs/x.json'],
    ['file://mock-wait/demo/inputs/x.json', 'demo/inputs/x.json'],
    ['inputs/sess/', 'demo/inputs/sess/'],
    ['inputs/a%20b.json', 'demo/inputs/a b.json'],
    ['inputs/inputs/x.json', 'demo/inputs/inputs/x.json'],
  ])('accepts %j as %j', (raw, key) => {
    expect(confineKey(raw, where)).toEqual({ ok: true, key });
  });

  it('confines configs to configs/', () => {
    expect(confineKey('ok.json', { ...where, area: 'configs' })).toEqual({ ok: true, key: 'demo/configs/ok.json' });
    expect(confineKey('inputs/x.json', { ...where, area: 'configs' })).toEqual({ ok: true, key: 'demo/configs/inputs/x.json' });
    expect(confineKey('demo/inputs/x.json', { ...where, area: 'configs' }).ok).toBe(false);
  });

  it('never normalises a suspicious name into an accepted one', () => {
    for (const raw of ['a..b.json', 'inputs/..', '%2e%2e', '%252e', 'inputs\\x', '/demo/inputs/x', 's3://mock-wait//demo/inputs/x']) {
      expect(confineKey(raw, where).ok, raw).toBe(false);
    }
  });
});

describe('submit keys and the folders their answers go to', () => {
  it('takes the group from the key and refuses names that cannot be groups', () => {
    expect(submitGroup('demo/submissions/t1_submit.json')).toBe('demo');
    expect(submitGroup('demo/submissions/submit.json')).toBe('demo');
    expect(submitGroup('../submissions/t1_submit.json')).toBeUndefined();
    expect(submitGroup('.hidden/submissions/t1_submit.json')).toBeUndefined();
    expect(submitGroup('demo/submissions/deeper/t1_submit.json')).toBeUndefined();
  });

  it('derives a usable timestamp from the file name when the file gives none', () => {
    expect(fallbackTimestamp('demo/submissions/t1_submit.json')).toBe('t1');
    expect(fallbackTimestamp('demo/submissions/submit.json')).toBe('submit');
    expect(fallbackTimestamp('demo/submissions/a b&c_submit.json')).toBe('a-b-c');
    expect(fallbackTimestamp('demo/submissions/..._submit.json')).toBe('submit');
  });

  it('uses the timestamp field when it is valid, else the file name', () => {
    const read = (body: string) => readSubmit('demo/submissions/t9_submit.json', 'demo', Buffer.from(body)).timestamp;
    expect(read('{"timestamp": "abc"}')).toBe('abc');
    expect(read('{"timestamp": "../x"}')).toBe('t9');
    expect(read('not json')).toBe('t9');
  });
});

describe('parseJobRef: how caas logs names a job', () => {
  it('reads bucket/group/timestamp and URLs inside a job folder', () => {
    expect(parseJobRef('mock-wait/demo/t1')).toEqual({ bucket: 'mock-wait', group: 'demo', timestamp: 't1' });
    expect(parseJobRef('mock-wait/demo/t1~2')).toEqual({ bucket: 'mock-wait', group: 'demo', timestamp: 't1~2' });
    expect(parseJobRef('s3://mock-wait/demo/results/job__mock-wait_t_1/process_results/')).toEqual({
      bucket: 'mock-wait',
      group: 'demo',
      timestamp: 't_1',
    });
    expect(parseJobRef('file://unit-filter/caas/results/job__unit-filter_x')).toEqual({
      bucket: 'unit-filter',
      group: 'caas',
      timestamp: 'x',
    });
    expect(parseJobRef('s3://mock-wait/demo/results/job__other_t1/')).toBeUndefined();
    expect(parseJobRef('mock-wait/../t1')).toBeUndefined();
  });
});
