import { link, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { blueprintIssues } from '../../backends/compute/index.ts';
import { parseJsonText } from '../../dispatcher/json-text.ts';
import { Blueprint } from '../../models/blueprint.ts';
import { CaasError } from '../../models/caas-error.ts';
import { describeIssues } from '../../models/issues.ts';
import { importNeuroCaasBlueprint } from '../../models/neurocaas-blueprint.ts';
import { sessionNamedUsers } from '../../wrapper/group-access.ts';

/** `caas blueprint import` could not turn the file into a caas blueprint, or not write it. */
export class BlueprintImportRefused extends CaasError {}

export function registerBlueprint(program: Command): void {
  const blueprint = program
    .command('blueprint')
    .description(
      "Check an analysis' deployment description (AMI, instance types, limits, each launcher's section), or import a NeuroCAAS one",
    )
    .addHelpText(
      'after',
      `
Examples:
  $ caas blueprint validate analyses/*/blueprint.json
  $ caas blueprint import ncap_blueprints/my-analysis/stack_config_template.json --out analyses/my-analysis/blueprint.json`,
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
        if (problems.length === 0)
          for (const warning of await blueprintWarnings(file)) process.stderr.write(`${file}: warning: ${warning}\n`);
        if (problems.length === 0) process.stdout.write(`${file}: ok\n`);
        for (const problem of problems) process.stderr.write(`${file}: ${problem}\n`);
        if (problems.length > 0) process.exitCode = 2;
      }
    });
  blueprint
    .command('import')
    .description(
      'Turn a NeuroCAAS blueprint (stack_config_template.json) into a caas blueprint, and say what each NeuroCAAS field became or why it has no meaning here',
    )
    .argument('<file>', 'a NeuroCAAS blueprint: ncap_blueprints/<pipeline>/stack_config_template.json')
    .option('--out <file>', 'write the caas blueprint to this file (default: standard output)')
    .option('--force', 'with --out: replace the file if it exists', false)
    .addHelpText(
      'after',
      `
The caas blueprint holds what came from NeuroCAAS (caas's defaults fill the rest) and passes
\`caas blueprint validate\`: PipelineName becomes the bucket, REGION the region, Lambda.LambdaConfig's
AMI, INSTANCE_TYPE and DEPLOY_LIMIT the fields of those names, IAM_ROLE the iam_instance_profile,
SSM_TIMEOUT (seconds) the max_runtime_minutes, UXData.Affiliates the groups (AffiliateName,
UserNames) and MAXCOST each group's budget. The notes, one per field, go to standard error.

Examples:
  $ caas blueprint import stack_config_template.json
  $ caas blueprint import stack_config_template.json --out analyses/my-analysis/blueprint.json
  $ caas blueprint import stack_config_template.json --out analyses/my-analysis/blueprint.json --force

Exit codes: 0 written, 2 the file cannot become a caas blueprint (each problem is printed as file: field: message) or --out exists.`,
    )
    .action(async (file: string, options: { out?: string; force: boolean }) => {
      const result = importNeuroCaasBlueprint(await readNeuroCaasBlueprint(file));
      if (!result.ok) {
        for (const problem of result.problems) process.stderr.write(`${file}: ${problem}\n`);
        process.exitCode = 2;
        return;
      }
      // The same check as `caas blueprint validate`: what is written is a blueprint caas accepts.
      const issues = blueprintIssues(result.blueprint).map((issue) => describeIssues(new z.ZodError([issue])));
      if (issues.length > 0) throw new Error(`the imported blueprint is not valid (a fault of caas): ${issues.join('; ')}`);
      const text = `${JSON.stringify(result.blueprint, null, 2)}\n`;
      if (options.out === undefined) process.stdout.write(text);
      else await writeNewFile(options.out, text, options.force);
      for (const { field, to, note } of result.notes) process.stderr.write(`${file}: ${field}${to ? ` → ${to}` : ''}: ${note}\n`);
      if (options.out !== undefined) process.stderr.write(`wrote ${options.out}\n`);
    });
}

async function readNeuroCaasBlueprint(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new BlueprintImportRefused(`${file}: cannot read the file: ${(error as Error).message}`);
  }
  try {
    // file:line:column: what is wrong, as caas dispatch names a broken JSON file.
    return parseJsonText(text, file);
  } catch (error) {
    throw new BlueprintImportRefused((error as Error).message);
  }
}

/**
 * Writes the whole text beside `file` first, then puts it in place in one step: a link, which fails
 * when the file exists (so a file made meanwhile is not overwritten either), or with `force` a
 * rename. Nothing half-written is ever at `file`.
 */
async function writeNewFile(file: string, text: string, force: boolean): Promise<void> {
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    await writeFile(temporary, text, { flag: 'wx' });
  } catch (error) {
    throw new BlueprintImportRefused(`--out ${file}: cannot write there: ${(error as Error).message}`);
  }
  try {
    if (force) await rename(temporary, file);
    else {
      await link(temporary, file).catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'EEXIST') throw new BlueprintImportRefused(`--out ${file} exists: pass --force to replace it`);
        throw new BlueprintImportRefused(`--out ${file}: cannot write there: ${error.message}`);
      });
    }
  } finally {
    await rm(temporary, { force: true });
  }
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

/** What a valid blueprint file says that may not mean what its author thinks (a role session named in `users`). */
export async function blueprintWarnings(file: string): Promise<string[]> {
  return sessionNamedUsers(Blueprint.parse(JSON.parse(await readFile(file, 'utf8'))));
}
