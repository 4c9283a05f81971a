import { Command } from 'commander';
import { CAAS_VERSION } from '../wrapper/caas-version.ts';
import { registerBlueprint } from './commands/blueprint.ts';
import { registerBudget } from './commands/budget.ts';
import { registerCatalog } from './commands/catalog.ts';
import { registerDev } from './commands/dev.ts';
import { registerDispatch } from './commands/dispatch.ts';
import { registerLogs } from './commands/logs.ts';
import { registerQuery } from './commands/query.ts';
import { registerReap } from './commands/reap.ts';
import { registerRun } from './commands/run.ts';
import { registerSchema } from './commands/schema.ts';
import { registerServe } from './commands/serve.ts';
import { registerShow } from './commands/show.ts';
import { registerSubmit } from './commands/submit.ts';
import { registerWatch } from './commands/watch.ts';
import { registerWhy } from './commands/why.ts';
import { addGlobalOptions } from './settings.ts';

/** The whole `caas` command line, its actions not yet run: main.ts parses argv with it, and the docs test checks every `caas …` line of the docs against it. */
export function buildProgram(): Command {
  const program = addGlobalOptions(new Command('caas'))
    .version(CAAS_VERSION)
    .description('cloud analysis as a service: run analyses over many datasets exactly once, and prove what produced every result')
    .showHelpAfterError('(add --help for usage)')
    .exitOverride()
    .addHelpText(
      'after',
      `
Examples:
  $ caas dispatch --query '{"subject.subject_id":"774659"}' --analysis unit-filter --file-ext .spikes.json > jobs.jsonl
  $ caas run jobs.jsonl             # dry run: the plan, nothing written
  $ caas run jobs.jsonl --execute   # run on the embedded defaults (.caas/: folder buckets, SQLite, child processes)
  $ caas query '{"status":"succeeded"}'

Exit codes: 0 all good, 1 some jobs failed, 2 invalid input, 3 jobs refused by their group's budget or instance limit.`,
    );

  registerDispatch(program);
  registerCatalog(program);
  registerRun(program);
  registerSchema(program);
  registerWatch(program);
  registerSubmit(program);
  registerLogs(program);
  registerBlueprint(program);
  registerReap(program);
  registerBudget(program);
  registerDev(program);
  registerQuery(program);
  registerShow(program);
  registerWhy(program);
  registerServe(program);
  return program;
}
