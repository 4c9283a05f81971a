import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';
import { describe, expect, it } from 'vitest';
import unitFilter from '../../analyses/unit-filter/index.ts';
import type { CodeVersion } from '../../models/identity.ts';
import type { JobInputAsset } from '../../models/job-input.ts';
import { buildPreImage, canonicalJson, identityOf, sha256Hex } from '../../wrapper/identity.ts';

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

describe('canonical JSON (RFC 8785)', () => {
  it('serialises numbers as RFC 8785 section 3.2.2.3 requires', () => {
    const cases: [number, string][] = [
      [0, '0'],
      [-0, '0'],
      [1e21, '1e+21'],
      [1e-7, '1e-7'],
      [333333333.3333333, '333333333.3333333'],
      [4.5, '4.5'],
      [0.002, '0.002'],
      [1e-27, '1e-27'],
      [9007199254740991, '9007199254740991'],
      [-1.5e-300, '-1.5e-300'],
    ];
    for (const [value, text] of cases) expect(canonicalJson([value])).toBe(`[${text}]`);
  });

  it('sorts keys by UTF-16 code units, integer-like keys included (the RFC 8785 section 3.2.3 example)', () => {
    const value = {
      '\u20ac': 'Euro Sign',
      '\r': 'Carriage Return',
      '\ufb33': 'Hebrew Letter Dalet With Dagesh',
      '1': 'One',
      '\ud83d\ude00': 'Emoji: Grinning Face',
      '\u0080': 'Control',
      '\u00f6': 'Latin Small Letter O With Diaeresis',
    };
    expect(canonicalJson(value)).toBe(
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    );
    expect(canonicalJson({ '10': 1, '9': 2, a: { '2': 0, '10': 1 } })).toBe('{"10":1,"9":2,"a":{"10":1,"2":0}}');
  });

  it('refuses what JSON cannot carry faithfully: NaN, Infinity, lone surrogates', () => {
    expect(() => canonicalJson({ a: Number.NaN })).toThrow(/NaN/);
    expect(() => canonicalJson([Number.POSITIVE_INFINITY])).toThrow(/Infinity/);
    expect(() => canonicalJson({ a: '\ud800' })).toThrow(/surrogate/);
    expect(() => canonicalJson({ '\udc00': 1 })).toThrow(/surrogate/);
  });

  it('gives the same bytes as the canonicalize reference implementation on 3,000 random values', () => {
    // A seeded generator, so a failure can be replayed.
    let state = 0x2545f491;
    const next = () => {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      return (state >>> 0) / 2 ** 32;
    };
    const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
    const keys = ['a', 'b', 'B', 'aa', '_', '0', '1', '10', '9', '01', '-1', 'é', 'ö', '€', '\ud83d\ude00', '\ufb33', '', ' ', 'z\u0000'];
    const strings = ['', 'x', 'line\nbreak', 'quote"back\\slash', 'tab\t', '\u0001\u001f', '\u2028\u2029', 'ünï€😀', '</script>'];
    const numbers = [0, -0, 1, -1, 0.1, 1e21, 1e-7, 123456789.125, -(2 ** 53), 2 ** 53 + 2, 5e-324, 1.7976931348623157e308];
    const value = (depth: number): unknown => {
      const r = next();
      if (depth > 3 || r < 0.35) return pick<unknown>([...strings, ...numbers, true, false, null]);
      if (r < 0.55) return Array.from({ length: Math.floor(next() * 4) }, () => value(depth + 1));
      const object: Record<string, unknown> = {};
      for (let i = Math.floor(next() * 6); i > 0; i--) object[pick(keys)] = next() < 0.05 ? undefined : value(depth + 1);
      return object;
    };
    for (let i = 0; i < 3000; i++) {
      const sample = value(0);
      expect(canonicalJson(sample)).toBe(canonicalize(sample));
    }
  });

  it('pre-images are built in canonical key order, and their identities are the reference hash', () => {
    const preimage = buildPreImage({
      analysis: { name: 'unit-filter', version: '1.0.0' },
      code: { ...code, dirty: 'd'.repeat(64) },
      parameters: { z: { b: 1, a: undefined, c: [{ y: 1, x: 2 }] }, a: 'first' },
      inputs: [
        ...inputs,
        { asset_id: 'asset-0', name: 'n', location: 'file://b/k/', files: [{ size: 2, url: 'file://b/k/f', etag: 'e' }] },
      ],
      output: 's3://b/g',
    });
    expect(JSON.stringify(preimage)).toBe(canonicalize(preimage));
    expect(identityOf(preimage)).toBe(createHash('sha256').update(canonicalize(preimage)!).digest('hex'));
    // Pinned (computed by the code before the fast path): an identity never changes between caas versions.
    expect(identityOf(preimage)).toBe('c9c165b7ae2bb9fac07b0935f1d60e1e8382e1705fab81fd33d06924006b94a4');
  });
});
