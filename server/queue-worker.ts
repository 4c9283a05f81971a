import { setTimeout as sleep } from 'node:timers/promises';
import type { QueuedJob, QueueSettlement } from '../models/queued-job.ts';
import type { JobResult } from '../wrapper/execute.ts';
import { JobRunner, type RunnerSettings } from '../wrapper/run.ts';
import type { Service } from './service.ts';

export interface WorkerSettings extends RunnerSettings {
  concurrency: number;
  /** How often an idle worker looks at the queue. */
  pollMs: number;
}

/** Outcomes after which the job is answered; the others put it back to be looked at again. */
const ANSWERED: ReadonlySet<JobResult['outcome']> = new Set(['succeeded', 'failed', 'skipped', 'failed-elsewhere', 'refused']);

/** One job this server holds: its queue entry and the means to stop its attempt. */
interface Held {
  entry: QueuedJob;
  stop: AbortController;
  done: Promise<void>;
}

/**
 * The service's runner: takes jobs from the queue in the metadata DB, `concurrency` at a time, and
 * runs each through JobRunner.execute, the same claim, launch, verify and record as `caas run`.
 * The queue entry is held under a lease the worker renews; if this server dies, the lease lapses
 * and any server takes the job again, whose claim then adopts or retries the attempt by the
 * record's own lease rules. A job is answered in the queue only after its record says how it went.
 */
export class QueueWorker {
  private readonly held = new Map<string, Held>();
  private stopping = false;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;

  private constructor(
    private readonly service: Service,
    private readonly runner: JobRunner,
    private readonly settings: WorkerSettings,
    private readonly log: (event: Record<string, unknown>) => void,
  ) {}

  static async start(service: Service, settings: WorkerSettings, log: (event: Record<string, unknown>) => void): Promise<QueueWorker> {
    const runner = await JobRunner.open(settings, service.store, (line) => log({ note: line }));
    const worker = new QueueWorker(service, runner, settings, log);
    worker.loop = worker.run();
    return worker;
  }

  get owner() {
    return this.runner.owner;
  }

  /** Looks at the queue now rather than at the next poll (a job was just accepted). */
  poke(): void {
    this.wake?.();
  }

  /** Stops this server's attempt of a job, if it holds it: its runner records it as cancelled. */
  cancel(identity: string, reason: string): boolean {
    const held = this.held.get(identity);
    if (!held) return false;
    held.stop.abort(reason);
    return true;
  }

  get running(): number {
    return this.held.size;
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      if (this.held.size >= this.settings.concurrency) {
        await Promise.race([...[...this.held.values()].map((h) => h.done), this.nap()]);
        continue;
      }
      let entry: QueuedJob | undefined;
      try {
        entry = await this.service.db.queue.take(this.runner.owner, this.settings.leaseMs);
      } catch (error) {
        this.log({ error: `could not take from the queue: ${(error as Error).message}` });
      }
      if (!entry) {
        await this.nap();
        continue;
      }
      const stop = new AbortController();
      const held: Held = { entry, stop, done: Promise.resolve() };
      held.done = this.work(held).finally(() => {
        this.held.delete(entry._id);
        this.wake?.();
      });
      this.held.set(entry._id, held);
    }
  }

  private nap(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, this.settings.pollMs);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** One taken job: renew its lease while it runs; settle it by what the runner reports. */
  private async work(held: Held): Promise<void> {
    const { entry, stop } = held;
    const renewal = setInterval(
      () =>
        void this.service.db.queue
          .renewTaken(entry._id, this.runner.owner, this.settings.leaseMs)
          .then((now) => {
            if (now?.cancel && !stop.signal.aborted) stop.abort(now.cancel.reason);
          })
          .catch(() => {}),
      Math.max(200, Math.floor(this.settings.leaseMs / 3)),
    );
    let settlement: QueueSettlement;
    try {
      if (entry.cancel) stop.abort(entry.cancel.reason);
      settlement = await this.attempt(entry, stop.signal);
    } catch (error) {
      settlement = { state: 'queued', outcome: 'lost', reason: `${(error as Error).message}`, notBefore: this.later() };
    } finally {
      clearInterval(renewal);
    }
    const settled = await this.service.db.queue.settle(entry._id, this.runner.owner, settlement).catch(() => false);
    this.log({ job: entry._id, outcome: settlement.outcome, state: settlement.state, settled, reason: settlement.reason });
  }

  private later(): Date {
    return new Date(Date.now() + this.settings.leaseMs);
  }

  /** Plans the job again (the same planEntries as `caas run`), then runs it if the plan still says RUN. */
  private async attempt(entry: QueuedJob, signal: AbortSignal): Promise<QueueSettlement> {
    const [plan] = await this.service.planFor(entry);
    if (!plan) return { state: 'done', outcome: 'invalid', reason: 'the job could not be read again' };
    if (signal.aborted) return { state: 'cancelled', outcome: 'cancelled', reason: String(signal.reason) };
    if (plan.action === 'INVALID' || plan.action === 'REFUSED') {
      return { state: 'done', outcome: plan.action === 'INVALID' ? 'invalid' : 'refused', reason: plan.reason ?? plan.action };
    }
    if (plan.job?.identity !== entry._id) {
      return {
        state: 'done',
        outcome: 'superseded',
        reason: `its identity is ${plan.job?.identity} now (the analysis code changed since it was accepted): not run; submit it again`,
      };
    }
    if (plan.action === 'SKIP') return { state: 'done', outcome: 'skipped', reason: plan.reason ?? 'already succeeded' };
    if (plan.action === 'RUNNING') {
      const expires = plan.record?.lease ? Date.parse(plan.record.lease.expires) : Date.now();
      return { state: 'queued', outcome: 'running', reason: plan.reason ?? 'running elsewhere', notBefore: new Date(expires + 1000) };
    }
    // As caas run does before its first claim: a job its launcher cannot run is answered, never claimed.
    const refusal = this.runner.refusal(plan.job.analysis);
    if (refusal) return { state: 'done', outcome: 'refused', reason: refusal };
    const result = await this.runner.execute(plan.job, signal, entry.submitter);
    if (signal.aborted && !this.stopping)
      return { state: 'cancelled', outcome: result.outcome, reason: `${String(signal.reason)}: ${result.reason}` };
    if (ANSWERED.has(result.outcome)) return { state: 'done', outcome: result.outcome, reason: result.reason };
    return { state: 'queued', outcome: result.outcome, reason: result.reason, notBefore: this.later() };
  }

  /**
   * Stops taking jobs; waits up to `graceMs` for the running ones to finish, then hands back those
   * still running: their queue entries wait again, and their records' leases lapse now that this
   * process stops renewing them, so the next server adopts their attempts or retries them.
   */
  async stop(graceMs: number): Promise<{ finished: number; handedBack: number }> {
    this.stopping = true;
    this.wake?.();
    await this.loop;
    const running = [...this.held.values()];
    const all = Promise.all(running.map((h) => h.done));
    await Promise.race([all, sleep(graceMs)]);
    const left = [...this.held.values()];
    for (const held of left) {
      await this.service.db.queue
        .settle(held.entry._id, this.runner.owner, {
          state: 'queued',
          outcome: 'handed-back',
          reason: 'the server stopped while the job ran: the next server adopts or retries it once its lease lapses',
          notBefore: this.later(),
        })
        .catch(() => false);
    }
    if (left.length === 0) await this.runner.close();
    return { finished: running.length - left.length, handedBack: left.length };
  }
}
