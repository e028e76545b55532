import * as hdr from 'hdr-histogram-js';
import { CLASSES, KINDS, type ClassName, type ClassSummary, type Kind, type Latency, type PhaseResult, type WindowStats } from './protocol.js';

// Accumulators for the load generator: per phase, per class and per one-second window. Latencies
// are recorded in microseconds in HdrHistograms (bounded memory whatever the request count).

const MAX_US = 120_000_000;
export const histogram = (digits: 2 | 3 = 3) => hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: MAX_US, numberOfSignificantValueDigits: digits, autoResize: false });
type Histogram = ReturnType<typeof histogram>;

export const recordMs = (h: Histogram, ms: number) => h.recordValue(Math.min(MAX_US, Math.max(1, Math.round(ms * 1000))));
const pctMs = (h: Histogram, p: number) => (h.totalCount === 0 ? 0 : h.getValueAtPercentile(p) / 1000);

export class ClassAcc {
  attempts = 0;
  requests = 0;
  succeeded = 0;
  ok = 0;
  good = 0;
  timeouts = 0;
  errors = 0;
  status: Record<string, number> = {};
  readonly hist = histogram();

  summary(): ClassSummary {
    const latency: Latency = { p50: pctMs(this.hist, 50), p99: pctMs(this.hist, 99), p999: pctMs(this.hist, 99.9), max: this.hist.totalCount ? this.hist.maxValue / 1000 : 0 };
    const { attempts, requests, succeeded, ok, good, timeouts, errors, status } = this;
    return { attempts, requests, succeeded, ok, good, timeouts, errors, status, latency };
  }
}

/** Sums summaries (percentiles cannot be summed: the caller passes a histogram-based summary for those). */
export function mergeCounts(parts: ClassSummary[], latency: Latency): ClassSummary {
  const out: ClassSummary = { attempts: 0, requests: 0, succeeded: 0, ok: 0, good: 0, timeouts: 0, errors: 0, status: {}, latency };
  for (const p of parts) {
    out.attempts += p.attempts;
    out.requests += p.requests;
    out.succeeded += p.succeeded;
    out.ok += p.ok;
    out.good += p.good;
    out.timeouts += p.timeouts;
    out.errors += p.errors;
    for (const [k, v] of Object.entries(p.status)) out.status[k] = (out.status[k] ?? 0) + v;
  }
  return out;
}

export class PhaseAcc {
  readonly byClass = CLASSES.map(() => new ClassAcc());
  readonly byKind = Object.fromEntries(KINDS.map((k) => [k, { attempts: 0, ok: 0 }])) as Record<Kind, { attempts: number; ok: number }>;
  /** All 2xx latencies of the phase, for percentiles over every class. */
  readonly allHist = histogram();
  readonly lag = histogram();
  sent = 0;
  retries = 0;
  retriesDenied = 0;
  refreshUnderflow = 0;
  sessionsLost = 0;
  maxInFlight = 0;
  sentWhileSaturated = 0;
  skipped = 0;
  queueFull = 0;
  cpu = 0;
  elu = 0;

  constructor(
    readonly name: string,
    readonly rate: number,
    readonly seconds: number,
  ) {}

  result(): PhaseResult {
    const byClass = Object.fromEntries(CLASSES.map((c, i) => [c, this.byClass[i]!.summary()])) as Record<ClassName, ClassSummary>;
    const h = this.allHist;
    const all = mergeCounts(Object.values(byClass), { p50: pctMs(h, 50), p99: pctMs(h, 99), p999: pctMs(h, 99.9), max: h.totalCount ? h.maxValue / 1000 : 0 });
    return {
      name: this.name,
      rate: this.rate,
      seconds: this.seconds,
      sendRate: this.sent / this.seconds,
      retries: this.retries,
      retriesDenied: this.retriesDenied,
      refreshUnderflow: this.refreshUnderflow,
      sessionsLost: this.sessionsLost,
      all,
      byClass,
      byKind: this.byKind,
      lag: { p50: pctMs(this.lag, 50), p99: pctMs(this.lag, 99), max: this.lag.totalCount ? this.lag.maxValue / 1000 : 0 },
      cpu: this.cpu,
      elu: this.elu,
      maxInFlight: this.maxInFlight,
      sentWhileSaturated: this.sentWhileSaturated,
      skipped: this.skipped,
      queueFull: this.queueFull,
    };
  }
}

export class WindowAcc {
  attempts = 0;
  ok = 0;
  good = 0;
  failed = 0;
  criticalAttempts = 0;
  criticalOk = 0;
  lagMax = 0;
  readonly hist = histogram(2);

  constructor(
    readonly t: number,
    readonly phase: number,
  ) {}

  result(): WindowStats {
    const { t, phase, attempts, ok, good, failed, criticalAttempts, criticalOk, lagMax } = this;
    return { t, phase, attempts, ok, good, failed, criticalAttempts, criticalOk, p99: pctMs(this.hist, 99), lagMax };
  }
}
