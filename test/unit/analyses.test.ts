import { describe, expect, it } from 'vitest';
import mockWait from '../../analyses/mock-wait/index.ts';
import unitFilter from '../../analyses/unit-filter/index.ts';
import { filterUnits, isiViolationRatio, TOO_FEW_SPIKES } from '../../analyses/unit-filter/isi.ts';

describe('ISI violation math', () => {
  it('counts intervals strictly shorter than the refractory period', () => {
    // Intervals: 1 ms, 2 ms, 0.5 ms, 10 ms -> two of four are below 1.5 ms.
    expect(isiViolationRatio([0, 0.001, 0.003, 0.0035, 0.0135], 1.5)).toBe(0.5);
    expect(isiViolationRatio([0, 0.002, 0.004, 0.006], 1.5)).toBe(0);
    expect(isiViolationRatio([0, 0.001, 0.002], 1.5)).toBe(1);
    expect(isiViolationRatio([0, 0.001, 0.002, 0.1], 1.5)).toBeCloseTo(2 / 3, 12);
  });

  it('follows the refractory period it is given', () => {
    const train = [0, 0.001, 0.003, 0.0035, 0.0135];
    expect(isiViolationRatio(train, 0.4)).toBe(0);
    expect(isiViolationRatio(train, 3)).toBe(0.75);
  });

  it('gives units with fewer than two spikes a ratio of 0 and a note', () => {
    expect(isiViolationRatio([], 1.5)).toBe(0);
    expect(isiViolationRatio([4.2], 1.5)).toBe(0);
    const results = filterUnits(
      {
        session: 's',
        units: [
          { unit_id: 'a', spike_times_s: [1] },
          { unit_id: 7, spike_times_s: [0, 0.001, 0.01] },
        ],
      },
      { isi_violations_cutoff: 0.05, refractory_ms: 1.5 },
    );
    expect(results).toEqual([
      { unit_id: 'a', n_spikes: 1, isi_violation_ratio: 0, passes: true, note: TOO_FEW_SPIKES },
      { unit_id: 7, n_spikes: 3, isi_violation_ratio: 0.5, passes: false },
    ]);
  });

  it('passes a unit whose ratio equals the cutoff', () => {
    const [result] = filterUnits(
      { session: 's', units: [{ unit_id: 1, spike_times_s: [0, 0.001, 0.01] }] },
      { isi_violations_cutoff: 0.5, refractory_ms: 1.5 },
    );
    expect(result?.passes).toBe(true);
  });
});

describe('unit-filter parameters', () => {
  it('applies the defaults', () => {
    expect(unitFilter.parameters.parse({})).toEqual({ isi_violations_cutoff: 0.05, refractory_ms: 1.5, analysis_tag: 'default' });
  });

  it('rejects unknown keys and out-of-range values, naming the field', () => {
    const unknown = unitFilter.parameters.safeParse({ cutoff: 0.1 });
    expect(unknown.success).toBe(false);
    expect(unknown.error?.issues[0]).toMatchObject({ code: 'unrecognized_keys', keys: ['cutoff'] });
    const outOfRange = unitFilter.parameters.safeParse({ isi_violations_cutoff: 2 });
    expect(outOfRange.error?.issues[0]?.path).toEqual(['isi_violations_cutoff']);
    const negative = unitFilter.parameters.safeParse({ refractory_ms: 0 });
    expect(negative.error?.issues[0]?.path).toEqual(['refractory_ms']);
  });

  it('declares its command and blueprint as the agent expects', () => {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: agent placeholders, expanded by the agent, not by JavaScript
    expect(unitFilter.command).toEqual(['${node}', '--import', '${tsx}', '${analysis_dir}/filter.ts']);
    expect(unitFilter.blueprint).toMatchObject({ bucket: 'unit-filter', instance_type: 't3.micro', deploy_limit: 4 });
    expect(unitFilter.outputs?.model.parse({ session: 'x', n_units: 3, n_passing: 2 })).toEqual({ n_units: 3, n_passing: 2 });
  });
});

describe('mock-wait', () => {
  it('applies defaults and rejects unknown keys', () => {
    expect(mockWait.parameters.parse({})).toEqual({ wait: 1, fail: false });
    const bad = mockWait.parameters.safeParse({ wait: -1 });
    expect(bad.error?.issues[0]?.path).toEqual(['wait']);
    expect(mockWait.parameters.safeParse({ sleep: 1 }).error?.issues[0]).toMatchObject({ code: 'unrecognized_keys', keys: ['sleep'] });
    // biome-ignore lint/suspicious/noTemplateCurlyInString: agent placeholders, expanded by the agent, not by JavaScript
    expect(mockWait.command).toEqual(['bash', '${analysis_dir}/run.sh']);
  });
});
