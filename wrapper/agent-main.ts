// Entry point of the agent process: `node --import tsx wrapper/agent-main.ts`, spec in CAAS_AGENT_SPEC
// (JSON) or in the file named by CAAS_AGENT_SPEC_FILE. Runs in the folder it is started in.
import { readFileSync } from 'node:fs';
import { AgentSpec } from '../models/agent-spec.ts';
import { runAgent } from './agent.ts';

const text =
  process.env.CAAS_AGENT_SPEC ?? (process.env.CAAS_AGENT_SPEC_FILE ? readFileSync(process.env.CAAS_AGENT_SPEC_FILE, 'utf8') : undefined);
if (!text) {
  console.error('caas agent: set CAAS_AGENT_SPEC (JSON) or CAAS_AGENT_SPEC_FILE');
  process.exit(2);
}
const spec = AgentSpec.parse(JSON.parse(text));
try {
  process.exitCode = await runAgent(spec, process.cwd());
} catch (error) {
  console.error(`caas agent: ${(error as Error).stack ?? error}`);
  process.exitCode = 70;
}
