import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import type { AgentProgram, LaunchedJob, Launcher, LaunchRequest } from './index.ts';
import { JobProcesses } from './job-processes.ts';
import { DEADLINE_GRACE_MS, LaunchesByAttempt, stopAtDeadline } from './launch-once.ts';

/** A job's folder and watchdog, made ahead of the job so that neither is on its clock. */
interface Slot {
  workDir: string;
  processes: JobProcesses;
}

/**
 * The agent inside the runner's own process; only the analysis gets a fresh process (and a fresh
 * temporary folder) per job. It saves the ~100 ms of CPU a Node process costs per job, for batches
 * of short jobs; the price is isolation: an agent fault ends the runner, and with it every job it
 * runs (their leases expire and the next run retries them).
 */
export class InlineLauncher implements Launcher {
  readonly name = 'inline';
  readonly outlivesRunner = false;
  private spare: Promise<Slot> | undefined;
  private closing = false;

  private readonly launches = new LaunchesByAttempt();

  constructor(private readonly program: AgentProgram) {}

  launch(request: LaunchRequest): Promise<LaunchedJob> {
    return this.launches.launch(request, async () => stopAtDeadline(await this.start(request), request, DEADLINE_GRACE_MS));
  }

  private async start(request: LaunchRequest): Promise<LaunchedJob> {
    const { spec } = request;
    // Taken before any await, so concurrent launches never share one slot.
    const waiting = this.spare;
    this.spare = this.closing ? undefined : makeSlot();
    this.spare?.catch(() => {});
    const { workDir, processes } = (await waiting?.catch(() => undefined)) ?? (await makeSlot());
    const stop = new AbortController();
    let cancelled: string | undefined;
    const ended = this.program
      .run(spec, workDir, { cancel: stop.signal, processes })
      .then(
        (exitCode) => (cancelled ? { exitCode, reason: cancelled } : { exitCode }),
        (error: Error) => ({ exitCode: 70, reason: `agent crashed: ${error.message}` }),
      )
      .finally(() => rm(workDir, { recursive: true, force: true }).catch(() => {}));
    return {
      instance: `inline:${process.pid}@${hostname()}`,
      ended,
      cancel: async (reason: string) => {
        cancelled = reason;
        stop.abort(reason);
      },
    };
  }

  async close(): Promise<void> {
    this.closing = true;
    const spare = await this.spare?.catch(() => undefined);
    this.spare = undefined;
    if (spare) {
      spare.processes.close();
      await rm(spare.workDir, { recursive: true, force: true });
    }
  }
}

/** If the runner dies, so does its agent: the watchdog then ends the analysis and removes the folder. */
async function makeSlot(): Promise<Slot> {
  const workDir = await mkdtemp(path.join(tmpdir(), 'caas-job-'));
  return { workDir, processes: new JobProcesses({ workDir, removeWorkDirOnDeath: true }) };
}
