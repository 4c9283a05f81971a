import { z } from 'zod';

/** unit-filter's parameters: the config JSON the agent stages is this model's output. */
export const UnitFilterParameters = z
  .object({
    isi_violations_cutoff: z.number().min(0).max(1).default(0.05).describe('a unit passes when its ISI-violation ratio is at most this'),
    refractory_ms: z.number().positive().default(1.5).describe('intervals shorter than this count as violations'),
    analysis_tag: z.string().default('default').describe('free label copied into summary.json'),
  })
  .strict();
export type UnitFilterParameters = z.infer<typeof UnitFilterParameters>;
