import { describe, expect, it } from 'vitest';
import { Blueprint } from '../../models/blueprint.ts';
import { listedUser, sessionNamedUsers } from '../../wrapper/group-access.ts';
import { attemptCost, budgetRefusal, formatUsd, type GroupUsage, periodStart, worstCaseUsd } from '../../wrapper/group-budget.ts';

describe('budget periods', () => {
  // A Sunday evening, UTC: the ISO week began on the Monday before.
  const sunday = new Date('2026-11-29T23:30:00.000Z');

  it('are calendar periods in UTC: the day from 00:00, the ISO week from Monday, the month from the 1st; total has no start', () => {
    expect(periodStart('day', sunday)?.toISOString()).toBe('2026-11-29T00:00:00.000Z');
    expect(periodStart('week', sunday)?.toISOString()).toBe('2026-11-23T00:00:00.000Z');
    expect(periodStart('week', new Date('2026-11-23T00:00:00.000Z'))?.toISOString()).toBe('2026-11-23T00:00:00.000Z');
    expect(periodStart('week', new Date('2027-01-01T12:00:00.000Z'))?.toISOString()).toBe('2026-12-28T00:00:00.000Z');
    expect(periodStart('month', sunday)?.toISOString()).toBe('2026-11-01T00:00:00.000Z');
    expect(periodStart('total', sunday)).toBeUndefined();
  });
});

describe('costs', () => {
  const blueprint = Blueprint.parse({
    bucket: 'costly',
    instance_type: 't3.micro',
    max_runtime_minutes: 30,
    prices: { 't3.micro': 0.0104, 'c5.large': 0.085 },
  });

  it("are the instance type's price times the runtime; a type the prices do not list costs nothing", () => {
    expect(attemptCost(blueprint, 'c5.large', '2026-11-27T10:00:00.000Z', '2026-11-27T12:00:00.000Z')).toEqual({
      usd: 0.17,
      instance_type: 'c5.large',
      runtime_s: 7200,
      price_per_hour: 0.085,
    });
    expect(attemptCost(blueprint, 'p3.2xlarge', '2026-11-27T10:00:00.000Z', '2026-11-27T12:00:00.000Z').usd).toBe(0);
    // Clocks that disagree never make a negative cost.
    expect(attemptCost(blueprint, 'c5.large', '2026-11-27T12:00:00.000Z', '2026-11-27T10:00:00.000Z').usd).toBe(0);
    expect(worstCaseUsd(blueprint, 't3.micro')).toBeCloseTo(0.0052, 10);
  });

  it('print in cents when they are whole cents, else to a hundredth of a cent', () => {
    expect(formatUsd(5)).toBe('$5.00');
    expect(formatUsd(0.1 + 0.2)).toBe('$0.30');
    expect(formatUsd(0.0052)).toBe('$0.0052');
    expect(formatUsd(0)).toBe('$0.00');
  });
});

describe('a budget', () => {
  const usage = (spentUsd: number, worst: number[]): GroupUsage => ({
    analysis: 'costly',
    group: 'lab',
    period: 'week',
    since: new Date('2026-11-23T00:00:00.000Z'),
    spentUsd,
    slots: worst.map((w, n) => ({
      _id: `costly/lab/${n}`,
      analysis: 'costly',
      group: 'lab',
      n,
      identity: 'f'.repeat(64),
      owner: { host: 'h', pid: 1, run: 'r' },
      taken: '2026-11-27T00:00:00.000Z',
      expires: '2026-11-27T00:01:00.000Z',
      worst_usd: w,
      instance_type: 't3.micro',
    })),
    runningWorstUsd: worst.reduce((a, b) => a + b, 0),
    capUsd: 10,
  });

  it('lets a job start while the spend plus the worst case of the running jobs is under the cap', () => {
    expect(budgetRefusal(usage(9, [0.5]))).toBeUndefined();
    expect(budgetRefusal(usage(9, [0.5, 0.5]))).toBe(
      'budget of group "lab" of costly reached: $9.00 spent this week (since 2026-11-23 UTC) and up to $1.00 for 2 running job(s), cap $10.00 per week; the job was not started (raise budget.usd in its blueprint or wait for the next week)',
    );
    // The asking job's own slot is not counted against it.
    expect(budgetRefusal(usage(9, [0.5, 0.5]), (slot) => slot._id !== 'costly/lab/1')).toBeUndefined();
    expect(budgetRefusal({ ...usage(0, []), capUsd: undefined, period: undefined })).toBeUndefined();
  });
});

describe("a group's users", () => {
  it('match by name, and an IAM principal as S3 reports it with or without its "AWS:" prefix', () => {
    expect(listedUser(['alice', 'AIDAALICE'], 'alice')).toBe(true);
    expect(listedUser(['alice', 'AIDAALICE'], 'AWS:AIDAALICE')).toBe(true);
    expect(listedUser(['AWS:AIDAALICE'], 'AWS:AIDAALICE')).toBe(true);
    expect(listedUser(['alice'], 'AWS:alice-not-a-principal')).toBe(false);
    expect(listedUser(['alice'], 'Alice')).toBe(false);
  });

  it("admit every session of a role listed by its id; a session's name alone admits nobody else's role", () => {
    expect(listedUser(['AROALAB'], 'AWS:AROALAB:alice')).toBe(true);
    expect(listedUser(['AWS:AROALAB'], 'AWS:AROALAB:whoever-assumed-it')).toBe(true);
    expect(listedUser(['AROALAB:alice'], 'AWS:AROALAB:alice')).toBe(true);
    expect(listedUser(['AROALAB:alice'], 'AWS:AROALAB:bob')).toBe(false);
    expect(listedUser(['AROALAB:alice'], 'AWS:AROAOTHER:alice')).toBe(false);
    expect(listedUser(['alice'], 'AWS:AROALAB:alice')).toBe(false);
    expect(listedUser(['AROALAB'], 'AWS:AROALABX:alice')).toBe(false);
  });

  it('a role session named in users is warned about: its name is chosen by whoever assumes the role', () => {
    const blueprint = Blueprint.parse({
      bucket: 'lab-bucket',
      ami: 'ami-0123456789abcdef0',
      groups: [{ name: 'lab', users: ['alice', 'AIDAALICE', 'AROALAB', 'AWS:AROALAB:alice'] }],
    });
    const warnings = sessionNamedUsers(blueprint);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^groups\.0\.users\.3: "AWS:AROALAB:alice" names a session of role AROALAB; .* List "AROALAB" to admit/);
  });
});
