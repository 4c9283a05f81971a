// Entry point of the agent process: `node --import tsx wrapper/agent-main.ts`, spec in CAAS_AGENT_SPEC
// (JSON), in the file named by CAAS_AGENT_SPEC_FILE, or on standard input with CAAS_AGENT_SPEC_STDIN=1
// (a process started ahead of its job, waiting for it). Runs in the folder it is started in; with
// CAAS_AGENT_TEMPORARY_WORKDIR=1 that folder is the job's own and is removed when the agent ends,
// even when it is killed (by its watchdog) or when its runner has died long before.
import { readFileSync, rmSync } from 'node:fs';
import { condenseAwsSdkNodeNotice } from '../backends/aws-sdk-notice.ts';
import { JobProcesses } from '../backends/compute/job-processes.ts';
import type { AgentSpec } from '../models/agent-spec.ts';
import { runAgent } from './agent.ts';

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * The spec is checked against its schema here unless the local launcher, running this same build,
 * has just checked it: loading zod would then cost a job some 50 ms for nothing. An agent started
 * any other way (EC2 UserData, by hand) always checks.
 */
async function validated(raw: unknown): Promise<AgentSpec> {
  if (process.env.CAAS_AGENT_SPEC_VALIDATED === '1') return raw as AgentSpec;
  const [{ AgentSpec }, { describeIssues }] = await Promise.all([import('../models/agent-spec.ts'), import('../models/issues.ts')]);
  const spec = AgentSpec.safeParse(raw);
  if (!spec.success) {
    console.error(`caas agent: invalid spec: ${describeIssues(spec.error)}`);
    process.exit(2);
  }
  return spec.data;
}

// The runner that started this agent may die while the job runs (the next runner adopts the job):
// a closed stderr must not kill the agent.
process.stderr.on('error', () => {});
process.stdout.on('error', () => {});
// A dropped ssh session hangs up the runner's whole process group; the job goes on (as with nohup).
process.on('SIGHUP', () => {});
const temporaryWorkDir = process.env.CAAS_AGENT_TEMPORARY_WORKDIR === '1';
const workDir = process.cwd();
if (temporaryWorkDir) process.on('exit', () => rmSync(workDir, { recursive: true, force: true }));

// The runner that started this agent has told its user about the AWS SDK's Node notice.
condenseAwsSdkNodeNotice();

// A runner shutting down (or Ctrl-C) stops the analysis too, and the job still ends with end.txt.
const cancel = new AbortController();
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => cancel.abort(`received ${signal}`));

const fromStdin = process.env.CAAS_AGENT_SPEC_STDIN === '1';
// A process started ahead of its job starts the job's watchdog while it waits, off the job's clock.
const processes = new JobProcesses({ workDir, removeWorkDirOnDeath: temporaryWorkDir });
// While it waits, it also loads the file store (the embedded default), which the job would
// otherwise load on its own clock. Any other store still loads on first use.
if (fromStdin) void import('../backends/storage/fs.ts').catch(() => {});
const text =
  process.env.CAAS_AGENT_SPEC ??
  (process.env.CAAS_AGENT_SPEC_FILE ? readFileSync(process.env.CAAS_AGENT_SPEC_FILE, 'utf8') : fromStdin ? await readStdin() : undefined);
// A process started ahead of a job that never came (the runner finished): nothing to do.
if (fromStdin && (text === '' || cancel.signal.aborted)) {
  processes.close();
  process.exit(0);
}
if (!text) {
  processes.close();
  console.error('caas agent: set CAAS_AGENT_SPEC (JSON), CAAS_AGENT_SPEC_FILE or CAAS_AGENT_SPEC_STDIN=1');
  process.exit(2);
}
const spec = await validated(JSON.parse(text));
try {
  process.exitCode = await runAgent(spec, workDir, { cancel: cancel.signal, processes });
} catch (error) {
  console.error(`caas agent: ${(error as Error).stack ?? error}`);
  process.exitCode = 70;
}
