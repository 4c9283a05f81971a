import { describe, expect, it } from 'vitest';
import { devUserDataScript } from '../../backends/compute/dev-user-data.ts';
import { expiryTag, parseDuration } from '../../models/dev-instance.ts';
import { blueprintWithAmi } from '../../wrapper/dev-save.ts';

describe('caas dev: durations and expiry tags', () => {
  it.each([
    ['90s', 90_000],
    ['60m', 3_600_000],
    ['1.5h', 5_400_000],
    ['45', 2_700_000],
  ])('%s is %i ms (a plain number is minutes)', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['0m', '-5m', 'soon', '5 days', '', '1e3m'])('%j is no duration', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });

  it('an expiry tag is rounded up to the second: the instance never stops before the time asked for', () => {
    expect(expiryTag(new Date('2030-01-01T12:00:00.001Z'))).toBe('2030-01-01T12:00:01Z');
    expect(expiryTag(new Date('2030-01-01T12:00:00.000Z'))).toBe('2030-01-01T12:00:00Z');
  });
});

describe('caas dev save: the ami written into blueprint.json', () => {
  const compact = `{
  "bucket": "mock-wait",
  "ami": "ami-0123456789abcdef0",
  "allowed_instance_types": ["t3.micro", "c5.large"],
  "groups": [{ "name": "caas" }]
}
`;

  it('replaces the value in place, every other byte as it was', () => {
    expect(blueprintWithAmi(compact, 'ami-0fedcba987654321f')).toBe(compact.replace('ami-0123456789abcdef0', 'ami-0fedcba987654321f'));
  });

  it('adds the line after "bucket" in a blueprint that had none', () => {
    const without = compact.replace('  "ami": "ami-0123456789abcdef0",\n', '');
    expect(blueprintWithAmi(without, 'ami-0abc')).toBe(compact.replace('ami-0123456789abcdef0', 'ami-0abc'));
  });

  it('sets the top-level ami even when an "ami" key comes earlier in the text (rewritten with two spaces)', () => {
    const nested = '{"environment": {"set": {"ami": "ami-0111"}}, "bucket": "b", "ami": "ami-0222"}\n';
    const result = blueprintWithAmi(nested, 'ami-0333');
    expect(JSON.parse(result)).toEqual({ environment: { set: { ami: 'ami-0111' } }, bucket: 'b', ami: 'ami-0333' });
    expect(result).toBe(`${JSON.stringify({ environment: { set: { ami: 'ami-0111' } }, bucket: 'b', ami: 'ami-0333' }, null, 2)}\n`);
  });

  it('refuses a file that is not a JSON object, naming it', () => {
    expect(() => blueprintWithAmi('{"bucket": ', 'ami-0abc', 'a/blueprint.json')).toThrow(/^a\/blueprint\.json is not JSON/);
    expect(() => blueprintWithAmi('[1]', 'ami-0abc', 'a/blueprint.json')).toThrow('a/blueprint.json is not a JSON object');
  });
});

describe('caas dev: the UserData of a development instance', () => {
  const options = {
    analysis: 'mock-wait',
    owner: 'alice',
    expiry: '2030-01-01T12:00:00Z',
    storeUrl: "s3://?endpoint=http://it's.example.org",
    bucket: 'mock-wait',
    region: 'us-east-1',
    environment: { AWS_ENDPOINT_URL_S3: 'http://s3.example.org' },
  };

  it('quotes every value as one shell word inside the boot script, which ends where it should', () => {
    const script = devUserDataScript(options);
    expect(script).toContain(`export CAAS_DEV_STORE='s3://?endpoint=http://it'\\''s.example.org' CAAS_DEV_BUCKET='mock-wait'`);
    expect(script).toContain("launch_expiry='2030-01-01T12:00:00Z'");
    expect(script).toContain("export AWS_ENDPOINT_URL_S3='http://s3.example.org'");
    expect(script.split('\n').filter((line) => line === 'CAAS_DEV_BOOT')).toHaveLength(1);
  });

  it('refuses a value with a line break, which could end the heredoc early', () => {
    expect(() => devUserDataScript({ ...options, bucket: 'mock-wait\nCAAS_DEV_BOOT\nrm -rf /' })).toThrow(/control character/);
  });
});
