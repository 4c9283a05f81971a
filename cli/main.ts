import { Command, CommanderError } from 'commander';
import { AnalysisError } from '../analyses/index.ts';
import { condenseAwsSdkNodeNotice } from '../backends/aws-sdk-notice.ts';
import { UnknownComputeError } from '../backends/compute/index.ts';
import { DatabaseUrlError } from '../backends/db/index.ts';
import { StoreUrlError } from '../backends/storage/index.ts';
import { DispatchError } from '../dispatcher/dispatch-error.ts';
import { InvalidFilterError } from '../models/filter.ts';
import { CAAS_VERSION } from '../wrapper/caas-version.ts';
import { CodeVersionError } from '../wrapper/code-version.ts';
import { registerBlueprint } from './commands/blueprint.ts';
import { registerCatalog } from './commands/catalog.ts';
import { registerDispatch } from './commands/dispatch.ts';
import { registerLogs } from './commands/logs.ts';
import { registerQuery } from './commands/query.ts';
import { registerReap } from './commands/reap.ts';
import { registerRun } from './commands/run.ts';
import { registerSchema } from './commands/schema.ts';
import { registerShow } from './commands/show.ts';
import { registerSubmit } from './commands/submit.ts';
import { registerWatch } from './commands/watch.ts';
import { registerWhy } from './commands/why.ts';
import { addGlobalOptions, UsageError } from './settings.ts';

condenseAwsSdkNodeNotice((line) => process.stderr.write(`${line}\n`));

// `caas ... | head` closes the pipe early; that is not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw error;
});

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

Exit codes: 0 all good, 1 some jobs failed, 2 invalid input.`,
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
registerQuery(program);
registerShow(program);
registerWhy(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    process.exitCode = error.exitCode === 0 ? 0 : 2;
  } else if (
    error instanceof UsageError ||
    error instanceof CodeVersionError ||
    error instanceof DispatchError ||
    error instanceof InvalidFilterError ||
    error instanceof AnalysisError ||
    error instanceof DatabaseUrlError ||
    error instanceof StoreUrlError ||
    error instanceof UnknownComputeError
  ) {
    process.stderr.write(`caas: ${error.message}\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`caas: ${(error as Error).message}\n`);
    if ((error as Error).name === 'CredentialsProviderError') {
      process.stderr.write(
        'caas: set AWS credentials (AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) or, for an S3-compatible server, --s3-endpoint with its keys\n',
      );
    }
    if (process.env.CAAS_DEBUG) process.stderr.write(`${(error as Error).stack}\n`);
    process.exitCode = process.exitCode || 1;
  }
}
