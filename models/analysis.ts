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

/**
 * An analysis folder's analysis.json, for a NeuroCAAS-style script with no TypeScript around it:
 * the agent runs `bash <script>` in the analysis folder with the NeuroCAAS variables in its
 * environment (no value is ever put into a command line), as NeuroCAAS's run_main.sh runs the
 * script it is given. Its config is any JSON object (NeuroCAAS configs are free-form; YAML ones are
 * read as their JSON equivalent), validated only as that: the script reads what it needs.
 */
export const ScriptAnalysisDeclaration = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'lowercase letters, digits and "-"'),
    version: z.string().min(1),
    description: z.string().default(''),
    script: z.string().regex(FOLDER_PATH, 'a path inside the analysis folder, like run_analysis.sh').describe('the bash script to run'),
    blueprint: z
      .union([z.string().regex(FOLDER_PATH, 'a path inside the analysis folder, like blueprint.json'), Blueprint])
      .default('blueprint.json')
      .describe('the blueprint, or the file in the analysis folder that holds it'),
    outputs: z
      .object({ file: z.string().min(1).describe('file under process_results whose fields become output_parameters') })
      .strict()
      .optional(),
  })
  .strict();
export type ScriptAnalysisDeclaration = z.infer<typeof ScriptAnalysisDeclaration>;

/** The parameters of a script analysis: any JSON object, kept whole (it is the config the script reads). */
export const ScriptAnalysisParameters = z.record(z.string(), z.unknown()).describe('a NeuroCAAS config: any JSON object');
