import { existsSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { AnalysisError, analysisRoots, loadAnalysis } from '../analyses/index.ts';
import { blueprintIssues } from '../backends/compute/index.ts';
import type { Analysis } from '../models/analysis.ts';
import { describeIssues } from '../models/issues.ts';

/** A blueprint with a key no launcher owns, or a section its launcher's schema refuses: the user's input, exit 2. */
export class BlueprintError extends AnalysisError {}

const checked = new WeakMap<Analysis, string | undefined>();

/**
 * What is wrong with an analysis' blueprint that only the launchers can tell: the analysis model
 * lets every extra top-level key through (models sit below the backends that own the sections), so
 * this checks each one is a registered launcher's section and valid by that launcher's schema.
 * Undefined when the blueprint is fine.
 */
export function blueprintProblem(analysis: Analysis): string | undefined {
  if (checked.has(analysis)) return checked.get(analysis);
  const issues = blueprintIssues(analysis.blueprint);
  let problem: string | undefined;
  if (issues.length > 0) {
    const file = path.join(analysis.dir, 'blueprint.json');
    const where = existsSync(file) ? file : `the blueprint of ${path.join(analysis.dir, 'index.ts')}`;
    problem = `${where}: ${describeIssues(new z.ZodError(issues))}`;
  }
  checked.set(analysis, problem);
  return problem;
}

/**
 * loadAnalysis with its blueprint checked against the registered launchers: how every `caas run`,
 * plan, dispatch and watch loads an analysis, so a typo in a blueprint (`instnce_type`, a section
 * missing a field) is refused before any job is planned.
 */
export async function loadRunnableAnalysis(name: string, roots = analysisRoots()): Promise<Analysis> {
  const analysis = await loadAnalysis(name, roots);
  const problem = blueprintProblem(analysis);
  if (problem) throw new BlueprintError(problem);
  return analysis;
}
