import { MultiBar, type SingleBar } from 'cli-progress';
import type { JobResult } from '../wrapper/execute.ts';
import type { PlanEntry } from '../wrapper/gate.ts';
import type { RunReporter } from '../wrapper/run.ts';
import { formatTable } from './table.ts';

/** A stream that may be a terminal. */
export type OutputStream = NodeJS.WritableStream & { isTTY?: boolean };

export interface ProgressOptions {
  /** Only failures and the final counts: no bar, no periodic lines, no plan, no per-job lines. */
  quiet?: boolean;
  /** Where the bar (on a terminal) or the periodic lines (otherwise) go. Default: stderr. */
  status?: OutputStream;
  /** Where result lines and the summary go. Default: stdout. */
  out?: OutputStream;
  /** Period of the plain progress lines when `status` is not a terminal. Default: CAAS_PROGRESS_INTERVAL_MS or 10 s. */
  intervalMs?: number;
  env?: NodeJS.ProcessEnv;
  now?: () => number;
}

interface Counts {
  toRun: number;
  succeeded: number;
  failed: number;
  lost: number;
  skipped: number;
  elsewhere: number;
  invalid: number;
  /** Not started for their group's budget or instance_limit: in the plan, or when their turn came. */
  refused: number;
}

/** The bar at its widest, and the narrowest still worth drawing. */
const BAR_WIDTH = 24;
const MIN_BAR_WIDTH = 10;

const zero = (): Counts => ({ toRun: 0, succeeded: 0, failed: 0, lost: 0, skipped: 0, elsewhere: 0, invalid: 0, refused: 0 });

/** The options both progress displays share, with their defaults. */
function statusSettings(options: ProgressOptions) {
  const env = options.env ?? process.env;
  return {
    status: options.status ?? process.stderr,
    quiet: options.quiet ?? false,
    intervalMs: options.intervalMs ?? (Number(env.CAAS_PROGRESS_INTERVAL_MS) || 10_000),
    now: options.now ?? Date.now,
  };
}

/**
 * What a batch shows while it runs: a bar with counts and an ETA on a terminal, a plain line every
 * few seconds otherwise (logs stay readable), nothing but failures with `quiet`, and a summary table
 * per analysis at the end. Shared by `caas run --execute` and `caas dispatch`.
 */
export class BatchProgress {
  private readonly total = zero();
  private readonly byAnalysis = new Map<string, Counts>();
  /** The analysis of each identity to run, so results (which carry no analysis) land in the right row. */
  private readonly analysisOf = new Map<string, string>();
  private readonly status: OutputStream;
  private readonly out: OutputStream;
  private readonly quiet: boolean;
  private readonly intervalMs: number;
  private readonly now: () => number;
  private readonly noColour: boolean;
  private active = 0;
  /** Jobs planned to run that another runner finished or took meanwhile: done here, without running. */
  private takenByOthers = 0;
  /** Jobs planned to run that their group refused when their turn came. */
  private refusedAtStart = 0;
  private startedAt: number | undefined;
  private multibar: MultiBar | undefined;
  private bar: SingleBar | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(options: ProgressOptions = {}) {
    ({ status: this.status, quiet: this.quiet, intervalMs: this.intervalMs, now: this.now } = statusSettings(options));
    this.out = options.out ?? process.stdout;
    // https://no-color.org: present and not empty disables colour.
    const env = options.env ?? process.env;
    this.noColour = env.NO_COLOR !== undefined && env.NO_COLOR !== '';
  }

  /** Tees a run's events into the progress display; the inner reporter's plan and results are muted by `quiet`. */
  wrap(inner: RunReporter): RunReporter {
    return {
      plan: (entries) => {
        this.plan(entries);
        if (!this.quiet) inner.plan(entries);
      },
      warn: (message) => inner.warn(message),
      started: (entry) => {
        this.started(entry);
        inner.started?.(entry);
      },
      result: (result) => {
        this.result(result);
        if (!this.quiet || result.outcome === 'failed' || result.outcome === 'lost' || result.outcome === 'refused') inner.result(result);
      },
    };
  }

  plan(entries: readonly PlanEntry[]): void {
    for (const entry of entries) {
      const name = entry.job?.analysis.name ?? '-';
      const key = ({ RUN: 'toRun', SKIP: 'skipped', RUNNING: 'elsewhere', INVALID: 'invalid', REFUSED: 'refused' } as const)[entry.action];
      this.count(name, key);
      if (entry.action === 'RUN' && entry.job) this.analysisOf.set(entry.job.identity, name);
    }
  }

  started(_entry?: PlanEntry): void {
    this.active++;
    this.begin();
    this.redraw();
  }

