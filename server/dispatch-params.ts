import type { z } from 'zod';
import { loadAnalysis } from '../analyses/index.ts';
import type { DispatchBody, Issue } from '../models/service-api.ts';

/**
 * The parameter sets of a dispatch request checked against the analysis' model before dispatching,
 * each problem with its path in the request (`params.cutoff`, `params[1].cutoff`): a form shows it
 * beside its field, where the dispatcher's own message names a temporary file. Defaults apply; an
 * unknown analysis is left to the dispatcher to report.
 */
export async function dispatchParamsIssues(body: Pick<DispatchBody, 'analysis' | 'params'>): Promise<Issue[]> {
  if (body.params === undefined) return [];
  let model: z.ZodType;
  try {
    model = (await loadAnalysis(body.analysis)).parameters as z.ZodType;
  } catch {
    return [];
  }
  const sets = Array.isArray(body.params)
    ? body.params.map((set, i) => ({ at: ['params', i], set }))
    : [{ at: ['params'], set: body.params }];
  return sets.flatMap(({ at, set }) => {
    const result = model.safeParse(set);
    if (result.success) return [];
    return result.error.issues.flatMap((issue) => {
      // An unknown key is reported at the object; the form wants it at the key itself.
      const keys =
        issue.code === 'unrecognized_keys'
          ? issue.keys.map((key) => [key])
          : [issue.path.map((p) => (typeof p === 'number' ? p : String(p)))];
      return keys.map((rest) => ({ path: [...at, ...rest], message: issue.message }));
    });
  });
}

/** The issues as one message: `params.cutoff: Too big: expected number to be <=1`. */
export function describeParamsIssues(issues: readonly Issue[]): string {
  return issues
    .map(
      (issue) =>
        `${issue.path
          .map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`))
          .join('')
          .slice(1)}: ${issue.message}`,
    )
    .join('; ');
}
