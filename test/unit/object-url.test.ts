import { describe, expect, it } from 'vitest';
import { parseObjectUrl, settingOptionName, storeKinds, storeUrlWith } from '../../backends/storage/index.ts';

describe('object URLs', () => {
  it('are scheme://bucket/key for every registered kind; a key may hold "?" (S3 allows it)', () => {
    expect(parseObjectUrl('s3://b/grp/inputs/a?b.nwb')).toEqual({ scheme: 's3', bucket: 'b', key: 'grp/inputs/a?b.nwb' });
    expect(parseObjectUrl('file:///tmp/what?.txt')).toEqual({ scheme: 'file', bucket: '', key: '/tmp/what?.txt' });
    expect(() => parseObjectUrl('gs://b/k')).toThrow(/is not an object URL: expected .*s3:\/\/bucket\/key/);
    expect(() => parseObjectUrl('s3:///k')).toThrow(/names no bucket: expected s3:\/\/bucket\/key/);
  });

  it("a store URL carries its settings readably, and each setting's program option is its flag's name", () => {
    expect(storeUrlWith('s3://', { endpoint: 'http://127.0.0.1:9000/a b' })).toBe('s3://?endpoint=http://127.0.0.1:9000/a%20b');
    const settings = storeKinds().flatMap((kind) => kind.settings ?? []);
    expect(settings.map(settingOptionName)).toContain('s3Endpoint');
  });
});
