import { type Command, Option } from 'commander';
import { type DevInstances, openDevInstances } from '../../backends/compute/index.ts';
import { openStore } from '../../backends/storage/index.ts';
import { parseDuration } from '../../models/dev-instance.ts';
import {
  chooseDevInstance,
  type DevTarget,
  defaultDevOwner,
  describeDevInstance,
  extendDevInstance,
  launchDevInstance,
  lifetimeText,
  startDevInstance,
  stopDevInstance,
  terminateDevInstance,
} from '../../wrapper/dev-instances.ts';
import { saveDevInstance } from '../../wrapper/dev-save.ts';
import { runDevTest } from '../../wrapper/dev-test.ts';
import { loadRunnableAnalysis } from '../../wrapper/runnable-analysis.ts';
import { positiveNumber, settingsOf, statusIntervalMs, UsageError } from '../settings.ts';
import { formatTable } from '../table.ts';

const out = (line: string) => process.stdout.write(`${line}\n`);

/** An option holding a duration (90s, 60m, 2h) in ms, its default shown as written. */
function durationOption(flags: string, description: string, fallback: string): Option {
  const flag = flags.split(' ')[0]!;
  return new Option(flags, description)
    .argParser((value: string): number => {
      const ms = parseDuration(value);
      if (ms === undefined)
        throw new UsageError(`${flag} expects a duration like 90s, 60m or 2h (a plain number is minutes), got "${value}"`);
      return ms;
    })
    .default(parseDuration(fallback), fallback);
}

/** Every dev subcommand takes the analysis, an optional instance id (but launch), and --owner. */
function devCommand(parent: Command, name: string, description: string, extraArguments: [string, string][] = []): Command {
  const command = parent.command(name).description(description).argument('<analysis>', 'the analysis (its blueprint says the region)');
  for (const [argument, about] of extraArguments) command.argument(argument, about);
  if (name !== 'launch') command.argument('[instance-id]', 'default: the one development instance of the analysis and owner');
  return command.addOption(
    new Option('--owner <name>', 'whose development instances (the caas:owner tag)').default(defaultDevOwner(), 'your login name'),
  );
}

/** Opens what a dev command acts on: the analysis (its blueprint checked) and the development instances of its region. */
async function withTarget<T>(analysisName: string, owner: string, act: (target: DevTarget) => Promise<T>): Promise<T> {
  const analysis = await loadRunnableAnalysis(analysisName);
  let api: DevInstances | undefined;
  try {
    api = await openDevInstances(analysis.blueprint.region);
    return await act({ api, analysis, owner });
  } finally {
    api?.close();
  }
}

