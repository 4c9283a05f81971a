import { defineAnalysis } from 'caas/analysis';
import { z } from 'zod';
import blueprint from './blueprint.json' with { type: 'json' };
import { MockWaitParameters } from './parameters.ts';

export default defineAnalysis({
  name: 'mock-wait',
  version: '1.0.0',
  description: 'Waits a few seconds and writes waited.json; can be told to fail. For tests and demos.',
  parameters: MockWaitParameters,
  outputs: { file: 'waited.json', model: z.object({ waited_s: z.number() }) },
  // biome-ignore lint/suspicious/noTemplateCurlyInString: agent placeholders, expanded by the agent, not by JavaScript
  command: ['bash', '${analysis_dir}/run.sh'],
  blueprint,
});
