import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { z } from 'zod';
import { blueprintIssues } from '../../backends/compute/index.ts';
import { describeIssues } from '../../models/issues.ts';

export function registerBlueprint(program: Command): void {
  const blueprint = program
    .command('blueprint')
    .description("Check an analysis' deployment description (AMI, instance types, limits, each launcher's section)")
    .addHelpText(
      'after',
      `
Examples:
  $ caas blueprint validate analyses/*/blueprint.json`,
    );
  blueprint
    .command('validate')
    .description('Validate blueprint.json files: every problem, with the file and the path of the bad field')
    .argument('<files...>', 'blueprint.json files (analyses/<name>/blueprint.json)')
    .addHelpText(
      'after',
      `
Examples:
  $ caas blueprint validate analyses/unit-filter/blueprint.json
  $ caas blueprint validate analyses/*/blueprint.json

Exit codes: 0 all valid, 2 some file is invalid (each problem is printed as file: field: message).`,
    )
    .action(async (files: string[]) => {
      for (const file of files) {
        const problems = await blueprintProblems(file);
        if (problems.length === 0) process.stdout.write(`${file}: ok\n`);
        for (const problem of problems) process.stderr.write(`${file}: ${problem}\n`);
        if (problems.length > 0) process.exitCode = 2;
      }
    });
}

/**
 * Every problem of one blueprint file, one per line, each led by the path of the bad field: the
 * same check as an analysis loaded to run gets, sections of the registered launchers included.
 */
export async function blueprintProblems(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    return [`cannot read the file: ${(error as Error).message}`];
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    return [`not JSON: ${(error as Error).message}`];
  }
  return blueprintIssues(data).map((issue) => describeIssues(new z.ZodError([issue])));
}
