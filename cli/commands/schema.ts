import type { Command } from 'commander';
import { z } from 'zod';
import { listAnalysisNames, loadAnalysis } from '../../analyses/index.ts';
import { blueprintSchema } from '../../backends/compute/index.ts';
import { namedModels } from '../../models/index.ts';
import { UsageError } from '../settings.ts';

export function registerSchema(program: Command): void {
  program
    .command('schema')
    .description("Print the JSON Schema of a contract or of an analysis' parameters (zod 4, input mode)")
    .argument('[name]', `one of: ${Object.keys(namedModels).join(', ')}, or an analysis name`)
    .addHelpText(
      'after',
      `
Examples:
  $ caas schema job-input          # what caas run accepts
  $ caas schema unit-filter        # the parameters of the unit-filter analysis, for web forms
  $ caas schema                    # list what is available`,
    )
    .action(async (name: string | undefined) => {
      const analyses = listAnalysisNames();
      if (!name) {
        process.stdout.write(`models: ${Object.keys(namedModels).join(', ')}\nanalyses: ${analyses.join(', ')}\n`);
        return;
      }
      // The blueprint as the registered launchers complete it: the model alone lets any section through.
      const models: Record<string, z.ZodType> = { ...namedModels, blueprint: blueprintSchema() };
      const model = models[name] ?? (analyses.includes(name) ? ((await loadAnalysis(name)).parameters as z.ZodType) : undefined);
      if (!model)
        throw new UsageError(`unknown schema "${name}": expected one of ${[...Object.keys(namedModels), ...analyses].join(', ')}`);
      // unrepresentable: 'any' keeps custom zod types (the analysis model fields) from aborting the export.
      const schema = z.toJSONSchema(model, { io: 'input', unrepresentable: 'any' });
      // Titled by the name it is asked by, also when the model carries its own (a pydantic class name, say).
      process.stdout.write(`${JSON.stringify({ ...schema, title: name }, null, 2)}\n`);
    });
}
