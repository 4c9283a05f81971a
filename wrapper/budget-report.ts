import { analysisRoots, listAnalysisNames, loadAnalysis } from '../analyses/index.ts';
import { openDatabase } from '../backends/db/index.ts';
import type { Analysis } from '../models/analysis.ts';
import { CaasError } from '../models/caas-error.ts';
import { type BudgetRow, budgetRefusal, budgetRows } from './group-budget.ts';
import type { Workspace } from './workspace.ts';

/** `caas budget --group` names a group no analysis lists: the user's input, exit 2. */
export class BudgetQueryError extends CaasError {}

export interface BudgetReport {
  rows: (BudgetRow & { budgetReached: boolean; limitReached: boolean })[];
  /** Analyses whose blueprint could not be read, with why: their groups are not in the rows. */
  unreadable: string[];
}

/**
 * Every group of every analysis (or of `analysis`, or only `group`) as the runners see it now:
 * spend in the current period, live slots, running jobs, cap and limit. Opens the DB read-only.
 */
export async function budgetReport(
  workspace: Workspace,
  options: { analysis?: string; group?: string; now?: Date; roots?: string[] } = {},
): Promise<BudgetReport> {
  const roots = options.roots ?? analysisRoots();
  const analyses: Analysis[] = [];
  const unreadable: string[] = [];
  if (options.analysis !== undefined) analyses.push(await loadAnalysis(options.analysis, roots));
  else {
    for (const name of listAnalysisNames(roots)) {
      try {
        analyses.push(await loadAnalysis(name, roots));
      } catch (error) {
        unreadable.push(`${name}: ${(error as Error).message}`);
      }
    }
  }
  if (options.group !== undefined && !analyses.some((a) => a.blueprint.groups.some((g) => g.name === options.group))) {
    const groups = [...new Set(analyses.flatMap((a) => a.blueprint.groups.map((g) => g.name)))].sort();
    throw new BudgetQueryError(`--group "${options.group}": no blueprint lists it; the groups are ${groups.join(', ') || '(none)'}`);
  }
  const db = await openDatabase(workspace.dbUrl, { home: workspace.home, readOnly: true });
  try {
    const rows = await budgetRows(db, analyses, { group: options.group, now: options.now });
    return {
      rows: rows.map((row) => ({
        ...row,
        budgetReached: budgetRefusal(row) !== undefined,
        limitReached: row.instanceLimit !== undefined && row.slots.length >= row.instanceLimit,
      })),
      unreadable,
    };
  } finally {
    await db.close();
  }
}
