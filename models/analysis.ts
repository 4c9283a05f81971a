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

/**
 * An analysis as loaded: its definition plus the folder its code lives in, and for an analysis.json
 * script the script's path (such a script reads its data from the analysis bucket by `$inputpath`).
 */
export type Analysis = AnalysisDefinition & { dir: string; script?: string };

export function defineAnalysis(definition: z.input<typeof AnalysisDefinition>): AnalysisDefinition {
  return AnalysisDefinition.parse(definition);
}

/** A path inside the analysis folder, written with "/": no absolute path, no "..", nothing hidden. */
const FOLDER_PATH = /^(?!\/)(?!.*(?:^|\/)\.\.?(?:\/|$))[A-Za-z0-9._/-]+$/;
const folderPath = (example: string) => z.string().regex(FOLDER_PATH, `a path inside the analysis folder, like ${example}`);
/** A JSON Schema written out, or the .json file in the analysis folder that holds it. */
const jsonSchemaOrFile = (example: string) =>
  z
    .union([folderPath(example), z.record(z.string(), z.unknown())])
    .describe(`a JSON Schema, or the file in the analysis folder that holds it (${example})`);

/**
 * An analysis folder's analysis.json: an analysis with no TypeScript around it. Either a
 * NeuroCAAS-style `script`, run as `bash <script>` with the NeuroCAAS variables in its environment
 * (no value is ever put into a command line), as NeuroCAAS's run_main.sh runs the script it is
 * given; or a `command` (an argv, with the placeholders of index.ts analyses), for an analysis in
 * any language. The parameter and output models are JSON Schemas (e.g. a pydantic model's
 * model_json_schema()), turned into zod models so validation, defaults and identity work as for a
 * zod analysis. Without a parameter model the config is any JSON object, as NeuroCAAS configs are.
 */
export const AnalysisDeclaration = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'lowercase letters, digits and "-"'),
    version: z.string().min(1),
    description: z.string().default(''),
    script: folderPath('run_analysis.sh').optional().describe('a bash script to run (NeuroCAAS style)'),
    command: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the agent's placeholder, shown as a user writes it
      .describe('the argv to run, e.g. ["python3", "${analysis_dir}/main.py"]'),
    parameters: jsonSchemaOrFile('parameters.schema.json').optional(),
    outputs: z
      .object({
        file: z.string().min(1).describe('file under process_results whose fields become output_parameters'),
        model: jsonSchemaOrFile('outputs.schema.json').optional(),
      })
      .strict()
      .optional(),
    blueprint: z
      .union([folderPath('blueprint.json'), Blueprint])
      .default('blueprint.json')
      .describe('the blueprint, or the file in the analysis folder that holds it'),
  })
  .strict()
  .refine((d) => (d.script === undefined) !== (d.command === undefined), {
    message: 'give either "script" (a bash script) or "command" (an argv), not both',
    path: ['command'],
  });
export type AnalysisDeclaration = z.infer<typeof AnalysisDeclaration>;

/** The parameters of an analysis.json with no parameter model: any JSON object, kept whole (the config the script reads). */
export const FreeFormParameters = z.record(z.string(), z.unknown()).describe('a NeuroCAAS-style config: any JSON object');
