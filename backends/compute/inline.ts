import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { runAgent } from '../../wrapper/agent.ts';
import type { LaunchedJob, Launcher, LaunchRequest } from './index.ts';

/**
 * The agent inside the runner's own process; only the analysis gets a fresh process (and a fresh
 * temporary folder) per job. It saves the ~100 ms of CPU a Node process costs per job, for batches
 * of short jobs; the price is isolation: an agent fault ends the runner, and with it every job it
 * runs (their leases expire and the next run retries them).
 */
export class InlineLauncher implements Launcher {
  readonly name = 'inline';

  async launch(request: LaunchRequest): Promise<LaunchedJob> {
    const { spec } = request;
    const workDir = await mkdtemp(path.join(tmpdir(), 'caas-job-'));
    const stop = new AbortController();
    let cancelled: string | undefined;
    // If the runner dies, so does this agent: its watchdog then ends the analysis and removes the folder.
    const ended = runAgent(spec, workDir, { cancel: stop.signal, removeWorkDirOnDeath: true })
      .then(
        (exitCode) => (cancelled ? { exitCode, reason: cancelled } : { exitCode }),
        (error: Error) => ({ exitCode: 70, reason: `agent crashed: ${error.message}` }),
      )
      .finally(() => rm(workDir, { recursive: true, force: true }));
    return {
      instance: `inline:${process.pid}@${hostname()}`,
      ended,
      cancel: async (reason: string) => {
        cancelled = reason;
        stop.abort(reason);
      },
    };
  }

  async close(): Promise<void> {}
}
