import { z } from 'zod';
import { Blueprint } from './blueprint.ts';

const zodSchema = z.custom<z.ZodType>((v) => v instanceof z.ZodType, 'a zod schema');

/**
 * What an analysis folder declares in its index.ts. The command is an argv (never a shell line);
 * three placeholders are expanded by the agent, none of them user data: ${analysis_dir}, ${node}
 * (this Node binary) and ${tsx} (the TypeScript loader, for analyses written in TypeScript).
 */
export const AnalysisDefinition = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'lowercase letters, digits and "-"'),
    version: z.string().min(1),
    description: z.string().default(''),
    parameters: zodSchema.describe('zod model of the parameters: defaults applied, unknown keys rejected'),
    outputs: z
      .object({
        file: z.string().min(1).describe('file under process_results whose fields become output_parameters'),
        model: zodSchema,
      })
      .strict()
      .optional(),
    command: z.array(z.string().min(1)).min(1),
    blueprint: Blueprint,
  })
  .strict();
export type AnalysisDefinition = z.infer<typeof AnalysisDefinition>;

/** An analysis as loaded: its definition plus the folder its code lives in. */
export type Analysis = AnalysisDefinition & { dir: string };

export function defineAnalysis(definition: z.input<typeof AnalysisDefinition>): AnalysisDefinition {
  return AnalysisDefinition.parse(definition);
}
