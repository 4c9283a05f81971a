import type { LaunchedJob, LaunchRequest } from './index.ts';

/**
 * The launches of one launcher, by (identity, attempt): asking again for an attempt whose machine
 * is still up returns that machine instead of starting a second one. Remote launchers add their
 * API's own guard (EC2's ClientToken, a Batch job named after the attempt) for repeats across
 * processes; this one covers repeats within a runner, including concurrent ones.
 */
export class LaunchesByAttempt {
  private readonly running = new Map<string, Promise<LaunchedJob>>();

  launch(request: LaunchRequest, start: () => Promise<LaunchedJob>): Promise<LaunchedJob> {
    const key = `${request.identity}:${request.attempt}`;
    const known = this.running.get(key);
    if (known) return known;
    const launching = start();
    this.running.set(key, launching);
    const forget = () => {
      if (this.running.get(key) === launching) this.running.delete(key);
    };
    // `ended` never rejects by contract; a launcher that breaks it must not take the runner down here.
    launching.then((job) => job.ended.then(forget, forget), forget);
    return launching;
  }
}

/** How long past its deadline a local agent may take to end its own job before it is stopped. */
export const DEADLINE_GRACE_MS = 5_000;

/**
 * Stops a machine of this host still up `graceMs` after the request's deadline. The agent ends its
 * own job at its max runtime (with end.txt saying so); this catches an agent that cannot.
 */
export function stopAtDeadline(job: LaunchedJob, request: LaunchRequest, graceMs: number): LaunchedJob {
  const timer = setTimeout(
    () => void job.cancel(`timeout: past max runtime of ${request.blueprint.max_runtime_minutes} min`),
    // setTimeout fires at once past about 24.8 days: a longer max runtime is left to the agent.
    Math.min(Math.max(0, request.deadline.getTime() - Date.now() + graceMs), 2 ** 31 - 1),
  );
  timer.unref();
  const clear = () => clearTimeout(timer);
  job.ended.then(clear, clear);
  return job;
}