  result(result: JobResult): void {
    this.active = Math.max(0, this.active - 1);
    const name = this.analysisOf.get(result.identity) ?? '-';
    if (result.outcome === 'skipped' || result.outcome === 'running' || result.outcome === 'failed-elsewhere') this.takenByOthers++;
    if (result.outcome === 'refused') this.refusedAtStart++;
    const key = (
      {
        succeeded: 'succeeded',
        failed: 'failed',
        lost: 'lost',
        skipped: 'skipped',
        running: 'elsewhere',
        'failed-elsewhere': 'elsewhere',
        refused: 'refused',
      } as const
    )[result.outcome];
    this.count(name, key);
    this.redraw();
  }

  /** Prints a line on `out` without tearing the bar when both share the terminal. */
  print(line: string): void {
    if (this.multibar && this.out.isTTY) this.multibar.log(`${line}\n`);
    else this.out.write(`${line}\n`);
  }

  /** Ends the bar or the periodic lines; safe to call more than once. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.multibar) {
      this.redraw();
      // Lines logged since the last frame are flushed by an update, not by stop.
      this.multibar.update();
      this.multibar.stop();
      this.multibar = undefined;
      this.bar = undefined;
    }
  }

  /** Jobs that ran to an outcome here, out of those planned to run. */
  get done(): number {
    const t = this.total;
    return t.succeeded + t.failed + t.lost + this.takenByOthers + this.refusedAtStart;
  }

  /** One line of counts, as the periodic lines print it. */
  line(): string {
    const t = this.total;
    const parts = [
      `${this.done}/${t.toRun} done`,
      `${t.succeeded} succeeded`,
      `${t.failed + t.lost} failed`,
      `${this.active} running`,
      `${t.skipped} skipped`,
      `${t.elsewhere} running elsewhere`,
      `elapsed ${duration(this.elapsedMs())}`,
    ];
    const eta = this.etaMs();
    if (eta !== undefined) parts.push(`eta ${duration(eta)}`);
    return `progress: ${parts.join(', ')}`;
  }

  /** Counts per analysis and in total; colour only on a terminal and without NO_COLOR. */
  summaryTable(): string {
    const columns: [string, keyof Counts][] = [
      ['TO RUN', 'toRun'],
      ['SUCCEEDED', 'succeeded'],
      ['FAILED', 'failed'],
      ['SKIPPED', 'skipped'],
      ['ELSEWHERE', 'elsewhere'],
      ['INVALID', 'invalid'],
    ];
    if (this.total.lost > 0) columns.push(['LOST', 'lost']);
    if (this.total.refused > 0) columns.push(['REFUSED', 'refused']);
    const names = [...this.byAnalysis.keys()].sort();
    const counted: [string, Counts][] = names.map((name) => [name, this.byAnalysis.get(name)!]);
    if (names.length > 1) counted.push(['total', this.total]);
    const table = formatTable(
      ['ANALYSIS', ...columns.map(([title]) => title)],
      counted.map(([name, counts]) => [name, ...columns.map(([, key]) => String(counts[key]))]),
    );
    if (!this.colour(this.out)) return table;
    const [header = '', ...body] = table.split('\n');
    const troubled = (c: Counts) => c.failed + c.lost + c.invalid > 0;
    return [paint(header, '1'), ...body.map((line, i) => (troubled(counted[i]![1]) ? paint(line, '31') : line))].join('\n');
  }

  private begin(): void {
    if (this.startedAt !== undefined) return;
    this.startedAt = this.now();
    if (this.quiet) return;
    if (this.status.isTTY) {
      this.multibar = new MultiBar({
        stream: this.status,
        format: (_options, params) => this.barText(params.progress, params.maxWidth),
        barsize: BAR_WIDTH,
        fps: 5,
        forceRedraw: true,
        // Line wrapping stays on and the cursor visible: an interrupted run must not leave the terminal altered.
        linewrap: true,
        hideCursor: false,
      });
      this.bar = this.multibar.create(Math.max(1, this.total.toRun), 0);
      this.timer = setInterval(() => this.redraw(), 1000);
    } else {
      this.timer = setInterval(() => this.status.write(`${this.line()}\n`), this.intervalMs);
    }
    this.timer.unref();
  }

  private redraw(): void {
    this.bar?.setTotal(Math.max(1, this.total.toRun));
    this.bar?.update(this.done);
  }

