/**
 * What every benchmark returns: its measurements (ours beside the baseline, measured in the same
 * run so machine noise cancels out in the ratio) and its targets, each checked against a number.
 */
export interface Measurement {
  /** What was measured, e.g. "caas identity (RFC 8785 + sha256)" or "object-hash (sha256)". */
  subject: string;
  value: number;
  /** e.g. "identities/s", "s", "ms", "MiB", "round trips". */
  unit: string;
  /** Anything that qualifies the number: sizes, counts, spread. */
  detail?: string;
}

export interface TargetCheck {
  /** The target as the issue states it, e.g. ">= 100k identities/s". */
  target: string;
  /** The number it was checked against, formatted. */
  measured: string;
  ok: boolean;
  /** A check that the benchmark did the right work (not a speed target): held in quick runs too. */
  correctness?: true;
}

export interface BenchReport {
  /** Short key: identity, gate, dispatch, per-job, upload. */
  name: string;
  /** What ran, with its sizes. */
  title: string;
  measurements: Measurement[];
  targets: TargetCheck[];
  /** Why a part did not run (no MongoDB here, say), printed so a skip is never silent. */
  skipped?: string[];
  notes?: string[];
}

export interface BenchOptions {
  /** Smaller sizes: the whole suite in under a minute, to check that it still runs. */
  quick: boolean;
  /** Scratch folder for this benchmark (under the git-ignored bench/.out), removed afterwards. */
  workDir: string;
}

export function check(target: string, measured: string, ok: boolean): TargetCheck {
  return { target, measured, ok };
}

/** The work itself was right (same output, all jobs recorded): a failure here fails any run. */
export function verify(target: string, measured: string, ok: boolean): TargetCheck {
  return { target, measured, ok, correctness: true };
}

/** 12345.6 -> "12,346"; small numbers keep 2 significant decimals. */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
