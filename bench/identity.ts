/**
 * Identity throughput: caas's identity (RFC 8785 canonical JSON + sha256) beside object-hash
 * (sha256) on the same ~1 KB pre-images, rounds interleaved so both see the same machine.
 */
import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';
import objectHash from 'object-hash';
import type { PreImage } from '../models/identity.ts';
import type { JobInputAsset } from '../models/job-input.ts';
import { buildPreImage, identityOf, type PreImageParts } from '../wrapper/identity.ts';
import { type BenchOptions, type BenchReport, check, formatNumber, median } from './report.ts';

/** A job as dispatch makes it for a sorted session: three files, a handful of parameters. */
export function jobParts(i: number): PreImageParts {
  const session = `ecephys_${600000 + (i % 5000)}_2025-01-${String(1 + (i % 28)).padStart(2, '0')}_12-00-00_sorted_${i}`;
  const files = ['units.spikes.json', 'probe-a.spikes.json', 'probe-b.spikes.json'].map((name, k) => ({
    url: `s3://aind-open-data/${session}/spikes/${name}`,
    etag: createHash('md5').update(`${i}/${k}`).digest('hex'),
    size: 100_000 + ((i * 7919 + k) % 900_000),
  }));
  const input: JobInputAsset = {
    asset_id: `asset-${String(i).padStart(7, '0')}`,
    name: session,
    location: `s3://aind-open-data/${session}/`,
    files,
  };
  return {
    analysis: { name: 'unit-filter', version: '1.0.0' },
    code: { url: 'https://github.com/AllenNeuralDynamics/caas-analyses.git', commit: createHash('sha1').update('commit').digest('hex') },
    parameters: { isi_violations_cutoff: 0.05 + (i % 3) / 20, amplitude_cutoff: 0.1, presence_ratio: 0.9, analysis_tag: 'bench' },
    inputs: [input],
    output: 's3://caas-unit-filter/caas/',
  };
}

/** Calls per second of fn over all items, one pass. */
function rate<T>(items: readonly T[], fn: (item: T) => unknown): number {
  const started = performance.now();
  for (const item of items) fn(item);
  return items.length / ((performance.now() - started) / 1000);
}

export async function benchIdentity(options: BenchOptions): Promise<BenchReport> {
  const count = options.quick ? 5_000 : 20_000;
  const rounds = options.quick ? 3 : 5;
  const parts = Array.from({ length: count }, (_, i) => jobParts(i));
  const preimages: PreImage[] = parts.map(buildPreImage);
  const bytes = median(preimages.slice(0, 100).map((p) => JSON.stringify(p).length));

  const ours: number[] = [];
  const full: number[] = [];
  const reference: number[] = [];
  const baseline: number[] = [];
  // One untimed pass each first, so the JIT has compiled every path before it is measured.
  for (let round = -1; round < rounds; round++) {
    const samples = [
      rate(preimages, identityOf),
      rate(parts, (p) => identityOf(buildPreImage(p))),
      rate(preimages, (p) => createHash('sha256').update(canonicalize(p)!).digest('hex')),
      rate(preimages, (p) => objectHash(p, { algorithm: 'sha256' })),
    ];
    if (round < 0) continue;
    ours.push(samples[0]!);
    full.push(samples[1]!);
    reference.push(samples[2]!);
    baseline.push(samples[3]!);
  }
  const [oursRate, fullRate, referenceRate, baselineRate] = [ours, full, reference, baseline].map(median) as [
    number,
    number,
    number,
    number,
  ];
  const ratio = oursRate / baselineRate;
  const detail = `median of ${rounds} passes over ${formatNumber(count)} pre-images of ~${formatNumber(bytes)} bytes`;
  return {
    name: 'identity',
    title: `identity: ${formatNumber(count)} pre-images of ~${formatNumber(bytes / 1000)} KB`,
    measurements: [
      { subject: 'caas identityOf (RFC 8785 + sha256)', value: oursRate, unit: 'identities/s', detail },
      {
        subject: 'caas buildPreImage + identityOf (from a job)',
        value: fullRate,
        unit: 'identities/s',
        detail: 'sorts inputs, copies parameters',
      },
      {
        subject: 'canonicalize package + sha256 (reference)',
        value: referenceRate,
        unit: 'identities/s',
        detail: 'the general RFC 8785 algorithm',
      },
      { subject: 'object-hash sha256 (baseline)', value: baselineRate, unit: 'identities/s', detail },
    ],
    targets: [
      check('identityOf >= 100,000 identities/s', `${formatNumber(oursRate)}/s`, oursRate >= 100_000),
      check('identityOf >= 5x object-hash', `${formatNumber(ratio)}x`, ratio >= 5),
    ],
  };
}