  /**
   * One frame, fitted to the terminal: cli-progress cuts a longer line at the right edge, which
   * would take the ETA and the elsewhere count first. So the least telling parts go first instead
   * (skipped, running, ran, then the bar, then failed), the bar shrinks before anything goes, and
   * colour goes before a field does: cli-progress counts its escape codes as characters.
   */
  private barText(progress: number, columns = 80): string {
    const t = this.total;
    const failed = t.failed + t.lost;
    const eta = this.etaMs();
    const always = [`elsewhere ${t.elsewhere}`, `ETA ${eta === undefined ? '-' : duration(eta)}`];
    type Field = 'ran' | 'failed' | 'running' | 'skipped';
    const field = (name: Field, colour: boolean): string => {
      if (name === 'ran') return colour && t.succeeded ? paint(`ran ${t.succeeded}`, '32') : `ran ${t.succeeded}`;
      if (name === 'failed') return colour && failed ? paint(`failed ${failed}`, '31') : `failed ${failed}`;
      return name === 'running' ? `running ${this.active}` : `skipped ${t.skipped}`;
    };
    const text = (shown: Field[], colour: boolean, barWidth: number) => {
      const full = Math.round(Math.min(1, Math.max(0, progress)) * barWidth);
      const bar = `${'█'.repeat(full)}${'░'.repeat(barWidth - full)}`;
      const head = barWidth > 0 ? `${colour ? paint(bar, '36') : bar} ${this.done}/${t.toRun}` : `${this.done}/${t.toRun}`;
      return [head, ...shown.map((name) => field(name, colour)), ...always].join(' | ');
    };
    const layouts: { shown: Field[]; bar: boolean }[] = [
      { shown: ['ran', 'failed', 'running', 'skipped'], bar: true },
      { shown: ['ran', 'failed', 'running'], bar: true },
      { shown: ['ran', 'failed'], bar: true },
      { shown: ['failed'], bar: true },
      { shown: ['failed'], bar: false },
      { shown: [], bar: false },
    ];
    // The last column stays free: some terminals wrap as soon as it is written.
    const room = Math.max(0, columns - 1);
    for (const { shown, bar } of layouts) {
      for (const colour of this.colour(this.status) ? [true, false] : [false]) {
        const rest = text(shown, colour, 0).length;
        if (!bar) {
          if (rest <= room) return text(shown, colour, 0);
          continue;
        }
        const barWidth = Math.min(BAR_WIDTH, room - rest - 1 - (colour ? paint('', '36').length : 0));
        if (barWidth >= MIN_BAR_WIDTH) return text(shown, colour, barWidth);
      }
    }
    return text([], false, 0);
  }

  private colour(stream: OutputStream): boolean {
    return !this.noColour && stream.isTTY === true;
  }

  private count(name: string, key: keyof Counts): void {
    let counts = this.byAnalysis.get(name);
    if (!counts) {
      counts = zero();
      this.byAnalysis.set(name, counts);
    }
    counts[key]++;
    this.total[key]++;
  }

  private elapsedMs(): number {
    return this.startedAt === undefined ? 0 : this.now() - this.startedAt;
  }

  /** Remaining jobs at the pace so far; unknown until one has finished. */
  private etaMs(): number | undefined {
    const done = this.done;
    if (done === 0) return undefined;
    return (this.elapsedMs() / done) * Math.max(0, this.total.toRun - done);
  }
}

function paint(text: string, code: string): string {
  return `\x1b[${code}m${text}\x1b[0m`;
}

/** 75 s → "1m15s"; short and stable in width for a status line. */
export function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/**
 * What `caas dispatch` shows while it streams: the total is unknown until the catalog is read, so
 * a live count line (assets read, jobs written, rate) on a terminal, a plain line every few seconds
 * otherwise, nothing with `quiet`. Always on stderr: stdout may be the JSONL itself.
 */
export class DispatchProgress {
  private readonly status: OutputStream;
  private readonly quiet: boolean;
  private readonly intervalMs: number;
  private readonly now: () => number;
  private readonly startedAt: number;
  private lastLine = 0;
  private drawn = false;

  constructor(options: Omit<ProgressOptions, 'out'> = {}) {
    ({ status: this.status, quiet: this.quiet, intervalMs: this.intervalMs, now: this.now } = statusSettings(options));
    this.startedAt = this.now();
    // Short dispatches print no progress at all, only their summary.
    this.lastLine = this.startedAt;
  }

  update(counts: { assets: number; jobs: number }): void {
    if (this.quiet) return;
    const now = this.now();
    const seconds = Math.max((now - this.startedAt) / 1000, 0.001);
    const line = `dispatch: ${counts.assets} assets read, ${counts.jobs} jobs written (${Math.round(counts.jobs / seconds)} jobs/s)`;
    if (this.status.isTTY) {
      // A terminal redraws one line at most ten times a second.
      if (now - this.lastLine < 100) return;
      this.status.write(`\r${line}\u001b[K`);
      this.drawn = true;
    } else if (now - this.lastLine >= this.intervalMs) {
      this.status.write(`${line}\n`);
    } else return;
    this.lastLine = now;
  }

  stop(): void {
    if (this.drawn) this.status.write('\r\u001b[K');
    this.drawn = false;
  }
}
