import { describe, expect, it } from 'vitest';
import { storeSettingsFromEnv } from '../../backends/storage/index.ts';
import { CaasError } from '../../models/caas-error.ts';
import { defaultSettings, statusIntervalOf } from '../../models/caas-settings.ts';

describe('the defaults every entry point shares (CLI flags, library options)', () => {
  it('come from the environment first, so a program and caas in one shell use the same DB and store', () => {
    expect(
      defaultSettings({
        CAAS_DB: 'mongodb://db/caas',
        CAAS_CATALOG: 'mongodb://docdb/metadata_index.data_assets',
        CAAS_STORE: 's3://',
        CAAS_HOME: '/w',
        CAAS_COMPUTE: 'ec2',
        CAAS_LEASE_SECONDS: '90',
        AWS_ENDPOINT_URL: 'http://s3',
      }),
    ).toEqual({
      home: '/w',
      storeUrl: 's3://',
      dbUrl: 'mongodb://db/caas',
      catalogUrl: 'mongodb://docdb/metadata_index.data_assets',
      compute: 'ec2',
      leaseSeconds: 90,
    });
  });

  it("a store kind's variables (AWS_ENDPOINT_URL) become that kind's settings", () => {
    expect(storeSettingsFromEnv({ AWS_ENDPOINT_URL: 'http://s3' })).toEqual({ s3: { endpoint: 'http://s3' } });
    expect(storeSettingsFromEnv({})).toEqual({});
  });

  it('are the embedded defaults otherwise', () => {
    expect(defaultSettings({})).toEqual({
      home: '.caas',
      storeUrl: 'file:',
      dbUrl: 'sqlite:',
      compute: 'local',
      leaseSeconds: 60,
    });
  });

  it('CAAS_STATUS_INTERVAL_MS is a whole number of milliseconds >= 100, or an error that exits 2', () => {
    expect(statusIntervalOf({})).toBeUndefined();
    expect(statusIntervalOf({ CAAS_STATUS_INTERVAL_MS: '500' })).toBe(500);
    expect(() => statusIntervalOf({ CAAS_STATUS_INTERVAL_MS: '5' })).toThrow(CaasError);
  });
});
