// Entry point of the agent process: `node --import tsx wrapper/agent-main.ts`, spec in CAAS_AGENT_SPEC
// (JSON) or in the file named by CAAS_AGENT_SPEC_FILE. Runs in the folder it is started in.
import { readFileSync } from 'node:fs';
import { AgentSpec } from '../models/agent-spec.ts';
import { describeIssues } from '../models/issues.ts';
import { runAgent } from './agent.ts';

const text =
  process.env.CAAS_AGENT_SPEC ?? (process.env.CAAS_AGENT_SPEC_FILE ? readFileSync(process.env.CAAS_AGENT_SPEC_FILE, 'utf8') : undefined);
if (!text) {
  console.error('caas agent: set CAAS_AGENT_SPEC (JSON) or CAAS_AGENT_SPEC_FILE');
  process.exit(2);
}
const spec = AgentSpec.safeParse(JSON.parse(text));
if (!spec.success) {
  console.error(`caas agent: invalid spec: ${describeIssues(spec.error)}`);
  process.exit(2);
}
// A runner shutting down (or Ctrl-C) stops the analysis too, and the job still ends with end.txt.
const cancel = new AbortController();
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => cancel.abort(`received ${signal}`));
try {
  process.exitCode = await runAgent(spec.data, process.cwd(), cancel.signal);
} catch (error) {
  console.error(`caas agent: ${(error as Error).stack ?? error}`);
  process.exitCode = 70;
}
