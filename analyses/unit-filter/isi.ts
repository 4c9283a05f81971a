import { z } from 'zod';

/** The spike-train file unit-filter reads: spike times per unit, in seconds, ascending. */
export const SpikeTrains = z
  .object({
    session: z.string().min(1),
    units: z.array(
      z.object({
        unit_id: z.union([z.string().min(1), z.number()]),
        spike_times_s: z
          .array(z.number().finite())
          .refine((times) => times.every((t, i) => i === 0 || t >= times[i - 1]!), 'spike times must be sorted ascending'),
      }),
    ),
  })
  .superRefine((file, ctx) => {
    // Duplicate ids would make passing_units.csv ambiguous.
    const seen = new Set<string>();
    file.units.forEach((unit, i) => {
      const id = String(unit.unit_id);
      if (seen.has(id)) ctx.addIssue({ code: 'custom', message: `duplicate unit_id "${id}"`, path: ['units', i, 'unit_id'] });
      seen.add(id);
    });
  });
export type SpikeTrains = z.infer<typeof SpikeTrains>;

export const TOO_FEW_SPIKES = 'fewer than 2 spikes: no inter-spike interval, ratio set to 0';

/**
 * Fraction of inter-spike intervals shorter than the refractory period. A unit with fewer than two
 * spikes has no interval, and is given 0 rather than NaN so it can still be ranked.
 */
export function isiViolationRatio(spikeTimesS: readonly number[], refractoryMs: number): number {
  if (spikeTimesS.length < 2) return 0;
  const refractoryS = refractoryMs / 1000;
  let violations = 0;
  for (let i = 1; i < spikeTimesS.length; i++) {
    if (spikeTimesS[i]! - spikeTimesS[i - 1]! < refractoryS) violations++;
  }
  return violations / (spikeTimesS.length - 1);
}

export interface UnitResult {
  unit_id: string | number;
  n_spikes: number;
  isi_violation_ratio: number;
  passes: boolean;
  note?: string;
}

export interface FilterOptions {
  isi_violations_cutoff: number;
  refractory_ms: number;
}

/** Every unit with its ratio; a unit passes when its ratio is at most the cutoff. */
export function filterUnits(trains: SpikeTrains, options: FilterOptions): UnitResult[] {
  return trains.units.map((unit) => {
    const ratio = isiViolationRatio(unit.spike_times_s, options.refractory_ms);
    return {
      unit_id: unit.unit_id,
      n_spikes: unit.spike_times_s.length,
      isi_violation_ratio: ratio,
      passes: ratio <= options.isi_violations_cutoff,
      ...(unit.spike_times_s.length < 2 ? { note: TOO_FEW_SPIKES } : {}),
    };
  });
}
