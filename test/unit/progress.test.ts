import { Writable } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BatchProgress, DispatchProgress, duration } from '../../cli/progress.ts';
import type { JobResult } from '../../wrapper/execute.ts';
import type { PlanEntry } from '../../wrapper/gate.ts';
import type { PreparedJob } from '../../wrapper/prepare.ts';
import type { RunReporter } from '../../wrapper/run.ts';

/** A stream that records what was written and says whether it is a terminal. */
class Sink extends Writable {
  text = '';
  columns = 120;
  constructor(readonly isTTY: boolean) {
    super();
  }
  override _write(chunk: Buffer, _encoding: string, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

function entry(action: PlanEntry['action'], analysis: string, identity: string): PlanEntry {
  const job = { identity, analysis: { name: analysis } } as unknown as PreparedJob;
  return action === 'INVALID'
    ? { action, where: `jobs.jsonl:${identity}`, reason: 'bad' }
    : { action, where: `jobs.jsonl:${identity}`, job };
}

const result = (identity: string, outcome: JobResult['outcome']): JobResult => ({ where: 'x', identity, outcome, reason: '' });

const ESC = `${String.fromCharCode(27)}[`;
const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;?]*[A-Za-z]`, 'g');
const CSI = `${String.fromCharCode(27)}\\[`;
const plain = (text: string) => text.replaceAll('\r', '\n').replace(ANSI, '');

afterEach(() => {
  vi.useRealTimers();
});

describe('BatchProgress off a terminal', () => {
  it('prints a plain line of counts and an ETA every interval, and nothing after stop', () => {
    vi.useFakeTimers();
    let now = 0;
    const status = new Sink(false);
    const progress = new BatchProgress({ status, out: new Sink(false), intervalMs: 10_000, env: {}, now: () => now });
    progress.plan([
      entry('RUN', 'mock-wait', 'a'),
      entry('RUN', 'mock-wait', 'b'),
      entry('RUN', 'unit-filter', 'c'),
      entry('SKIP', 'mock-wait', 'd'),
    ]);
    progress.plan([entry('RUNNING', 'unit-filter', 'e'), entry('INVALID', '-', 'f')]);
    progress.started();
    progress.started();
    now = 4_000;
    progress.result(result('a', 'succeeded'));
    now = 10_000;
    vi.advanceTimersByTime(10_000);
    expect(status.text).toBe(
      'progress: 1/3 done, 1 succeeded, 0 failed, 1 running, 1 skipped, 1 running elsewhere, elapsed 10s, eta 20s\n',
    );
    progress.result(result('b', 'failed'));
    progress.started();
    progress.result(result('c', 'succeeded'));
    now = 20_000;
    vi.advanceTimersByTime(10_000);
    expect(status.text.split('\n')[1]).toBe(
      'progress: 3/3 done, 2 succeeded, 1 failed, 0 running, 1 skipped, 1 running elsewhere, elapsed 20s, eta 0s',
    );
    progress.stop();
    const before = status.text;
    vi.advanceTimersByTime(60_000);
    expect(status.text).toBe(before);
  });

  it('ends with a summary table per analysis and a total, without colour', () => {
    const out = new Sink(false);
    const progress = new BatchProgress({ status: new Sink(false), out, env: {} });
    progress.plan([
      entry('RUN', 'mock-wait', 'a'),
      entry('RUN', 'mock-wait', 'b'),
      entry('RUN', 'unit-filter', 'c'),
      entry('SKIP', 'unit-filter', 'd'),
    ]);
    progress.plan([entry('INVALID', '-', 'f')]);
    for (let i = 0; i < 3; i++) progress.started();
    progress.result(result('a', 'succeeded'));
    progress.result(result('b', 'failed'));
    // Another runner finished c first: it counts as skipped, and as done for the bar.
    progress.result(result('c', 'skipped'));
    progress.stop();
    expect(progress.done).toBe(3);
    expect(progress.summaryTable().split('\n')).toEqual([
      'ANALYSIS     TO RUN  SUCCEEDED  FAILED  SKIPPED  ELSEWHERE  INVALID',
      '-            0       0          0       0        0          1',
      'mock-wait    2       1          1       0        0          0',
      'unit-filter  1       0          0       2        0          0',
      'total        3       1          1       2        0          1',
    ]);
  });

  it('quiet: no periodic lines; the wrapped reporter sees no plan and only failed results', () => {
    vi.useFakeTimers();
    const status = new Sink(false);
    const progress = new BatchProgress({ status, out: new Sink(false), quiet: true, intervalMs: 1000, env: {} });
    const seen: string[] = [];
    const inner: RunReporter = {
      plan: (entries) => seen.push(`plan ${entries.length}`),
      warn: (message) => seen.push(`warn ${message}`),
      started: () => seen.push('started'),
      result: (r) => seen.push(`result ${r.outcome}`),
    };
    const reporter = progress.wrap(inner);
    reporter.plan([entry('RUN', 'mock-wait', 'a'), entry('RUN', 'mock-wait', 'b'), entry('RUN', 'mock-wait', 'c')]);
    reporter.warn('dirty folder');
    for (const e of ['a', 'b', 'c']) reporter.started?.(entry('RUN', 'mock-wait', e));
    reporter.result(result('a', 'succeeded'));
    reporter.result(result('b', 'failed'));
    reporter.result(result('c', 'lost'));
    vi.advanceTimersByTime(5000);
    progress.stop();
    expect(seen).toEqual(['warn dirty folder', 'started', 'started', 'started', 'result failed', 'result lost']);
    expect(status.text).toBe('');
    expect(progress.summaryTable()).toContain('LOST');
  });
});

describe('BatchProgress on a terminal', () => {
  it('draws a bar with the counts and an ETA, logs lines above it, and stops on a final frame', () => {
    let now = 0;
    const status = new Sink(true);
    const out = new Sink(true);
    const progress = new BatchProgress({ status, out, env: {}, now: () => now });
    progress.plan([entry('RUN', 'mock-wait', 'a'), entry('RUN', 'mock-wait', 'b'), entry('SKIP', 'mock-wait', 'c')]);
    progress.started();
    progress.started();
    now = 5_000;
    progress.result(result('a', 'succeeded'));
    progress.print('SUCCEEDED a');
    progress.stop();
    const text = plain(status.text);
    expect(text).toContain('SUCCEEDED a\n');
    expect(text).toMatch(/[█░]{24} 1\/2 \| ran 1 \| failed 0 \| running 1 \| skipped 1 \| elsewhere 0 \| ETA 5s/);
    // The bar and its log share stderr; stdout stays clean for what the user pipes.
    expect(out.text).toBe('');
    expect(status.text).toContain(`${ESC}32mran 1${ESC}0m`);
  });

  it('uses no colour when NO_COLOR is set, in the bar and in the summary', () => {
    const status = new Sink(true);
    const out = new Sink(true);
    const progress = new BatchProgress({ status, out, env: { NO_COLOR: '1' } });
    progress.plan([entry('RUN', 'mock-wait', 'a')]);
    progress.started();
    progress.result(result('a', 'failed'));
    progress.stop();
    expect(status.text).toContain('failed 1');
    expect(status.text).not.toMatch(new RegExp(`${String.fromCharCode(27)}\\[3\\dm`));
    expect(progress.summaryTable()).not.toContain(ESC);
    const coloured = new BatchProgress({ status: new Sink(false), out: new Sink(true), env: {} });
    coloured.plan([entry('RUN', 'mock-wait', 'a')]);
    coloured.result(result('a', 'failed'));
    expect(coloured.summaryTable()).toContain(`${ESC}31m`);
  });

  it('prints straight to stdout when stdout is not the terminal the bar is on', () => {
    const status = new Sink(true);
    const out = new Sink(false);
    const progress = new BatchProgress({ status, out, env: {} });
    progress.plan([entry('RUN', 'mock-wait', 'a')]);
    progress.started();
    progress.print('line for a file');
    progress.stop();
    expect(out.text).toBe('line for a file\n');
    expect(status.text).not.toContain('line for a file');
  });
});

describe('BatchProgress in a narrow terminal', () => {
  function lastFrame(columns: number, colour: boolean): string {
    const status = Object.assign(new Sink(true), { columns });
    let now = 0;
    const progress = new BatchProgress({ status, out: new Sink(true), env: colour ? {} : { NO_COLOR: '1' }, now: () => now });
    progress.plan([entry('RUN', 'mock-wait', 'a'), entry('RUN', 'mock-wait', 'b'), entry('RUNNING', 'mock-wait', 'c')]);
    progress.plan(Array.from({ length: 1234 }, (_, i) => entry('SKIP', 'mock-wait', `s${i}`)));
    progress.started();
    progress.started();
    now = 95_000;
    progress.result(result('a', 'failed'));
    progress.stop();
    // cli-progress cuts each frame at the terminal's width, escapes included: what it wrote is what shows.
    const frames = status.text.split(new RegExp(`\\r|\\n|${CSI}\\d*G`)).filter((f) => f.includes('/2'));
    return frames[frames.length - 1]!.replace(new RegExp(`${CSI}0K$`), '');
  }

  it.each([120, 80, 60, 40, 30])('keeps the elsewhere count and the ETA at %i columns, in colour or not', (columns) => {
    for (const colour of [true, false]) {
      const frame = lastFrame(columns, colour);
      expect(frame.length, frame).toBeLessThan(columns);
      expect(plain(frame)).toMatch(/1\/2 .*\| elsewhere 1 \| ETA 1m35s$/);
    }
    const frame = plain(lastFrame(columns, false));
    if (columns >= 120) expect(frame).toMatch(/^[█░]{24} 1\/2 \| ran 0 \| failed 1 \| running 1 \| skipped 1234 \| elsewhere 1/);
    if (columns === 80) expect(frame).toMatch(/^[█░]{10,24} 1\/2 \| ran 0 \| failed 1 \| running 1 \| elsewhere 1/);
    if (columns === 60) expect(frame).toMatch(/^[█░]{10,24} 1\/2 \| ran 0 \| failed 1 \| elsewhere 1/);
    if (columns <= 40) expect(frame).toMatch(/^1\/2 \| (failed 1 \| )?elsewhere 1/);
  });
});

it('durations read short', () => {
  expect([duration(0), duration(59_400), duration(75_000), duration(3_600_000 + 120_000)]).toEqual(['0s', '59s', '1m15s', '1h02m']);
});

describe('dispatch progress', () => {
  function sink(isTTY: boolean) {
    const chunks: string[] = [];
    const stream = Object.assign(
      new Writable({
        write: (c, _e, done) => {
          chunks.push(String(c));
          done();
        },
      }),
      { isTTY },
    );
    return { stream, text: () => chunks.join('') };
  }

  it('prints a plain count line every interval when stderr is not a terminal', () => {
    let now = 0;
    const { stream, text } = sink(false);
    const progress = new DispatchProgress({ status: stream, intervalMs: 1000, now: () => now });
    now = 1000;
    progress.update({ assets: 10, jobs: 20 });
    now = 1500;
    progress.update({ assets: 15, jobs: 30 });
    now = 2500;
    progress.update({ assets: 30, jobs: 60 });
    expect(text()).toBe('dispatch: 10 assets read, 20 jobs written (20 jobs/s)\ndispatch: 30 assets read, 60 jobs written (24 jobs/s)\n');
  });

  it('redraws one line on a terminal and clears it at the end; --quiet shows nothing', () => {
    let now = 0;
    const tty = sink(true);
    const progress = new DispatchProgress({ status: tty.stream, now: () => now });
    now = 200;
    progress.update({ assets: 1, jobs: 2 });
    progress.stop();
    expect(tty.text()).toBe('\rdispatch: 1 assets read, 2 jobs written (10 jobs/s)\u001b[K\r\u001b[K');
    const quiet = sink(true);
    const silent = new DispatchProgress({ status: quiet.stream, quiet: true, now: () => now });
    silent.update({ assets: 1, jobs: 2 });
    silent.stop();
    expect(quiet.text()).toBe('');
  });
});
