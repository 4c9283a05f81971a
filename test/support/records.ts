import { claimedRecord } from '../../backends/db/index.ts';
import type { JobInputAsset } from '../../models/job-input.ts';
import { MetadataRecord, type Owner, type RecordStatus } from '../../models/record.ts';
import { buildPreImage, identityOf } from '../../wrapper/identity.ts';

export interface DraftOptions {
  /** Distinguishes drafts: it names the input asset, so every seed has its own identity. */
  seed?: string | number;
  analysis?: { name: string; version: string };
  parameters?: Record<string, unknown>;
  inputs?: JobInputAsset[];
  output?: string;
  created?: string;
}

/**
 * A valid record draft as the gate hands it to `claim`, with `_id` the real identity of its
 * pre-image. Parsed through the zod schema, so every test that uses it also proves it is valid.
 */
export function recordDraft(options: DraftOptions = {}): MetadataRecord {
  const seed = String(options.seed ?? 0);
  const analysis = options.analysis ?? { name: 'unit-filter', version: '1.0.0' };
  const code = { url: 'https://github.com/example/caas-analyses.git', commit: 'a'.repeat(40) };
  const parameters = options.parameters ?? { isi_violations_cutoff: 0.5 };
  const inputs = options.inputs ?? [
    { asset_id: `asset-${seed}`, name: `ecephys_${seed}_2024-01-01_00-00-00`, location: `s3://aind-open-data/ecephys_${seed}` },
  ];
  const output = options.output ?? 's3://caas-results/test';
  const preimage = buildPreImage({ analysis, code, parameters, inputs, output });
  const created = options.created ?? '2024-01-01T00:00:00.000Z';
  return MetadataRecord.parse({
    _id: identityOf(preimage),
    status: 'claimed',
    preimage,
    analysis,
    code,
    parameters: preimage.parameters,
    inputs,
    query: { source: 'generator' },
    job: null,
    outputs: null,
    compute: { backend: 'local', host: 'test-host', instance: null, type: null },
    exit_code: null,
    reason: null,
    stderr_tail: [],
    start: null,
    end: null,
    duration_s: null,
    attempts: [],
    lease: null,
    created,
    updated: created,
    caas_version: '0.1.0',
  });
}

export function owner(run: string, pid = 1000): Owner {
  return { host: 'test-host', pid, run };
}

/** What a runner's `finish` update does: closes the current attempt and the record with one outcome. */
export function concluded(
  status: Extract<RecordStatus, 'succeeded' | 'failed'>,
  outcome: { results?: string; reason?: string; exitCode?: number } = {},
): (record: MetadataRecord) => MetadataRecord {
  return (record) => {
    const ended = new Date().toISOString();
    const exitCode = outcome.exitCode ?? (status === 'succeeded' ? 0 : 1);
    const reason = outcome.reason ?? null;
    const results = outcome.results ?? null;
    const attempts = record.attempts.map((a, i) =>
      i === record.attempts.length - 1 ? { ...a, status, ended, reason, exit_code: exitCode, results } : a,
    );
    return MetadataRecord.parse({ ...record, status, attempts, exit_code: exitCode, reason, end: ended });
  };
}

/** A record as a runner leaves it after a finished attempt (lease dropped), made without any store. */
export function finishedRecord(
  options: DraftOptions & { status?: Extract<RecordStatus, 'succeeded' | 'failed'> } = {},
  who: Owner = owner('import'),
): MetadataRecord {
  const draft = recordDraft(options);
  const claimed = claimedRecord(undefined, { draft, owner: who, leaseMs: 60_000 }, new Date(draft.created));
  return MetadataRecord.parse({ ...concluded(options.status ?? 'succeeded')(claimed), lease: null });
}
