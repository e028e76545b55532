// Small statistics shared by the sync benchmark's parts.

/** The median; NaN values are left out, ±Infinity counts (e.g. "never arrived"). */
export function median(xs: number[]): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Nearest-rank percentile (p in 0..100) of unsorted values: the smallest value with at least p % at or below it (NaN left out, Infinity counts). */
export function percentile(xs: number[], p: number): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[Math.min(s.length, rank) - 1]!;
}

export interface Summary {
  n: number;
  min: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

export function summarise(xs: number[]): Summary {
  const ok = xs.filter(Number.isFinite);
  return {
    n: ok.length,
    min: ok.length ? Math.min(...ok) : NaN,
    p50: percentile(ok, 50),
    p95: percentile(ok, 95),
    p99: percentile(ok, 99),
    max: ok.length ? Math.max(...ok) : NaN,
    mean: ok.length ? ok.reduce((a, b) => a + b, 0) / ok.length : NaN,
  };
}

/** The monotonic clock (CLOCK_MONOTONIC on Linux, the same in every process of the machine), in ms. */
export const monoMs = (): number => Number(process.hrtime.bigint()) / 1e6;