export function registerDev(program: Command): void {
  const dev = program
    .command('dev')
    .description(
      "Development instances (NeuroCAAS's NeuroCaaSAMI): launch one from the blueprint's image, test a submit file on it, save it as the blueprint's new image, terminate it",
    )
    .addHelpText(
      'after',
      `
Examples:
  $ caas dev launch mock-wait --store s3:// --key-name my-key     # stops itself after 60 min unless extended
  $ caas dev status mock-wait                                     # state, time left, address to ssh to
  $ caas dev test mock-wait submit.json --store s3://             # one job on it, under the bucket contract
  $ caas dev save mock-wait                                       # image it, write the ami into blueprint.json, commit
  $ caas dev terminate mock-wait

Exit codes: 0 done, 1 a test job failed or AWS could not be reached, 2 invalid input or refused (no ami,
no development instance, several and no id, an image that failed or timed out).`,
    );

  devCommand(dev, 'launch', "Launch a development instance from the blueprint's image (one per analysis and owner)")
    .addOption(durationOption('--lifetime <duration>', 'it stops itself after this long (90s, 60m, 2h), unless extended', '60m'))
    .option('--instance-type <type>', "default the blueprint's instance_type; one of its allowed_instance_types")
    .option('--ami <id>', "start from this image instead of the blueprint's ami (a base image for a new analysis)")
    .option('--key-name <name>', 'the EC2 key pair to ssh in with')
    .action(async (analysisName: string, options, command: Command) => {
      const settings = settingsOf(command);
      // The store is opened only for the environment its machines need (an endpoint, never credentials).
      const store = await openStore(settings.storeUrl, { home: settings.home, settings: settings.storeSettings });
      try {
        await withTarget(analysisName, options.owner, async (target) => {
          const { instance, launched } = await launchDevInstance(target, {
            lifetimeMs: options.lifetime,
            instanceType: options.instanceType,
            ami: options.ami,
            keyName: options.keyName,
            storeUrl: store.url,
            storeEnvironment: store.environment({}),
          });
          if (!launched) {
            out(`${analysisName} already has a development instance for ${options.owner}: ${describeDevInstance(instance)}`);
            if (instance.state === 'stopped') out(`start it with: caas dev start ${analysisName}`);
            return;
          }
          out(`launched ${describeDevInstance(instance)} from ${instance.image}`);
          out(`its address, once it runs: caas dev status ${analysisName}; more time: caas dev extend ${analysisName} --by 30m`);
        });
      } finally {
        await store.close();
      }
    });

  devCommand(dev, 'status', 'Show the development instances of an analysis: state, type, time left, address, last saved image')
    .option('--json', 'one JSON array (caas schema dev-instance)', false)
    .action(async (analysisName: string, instanceId: string | undefined, options) => {
      await withTarget(analysisName, options.owner, async (target) => {
        const found =
          instanceId === undefined ? await target.api.list(analysisName, options.owner) : [await chooseDevInstance(target, instanceId)];
        if (found.length === 0) await chooseDevInstance(target, undefined);
        if (options.json) {
          out(JSON.stringify(found, null, 2));
          return;
        }
        const now = new Date();
        out(
          formatTable(
            ['INSTANCE', 'STATE', 'TYPE', 'OWNER', 'STOPS', 'ADDRESS', 'SAVED IMAGE'],
            found.map((i) => [
              i.id,
              i.state,
              i.instance_type ?? '-',
              i.owner,
              lifetimeText(i, now),
              i.address ?? '-',
              i.saved_image ?? '-',
            ]),
          ),
        );
      });
    });

  devCommand(dev, 'extend', 'Move the time at which the instance stops itself')
    .addOption(durationOption('--by <duration>', 'past its current expiry, or past now when that is over (90s, 60m, 2h)', '60m'))
    .action(async (analysisName: string, instanceId: string | undefined, options) => {
      await withTarget(analysisName, options.owner, async (target) => {
        out(`extended ${describeDevInstance(await extendDevInstance(target, instanceId, options.by))}`);
      });
    });

  devCommand(dev, 'stop', 'Stop the instance (its disk stays; caas dev start starts it again)').action(
    async (analysisName: string, instanceId: string | undefined, options) => {
      await withTarget(analysisName, options.owner, async (target) => {
        const { instance, stopped } = await stopDevInstance(target, instanceId);
        out(stopped ? `stopping ${instance.id}` : `${instance.id} is already ${instance.state}`);
      });
    },
  );

  devCommand(dev, 'start', 'Start a stopped instance, with a fresh lifetime')
    .addOption(durationOption('--lifetime <duration>', 'it stops itself after this long (90s, 60m, 2h), unless extended', '60m'))
    .action(async (analysisName: string, instanceId: string | undefined, options) => {
      await withTarget(analysisName, options.owner, async (target) => {
        const { instance, started } = await startDevInstance(target, instanceId, options.lifetime);
        out(started ? `starting ${describeDevInstance(instance)}` : `${instance.id} is already ${instance.state}`);
      });
    });

  devCommand(dev, 'test', 'Run one job of a submit file on the instance, under the bucket contract, and follow it to its end', [
    ['<submit-file>', 'a NeuroCAAS submit file on this machine'],
  ])
    .option('--group <name>', "the submit file's group (default: the folder its dataname lies in)")
    .option('--interval <s>', 'seconds between looks at the job folder', (v) => positiveNumber(v, '--interval'), 2)
    .addOption(durationOption('--pickup-timeout <duration>', 'withdraw the job if the instance has not taken it by then', '2m'))
    .addHelpText(
      'after',
      `
The submit file is NeuroCAAS's: {"dataname": "{group}/inputs/…", "configname": "{group}/configs/…", "timestamp": "…"},
naming data and a config already in the analysis bucket. The job is not recorded in the metadata DB:
the instance runs the code on its disk, which no commit describes.
Exit codes: 0 succeeded, 1 failed (or the instance did not take it), 2 invalid submit file or refused.`,
    )
    .action(async (analysisName: string, submitFile: string, instanceId: string | undefined, options, command: Command) => {
      const settings = settingsOf(command);
      const store = await openStore(settings.storeUrl, { home: settings.home, settings: settings.storeSettings });
      try {
        await withTarget(analysisName, options.owner, async (target) => {
          const result = await runDevTest({
            target,
            instanceId,
            store,
            storeSettings: settings.storeSettings,
            submitFile,
            group: options.group,
            out,
            intervalMs: options.interval * 1000,
            pickupMs: options.pickupTimeout,
            statusIntervalMs: statusIntervalMs(),
          });
          process.exitCode = result.exitCode;
        });
      } finally {
        await store.close();
      }
    });

  devCommand(dev, 'save', "Image the instance, write the image into the analysis' blueprint.json and commit that file")
    .option('--image <id>', 'write this image instead of making one (one whose wait timed out)')
    .option('--name <name>', 'the image name (default caas-{analysis}-{UTC time})')
    .option('--message <text>', 'a line for the commit message')
    .addOption(
      durationOption('--timeout <duration>', 'give up waiting for the image after this long (the blueprint is then unchanged)', '60m'),
    )
    .option('--interval <s>', 'seconds between looks at the image', (v) => positiveNumber(v, '--interval'), 15)
    .action(async (analysisName: string, instanceId: string | undefined, options) => {
      if (instanceId !== undefined && options.image !== undefined)
        throw new UsageError('caas dev save takes an instance id or --image, not both');
      await withTarget(analysisName, options.owner, async (target) => {
        await saveDevInstance(target, {
          instanceId,
          image: options.image,
          name: options.name,
          message: options.message,
          timeoutMs: options.timeout,
          intervalMs: options.interval * 1000,
          out,
        });
      });
    });

  devCommand(dev, 'terminate', 'Terminate the instance and its disk (save it first to keep what is on it)').action(
    async (analysisName: string, instanceId: string | undefined, options) => {
      await withTarget(analysisName, options.owner, async (target) => {
        const instance = await terminateDevInstance(target, instanceId);
        out(`terminating ${instance.id}`);
        if (!instance.saved_image) out(`note: no image was saved of ${instance.id} (caas dev save): what was installed on it is gone`);
      });
    },
  );
}
