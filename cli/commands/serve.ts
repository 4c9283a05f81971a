import path from 'node:path';
import type { Command } from 'commander';
import { describeLaunchers } from '../../backends/compute/index.ts';
import { defaultSettings } from '../../models/caas-settings.ts';
import { positiveInt, positiveNumber, settingsOf, statusIntervalMs, UsageError } from '../settings.ts';
import { formatTable } from '../table.ts';

/** A request body larger than this is refused with 413 unless --max-body-bytes says otherwise (8 MiB, one job's limit in caas run). */
const DEFAULT_MAX_BODY = 8 * 1024 * 1024;

function tokensFileOf(command: Command, given: string | undefined): string {
  return path.resolve(given ?? process.env.CAAS_TOKENS_FILE ?? path.join(settingsOf(command).home, 'tokens.json'));
}

export function registerServe(program: Command): void {
  const serve = program
    .command('serve')
    .description('Run the analysis service: a REST API (OpenAPI at /api/openapi.json) over the same queue, claims and records as caas run')
    .option('--port <n>', 'port to listen on (0: any free port)', (v) => positiveInt(v, '--port', 0), 8080)
    .option('--host <address>', 'address to listen on; anything but loopback needs tokens', '127.0.0.1')
    .option('--concurrency <n>', 'jobs this server runs at a time', (v) => positiveInt(v, '--concurrency'), 2)
    .option('--compute <name>', `where jobs run: ${describeLaunchers()}`, defaultSettings(process.env).compute)
    .option(
      '--lease-seconds <s>',
      'claim and queue lease: a job whose server stops renewing it is taken by another server after this long',
      (v) => positiveNumber(v, '--lease-seconds'),
      defaultSettings(process.env).leaseSeconds,
    )
    .option('--allow-dirty', 'run analyses with uncommitted changes (the diff hash enters the identity)', false)
    .option(
      '--user <name>',
      "with no tokens, who the jobs run for: checked against their group's users and kept with each attempt (env CAAS_USER); with tokens, each job runs for its token's name",
      defaultSettings(process.env).user,
    )
    .option(
      '--tokens <file>',
      'bearer tokens file, which must exist when named (env CAAS_TOKENS_FILE; default tokens.json in --home, may be absent); CAAS_TOKENS adds group:sha256 entries',
    )
    .option(
      '--max-body-bytes <n>',
      'larger request bodies are refused with 413',
      (v) => positiveInt(v, '--max-body-bytes'),
      DEFAULT_MAX_BODY,
    )
    .option(
      '--grace-seconds <s>',
      'on SIGTERM, how long running jobs may finish before they are handed back to the next server',
      (v) => positiveNumber(v, '--grace-seconds'),
      30,
    )
    .addHelpText(
      'after',
      `
Examples:
  $ caas serve                                   # http://127.0.0.1:8080, no tokens: this machine only
  $ caas serve token add --group lab-a           # prints a token once; its sha256 goes to the tokens file
  $ caas serve --host 0.0.0.0 --port 8080 --concurrency 4 --compute local
  $ curl -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' -d @job.json 'http://127.0.0.1:8080/api/jobs?execute=true'

Accepted jobs are written to the metadata DB before the answer (202): a restarted server, or another
one on the same DB, runs them. One JSON line per request goes to stderr. SIGTERM stops accepting and
lets running jobs finish for --grace-seconds, then hands them back. POST bodies must be sent as
application/json; without tokens, only requests addressed to 127.0.0.1/localhost are answered.
See docs/serve.md.`,
    )
    .action(async (options, command: Command) => {
      const settings = settingsOf(command);
      const file = tokensFileOf(command, options.tokens);
      const named = options.tokens !== undefined || process.env.CAAS_TOKENS_FILE !== undefined;
      // The server (hono and its OpenAPI layer) loads only for this command: every other command starts faster.
      const { TokenRing, readTokensFile, tokensFromEnv } = await import('../../server/tokens.ts');
      const { startService } = await import('../../server/listen.ts');
      const tokens = new TokenRing([...(await readTokensFile(file, { mustExist: named })), ...tokensFromEnv(process.env.CAAS_TOKENS)]);
      const service = await startService({
        ...settings,
        host: options.host,
        port: options.port,
        compute: options.compute,
        concurrency: options.concurrency,
        leaseMs: options.leaseSeconds * 1000,
        statusIntervalMs: statusIntervalMs(),
        allowDirty: options.allowDirty,
        user: options.user,
        tokens,
        maxBodyBytes: options.maxBodyBytes,
      });
      const access = tokens.empty
        ? `no tokens configured (${file}): listening on ${options.host} only, and whoever reaches it may do anything`
        : `${tokens.tokens.length} token${tokens.tokens.length === 1 ? '' : 's'} (${file}${process.env.CAAS_TOKENS ? ' and CAAS_TOKENS' : ''})`;
      process.stdout.write(`caas serve: listening on ${service.url} (${access}); API at ${service.url}/api/openapi.json\n`);
      await new Promise<void>((resolve) => {
        let stopping = false;
        const onSignal = (signal: NodeJS.Signals) => {
          if (stopping) process.exit(130);
          stopping = true;
          process.stderr.write(
            `caas serve: ${signal}: not accepting; running jobs have ${options.graceSeconds} s to finish (again to quit at once)\n`,
          );
          void service.stop(options.graceSeconds * 1000).then(({ finished, handedBack }) => {
            process.stderr.write(`caas serve: stopped (${finished} jobs finished, ${handedBack} handed back to the next server)\n`);
            resolve();
          });
        };
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
      });
      // Handed-back jobs may still hold timers and child processes: their leases decide who finishes them.
      process.exit(0);
    });

  const token = serve.command('token').description('Bearer tokens of the service: each maps to one group, or is an admin');
  token
    .command('add')
    .description('Make a token, print it once, and keep only its sha256 in the tokens file')
    .option('--group <name>', 'the group it submits into and sees')
    .option('--admin', 'a token that sees every group', false)
    .option('--name <label>', 'what to call it in lists and logs (default: the group, or admin)')
    .option('--tokens <file>', 'tokens file (env CAAS_TOKENS_FILE; default tokens.json in --home)')
    .action(async (options, command: Command) => {
      if (Boolean(options.group) === Boolean(options.admin))
        throw new UsageError('caas serve token add needs --group <name> or --admin (one of them)');
      const file = tokensFileOf(command, options.tokens);
      const group: string | null = options.admin ? null : options.group;
      const name: string = options.name ?? `${group ?? 'admin'}-${new Date().toISOString().slice(0, 10)}`;
      const { addToken, tokenHash } = await import('../../server/tokens.ts');
      const secret = await addToken(file, { name, group });
      process.stdout.write(`${secret}\n`);
      process.stderr.write(
        `token "${name}" for ${group === null ? 'admin (every group)' : `group ${group}`} added to ${file}; it is shown only now.\nFor CAAS_TOKENS instead of the file: ${group ?? '*'}:${tokenHash(secret)}\n`,
      );
    });
  token
    .command('list')
    .description('The tokens in the tokens file (names, groups, hash prefixes; never the tokens)')
    .option('--tokens <file>', 'tokens file (env CAAS_TOKENS_FILE; default tokens.json in --home)')
    .action(async (options, command: Command) => {
      const { readTokensFile } = await import('../../server/tokens.ts');
      const tokens = await readTokensFile(tokensFileOf(command, options.tokens));
      const rows = tokens.map((t) => [t.name, t.group ?? '(admin)', t.sha256.slice(0, 12), t.created]);
      process.stdout.write(`${formatTable(['NAME', 'GROUP', 'SHA256', 'CREATED'], rows)}\n`);
    });
  token
    .command('remove')
    .description('Remove a token by name: it stops working when the server restarts')
    .argument('<name>', 'the name token list shows')
    .option('--tokens <file>', 'tokens file (env CAAS_TOKENS_FILE; default tokens.json in --home)')
    .action(async (name: string, options, command: Command) => {
      const file = tokensFileOf(command, options.tokens);
      const { removeToken } = await import('../../server/tokens.ts');
      if (!(await removeToken(file, name))) throw new UsageError(`${file}: no token named "${name}" (caas serve token list shows them)`);
      process.stdout.write(`removed token "${name}"; restart the servers that read ${file}\n`);
    });
}
