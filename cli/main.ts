import { CommanderError } from 'commander';
import { condenseAwsSdkNodeNotice } from '../backends/aws-sdk-notice.ts';
import { CaasError } from '../models/caas-error.ts';
import { buildProgram } from './program.ts';

condenseAwsSdkNodeNotice((line) => process.stderr.write(`${line}\n`));

// `caas ... | head` closes the pipe early; that is not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw error;
});

try {
  await buildProgram().parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // commander has printed its own message (or the help, exit code 0).
    process.exitCode = error.exitCode === 0 ? 0 : 2;
  } else if (error instanceof CaasError) {
    process.stderr.write(`caas: ${error.message}\n`);
    process.exitCode = error.exitCode;
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
