import type { z } from 'zod';

/** One line per problem, each led by the dotted path of the bad field: `parameters.cutoff: expected number, received string`. */
export function describeIssues(error: z.ZodError, root?: string): string {
  return error.issues
    .map((issue) => {
      const pathText = [root, ...issue.path.map(String)].filter((p) => p !== undefined && p !== '').join('.');
      return `${pathText || '(root)'}: ${issue.message}`;
    })
    .join('; ');
}
