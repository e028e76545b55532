// Messages between the overload benchmark's orchestrator (main.ts / scenario.ts) and its load
// generator (generator.ts, a separate process so that its CPU use and event-loop lag are its own),
// and the shape of the results the generator sends back.

/** Admission classes, as the server should classify the requests (see the mix in generator.ts). */
export const CLASSES = ['critical', 'default', 'sheddable'] as const;
export type ClassName = (typeof CLASSES)[number];

/** What a request does: feed first page, a later page (cursor), a prefetch, a write, a token refresh. */
export const KINDS = ['feed', 'page', 'prefetch', 'write', 'refresh'] as const;
export type Kind = (typeof KINDS)[number];

/** Client retry behaviour: none; "naive" (retry at once on timeout/503/network error, up to 3 times); "disciplined" (src/client/retry.ts). */
export type Policy = 'none' | 'naive' | 'disciplined';

/** A stretch of constant offered load (open model), or of fixed concurrency (closed model, `rate` ignored). */
export interface Phase {
  name: string;
  rate: number;
  seconds: number;
}

export interface RunSpec {
  id: number;
  /** Base URL of the server (it changes when the server is restarted on another port). */
  url: string;
  phases: Phase[];
  policy: Policy;
  /** Closed model: keep this many requests in flight instead of following a schedule (capacity estimate). */
  closedConcurrency?: number;
}

/** Shares of the three request families (they sum to 1); feed reads split 65/20/15 into first page, later page, prefetch. */
export interface Mix {
  reads: number;
  writes: number;
  refreshes: number;
}

export interface InitSpec {
  accessTokens: string[];
  mix: Mix;
  connections: number;
  timeoutMs: number;
  objectiveMs: number;
  seed: number;
}

export type ToGenerator =
  | { type: 'init'; spec: InitSpec }
  | { type: 'sessions'; tokens: string[] }
  | { type: 'run'; spec: RunSpec }
  | { type: 'exit' };

export type FromGenerator =
  | { type: 'ready' }
  | { type: 'phase'; runId: number; index: number }
  | { type: 'done'; runId: number; result: RunResult }
  | { type: 'error'; message: string };

/** Latency percentiles in ms (from the scheduled send time), of 2xx answers only. */
export interface Latency {
  p50: number;
  p99: number;
  p999: number;
  max: number;
}

export interface ClassSummary {
  /** Attempts whose scheduled time fell in the phase (first tries and retries). */
  attempts: number;
  /** Logical requests (first tries) scheduled in the phase. */
  requests: number;
  /** Logical requests that ended in a 2xx (after retries, if any). */
  succeeded: number;
  /** 2xx answers (attempts). */
  ok: number;
  /** 2xx answers within the objective, from the attempt's scheduled time. */
  good: number;
  timeouts: number;
  /** Connection errors (refused, reset…). */
  errors: number;
  status: Record<string, number>;
  latency: Latency;
}

export interface WindowStats {
  /** Seconds from the start of the run (by scheduled time). */
  t: number;
  phase: number;
  attempts: number;
  ok: number;
  good: number;
  /** Non-2xx answers, timeouts and connection errors. */
  failed: number;
  criticalAttempts: number;
  criticalOk: number;
  /** p99 of 2xx latency in the window, ms. */
  p99: number;
  /** Generator lag behind schedule, worst in the window, ms. */
  lagMax: number;
}

export interface PhaseResult {
  name: string;
  rate: number;
  seconds: number;
  /** Attempts actually sent per second (first tries and retries). */
  sendRate: number;
  /** Retries sent (attempts after the first), by their scheduled time. */
  retries: number;
  /** Retries the policy wanted but the budget refused. */
  retriesDenied: number;
  /** Refreshes skipped because no unused refresh token was left (a bench limit, not a server failure). */
  refreshUnderflow: number;
  /** Sessions the generator lost: refresh timed out (the new token may have been issued), 504, or 401 (revoked). */
  sessionsLost: number;
  all: ClassSummary;
  byClass: Record<ClassName, ClassSummary>;
  byKind: Record<Kind, { attempts: number; ok: number }>;
  /** Generator lag behind schedule, ms. */
  lag: { p50: number; p99: number; max: number };
  /** Generator CPU, cores (process.cpuUsage over the phase), and event-loop utilisation. */
  cpu: number;
  elu: number;
  maxInFlight: number;
  /** Attempts sent while every connection was busy (they waited in undici's queue, inside the client). */
  sentWhileSaturated: number;
  /** Arrivals not sent because the generator was already a client timeout behind them (counted as timeouts). */
  skipped: number;
  /** Attempts not sent because the generator already had 4× its connections in flight (counted as connection errors). */
  queueFull: number;
}

export interface RunResult {
  policy: Policy;
  phases: PhaseResult[];
  windows: WindowStats[];
  /** Unused refresh tokens left in the generator's pool. */
  sessionsLeft: number;
  /** Requests still unanswered, or retries not yet sent, when the drain period ended. */
  abandoned: number;
}
