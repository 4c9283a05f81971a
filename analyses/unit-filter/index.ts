import { defineAnalysis } from 'caas/analysis';
import { z } from 'zod';
import blueprint from './blueprint.json' with { type: 'json' };
import { UnitFilterParameters } from './parameters.ts';

export default defineAnalysis({
  name: 'unit-filter',
  version: '1.0.0',
  description: 'Keeps the sorted units whose inter-spike-interval violation ratio is at most a cutoff.',
  parameters: UnitFilterParameters,
  outputs: { file: 'summary.json', model: z.object({ n_units: z.number().int(), n_passing: z.number().int() }) },
  // biome-ignore lint/suspicious/noTemplateCurlyInString: agent placeholders, expanded by the agent, not by JavaScript
  command: ['${node}', '--import', '${tsx}', '${analysis_dir}/filter.ts'],
  blueprint,
});
