import { fileURLToPath } from 'node:url';
import type { AgentProgram } from '../backends/compute/index.ts';

/**
 * caas's agent, as launchers receive it. The agent's code is loaded only when a job runs in this
 * process (inline): a runner that starts agents as processes never needs it here.
 */
export const AGENT_PROGRAM: AgentProgram = {
  entry: fileURLToPath(new URL('./agent-main.ts', import.meta.url)),
  run: async (spec, workDir, options) => (await import('./agent.ts')).runAgent(spec, workDir, options),
};
