import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import type { Analysis } from '../models/analysis.ts';
import { describeConfigProblem, isYamlName, parseYamlText } from '../models/config-text.ts';
import { untrustedJsonProblem } from '../models/untrusted-json.ts';
import { DispatchError } from './dispatch-error.ts';
import { parseJsonText } from './json-text.ts';

/** AIND's analysis_parameters.json: parameters every job gets, and the sets jobs are multiplied by. */
export const AnalysisParametersFile = z
  .object({
    fixed_parameters: z.record(z.string(), z.unknown()).default({}),
    distributed_parameters: z.array(z.record(z.string(), z.unknown())).default([]),
  })
  .strict();
export type AnalysisParametersFile = z.infer<typeof AnalysisParametersFile>;

/** The --params file, JSON or (named .yaml or .yml) YAML, checked as untrusted data and against its model. */
export async function readParametersFile(file: string): Promise<AnalysisParametersFile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new DispatchError(`--params ${file}: no such file`);
  }
  const data = isYamlName(file) ? yamlData(text, file) : parseJsonText(text, file);
  // What the job lines would carry into identities: nesting, __proto__ keys, lone surrogates.
  const problem = untrustedJsonProblem(data);
  if (problem !== undefined) throw new DispatchError(`${file}: ${problem}`);
  const parsed = AnalysisParametersFile.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new DispatchError(`${file}: ${issue.path.map(String).join('.') || '(root)'}: ${issue.message}`);
  }
  return parsed.data;
}

function yamlData(text: string, file: string): unknown {
  const parsed = parseYamlText(text);
  if (!parsed.ok) throw new DispatchError(describeConfigProblem(file, parsed));
  return parsed.value;
}

/**
 * The parameter sets jobs are multiplied by: fixed overridden by each distributed set (one set,
 * the fixed one, when there are none). Every set is checked against the analysis model first, so
 * a typo stops the dispatch before a single job exists; the sets stay as the user wrote them
 * (defaults are applied by the wrapper, which validates again).
 */
export function parameterSets(
  analysis: Analysis,
  file: AnalysisParametersFile | undefined,
  fileName = '--params',
): Record<string, unknown>[] {
  const fixed = file?.fixed_parameters ?? {};
  const distributed = file?.distributed_parameters ?? [];
  const sets =
    distributed.length === 0
      ? [{ where: 'fixed_parameters', own: {} }]
      : distributed.map((own, i) => ({ where: `distributed_parameters[${i}]`, own }));
  return sets.map(({ where, own }) => {
    const parameters = { ...fixed, ...own };
    const result = (analysis.parameters as z.ZodType).safeParse(parameters);
    if (!result.success) {
      const issue = result.error.issues[0]!;
      // A field the set did not give came from fixed_parameters (or is missing from both).
      const fields = issue.code === 'unrecognized_keys' ? issue.keys : issue.path.slice(0, 1).map(String);
      const owner = fields.some((field) => Object.hasOwn(own, field)) ? where : 'fixed_parameters';
      const path = [owner, ...issue.path.map(String)].join('.');
      const detail = file
        ? `(checked against the ${analysis.name} parameter model)`
        : '(pass --params <analysis_parameters.json> with fixed_parameters and distributed_parameters)';
      throw new DispatchError(`${file ? fileName : `--analysis ${analysis.name}`}: ${path}: ${issue.message} ${detail}`);
    }
    return parameters;
  });
}
