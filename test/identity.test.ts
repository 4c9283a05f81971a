import { describe, expect, it } from 'vitest';
import unitFilter from '../analyses/unit-filter/index.ts';
import type { CodeVersion } from '../models/identity.ts';
import type { JobInputAsset } from '../models/job-input.ts';
import { buildPreImage, canonicalJson, identityOf, sha256Hex } from '../wrapper/identity.ts';

const code: CodeVersion = { url: 'https://example.org/lab/analyses.git', commit: 'a'.repeat(40) };
const inputs: JobInputAsset[] = [
  {
    asset_id: 'asset-1',
    name: 'ecephys_774659_2024-03-04_processed',
    location: 'file://sample-data/ecephys_774659_2024-03-04_processed/',
    files: [{ url: 'file://sample-data/ecephys_774659_2024-03-04_processed/spikes/units.spikes.json', etag: 'e1', size: 100 }],
  },
];

/** The identity of a job the way the wrapper computes it: parse with the analysis model, then hash. */
function identity(parameters: unknown, overrides: { code?: CodeVersion; inputs?: JobInputAsset[]; output?: string } = {}): string {
  const parsed = unitFilter.parameters.parse(parameters) as Record<string, unknown>;
  return identityOf(
    buildPreImage({
      analysis: { name: unitFilter.name, version: unitFilter.version },
      code: overrides.code ?? code,
      parameters: parsed,
      inputs: overrides.inputs ?? inputs,
      output: overrides.output ?? 'file://unit-filter/demo',
    }),
  );
}

describe('identity', () => {
  const base = identity({ isi_violations_cutoff: 0.1, analysis_tag: 'demo' });

  it('is a sha256 hex of the RFC 8785 canonical JSON of the pre-image', () => {
    const preimage = buildPreImage({
      analysis: { name: 'x', version: '1' },
      code,
      parameters: { b: 1, a: [2, 1] },
      inputs,
      output: 's3://b/g',
    });
    expect(identityOf(preimage)).toBe(sha256Hex(canonicalJson(preimage)));
    expect(canonicalJson({ b: 1, a: 2 })).toBe('{"a":2,"b":1}');
    expect(identityOf(preimage)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('does not change when parameter keys are reordered', () => {
    expect(identity({ analysis_tag: 'demo', isi_violations_cutoff: 0.1 })).toBe(base);
  });

  it('does not change when a default value is written explicitly', () => {
    expect(identity({ isi_violations_cutoff: 0.1, analysis_tag: 'demo', refractory_ms: 1.5 })).toBe(base);
  });

  it('does not change when inputs or their files are listed in another order', () => {
    const two: JobInputAsset[] = [
      ...inputs,
      { asset_id: 'asset-0', name: 'other', location: 'file://sample-data/other/', files: [{ url: 'file://x/b' }, { url: 'file://x/a' }] },
    ];
    const reordered: JobInputAsset[] = [{ ...two[1]!, files: [...two[1]!.files!].reverse() }, two[0]!];
    expect(identity({ isi_violations_cutoff: 0.1, analysis_tag: 'demo' }, { inputs: reordered })).toBe(
      identity({ isi_violations_cutoff: 0.1, analysis_tag: 'demo' }, { inputs: two }),
    );
  });

  it('changes when any parameter value changes', () => {
    expect(identity({ isi_violations_cutoff: 0.05, analysis_tag: 'demo' })).not.toBe(base);
    expect(identity({ isi_violations_cutoff: 0.1, analysis_tag: 'other' })).not.toBe(base);
    expect(identity({ isi_violations_cutoff: 0.1, analysis_tag: 'demo', refractory_ms: 2 })).not.toBe(base);
  });

  it('changes when the commit changes, or the code is dirty', () => {
    expect(identity({ isi_violations_cutoff: 0.1, analysis_tag: 'demo' }, { code: { ...code, commit: 'b'.repeat(40) } })).not.toBe(base);
    expect(identity({ isi_violations_cutoff: 0.1, analysis_tag: 'demo' }, { code: { ...code, dirty: 'c'.repeat(64) } })).not.toBe(base);
  });

  it("changes when an input changes (another asset, or a file's etag or size)", () => {
    const withEtag = [{ ...inputs[0]!, files: [{ ...inputs[0]!.files![0]!, etag: 'e2' }] }];
    const withSize = [{ ...inputs[0]!, files: [{ ...inputs[0]!.files![0]!, size: 101 }] }];
    const otherAsset = [{ ...inputs[0]!, asset_id: 'asset-2' }];
    for (const changed of [withEtag, withSize, otherAsset]) {
      expect(identity({ isi_violations_cutoff: 0.1, analysis_tag: 'demo' }, { inputs: changed })).not.toBe(base);
    }
  });

  it('changes when the output location changes', () => {
    expect(identity({ isi_violations_cutoff: 0.1, analysis_tag: 'demo' }, { output: 'file://unit-filter/other-group' })).not.toBe(base);
    expect(identity({ isi_violations_cutoff: 0.1, analysis_tag: 'demo' }, { output: 's3://unit-filter/demo' })).not.toBe(base);
  });

  it('rejects unknown parameter keys before anything is hashed', () => {
    expect(() => identity({ isi_violations_cutoff: 0.1, typo_cutoff: 1 })).toThrow(/typo_cutoff/);
  });
});
