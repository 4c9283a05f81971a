import { describe, expect, it } from 'vitest';
import type { LaunchedJob, LaunchRequest, MachineEnd } from '../../backends/compute/index.ts';
import { LaunchesByAttempt, stopAtDeadline } from '../../backends/compute/launch-once.ts';
import { Blueprint } from '../../models/blueprint.ts';

const request = (identity: string, deadlineMs = 60_000) =>
  ({ identity, attempt: 1, blueprint: Blueprint.parse({ bucket: 'b-x' }), deadline: new Date(Date.now() + deadlineMs) }) as LaunchRequest;

function machine(ended: Promise<MachineEnd>): LaunchedJob & { cancelled: string[] } {
  const cancelled: string[] = [];
  return { instance: 'm', ended, cancelled, cancel: async (reason) => void cancelled.push(reason) };
}

/** Unhandled rejections seen while `body` runs (and a tick after). */
async function unhandledDuring(body: () => Promise<void>): Promise<unknown[]> {
  const seen: unknown[] = [];
  const listener = (reason: unknown) => seen.push(reason);
  process.on('unhandledRejection', listener);
  try {
    await body();
    await new Promise((resolve) => setTimeout(resolve, 20));
  } finally {
    process.off('unhandledRejection', listener);
  }
  return seen;
}

describe('one launch per (identity, attempt)', () => {
  it('gives concurrent and repeated launches the same machine, and forgets it once it ended', async () => {
    const launches = new LaunchesByAttempt();
    let finish!: (end: MachineEnd) => void;
    let started = 0;
    const start = async () => {
      started++;
      return machine(new Promise<MachineEnd>((resolve) => (finish = resolve)));
    };
    const [a, b] = await Promise.all([launches.launch(request('x'), start), launches.launch(request('x'), start)]);
    expect(a).toBe(b);
    expect(started).toBe(1);
    finish({ exitCode: 0 });
    await a.ended;
    await new Promise((resolve) => setTimeout(resolve, 0));
    await launches.launch(request('x'), start);
    expect(started).toBe(2);
  });

  it('a launch that fails, or a machine whose end rejects, is forgotten without an unhandled rejection', async () => {
    const launches = new LaunchesByAttempt();
    const seen = await unhandledDuring(async () => {
      await expect(launches.launch(request('y'), () => Promise.reject(new Error('no capacity')))).rejects.toThrow('no capacity');
      const job = await launches.launch(request('z'), async () => machine(Promise.reject(new Error('rm failed'))));
      await job.ended.catch(() => {});
      const again = await launches.launch(request('y'), async () => machine(new Promise(() => {})));
      expect(again.instance).toBe('m');
    });
    expect(seen).toEqual([]);
  });
});

describe('a machine past its deadline', () => {
  it('is cancelled once the grace after the deadline is over, and not at all when it ended first', async () => {
    const late = machine(new Promise(() => {}));
    stopAtDeadline(late, request('d', 10), 20);
    const early = machine(Promise.resolve({ exitCode: 0 }));
    stopAtDeadline(early, request('e', 10), 20);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(late.cancelled).toEqual([expect.stringMatching(/^timeout: past max runtime/)]);
    expect(early.cancelled).toEqual([]);
  });

  it('a machine whose end rejects leaves no unhandled rejection behind', async () => {
    const seen = await unhandledDuring(async () => {
      const job = machine(Promise.reject(new Error('rm failed')));
      stopAtDeadline(job, request('f'), 10);
      await job.ended.catch(() => {});
    });
    expect(seen).toEqual([]);
  });
});
