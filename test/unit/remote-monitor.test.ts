import { describe, expect, it } from 'vitest';
import { MonitorGroup, monitorRemote, type RemoteState } from '../../backends/compute/remote-monitor.ts';

/** A machine whose looks answer from a script of states, the last one repeated; it records stops. */
function scripted(states: RemoteState[]) {
  const stops: string[] = [];
  let looks = 0;
  return {
    stops,
    machine: {
      id: 'm-1',
      look: async () => states[Math.min(looks++, states.length - 1)]!,
      stop: async (reason: string) => void stops.push(reason),
    },
  };
}

const options = (group: MonitorGroup, deadlineMs: number, maxRuntimeMinutes: number) => ({
  noun: 'job',
  api: 'the fake',
  pollMs: 20,
  deadline: new Date(Date.now() + deadlineMs),
  maxRuntimeMinutes,
  unlistedGraceLooks: 2,
  endWritten: async () => false,
  group,
  log: () => {},
});

describe('the remote monitor', () => {
  it('does not count time in a queue against the max runtime, and says when the machine started', async () => {
    const group = new MonitorGroup();
    const queued: RemoteState[] = Array.from({ length: 10 }, () => ({ kind: 'queued' }));
    const { machine, stops } = scripted([...queued, { kind: 'up' }, { kind: 'up' }, { kind: 'ended', why: 'exit 0' }]);
    // The deadline at launch (50 ms) passes while the job is queued (about 200 ms): it moves with the start.
    const job = monitorRemote(machine, options(group, 50, 1));
    let startedAt = 0;
    void job.running!.then(() => (startedAt = Date.now()));
    const ended = await job.ended;
    expect(stops).toEqual([]);
    expect(ended).toEqual({ exitCode: null, reason: 'job lost: exit 0' });
    expect(startedAt).toBeGreaterThan(0);
    group.close();
  });

  it('stops a started machine at its deadline', async () => {
    const group = new MonitorGroup();
    const { machine, stops } = scripted([{ kind: 'up' }]);
    const ended = await monitorRemote(machine, options(group, 60, 0.001)).ended;
    expect(stops).toEqual([expect.stringMatching(/^timeout: past max runtime/)]);
    expect(ended.reason).toMatch(/^timeout: past max runtime/);
    group.close();
  });
});
