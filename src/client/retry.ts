// Retry discipline for Levee's clients: mobile apps, scripts, and the overload benchmark.
//
// The policy we recommend: retry only what failed in a retryable way (the server says so with
// problem+json `retryable` and `Retry-After`), only when repeating the request is safe (an
// idempotent method, or a write carrying an Idempotency-Key), after an exponential backoff with full
// jitter that never comes back before Retry-After, and only while a retry budget allows it — retries
// stay under ~10 % of requests, so a fleet of clients cannot multiply the load on a server that is
// already overloaded (a retry storm).
//
// No dependencies and no Node built-ins: it runs with fetch in Node, browsers and React Native.
// The core (`decideRetry`, `RetryBudget`, the delay functions) knows nothing of the transport, so the
// benchmark drives it from undici's dispatcher; `fetchWithRetry` wraps any fetch-shaped function.

export type Random = () => number;

export interface Backoff {
  /** Window of the first retry, ms. The window doubles with every retry… */
  baseMs: number;
  /** …up to this, ms. */
  capMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { baseMs: 100, capMs: 10_000 };

/** The backoff window of retry number `attempt` (0 = the first retry): min(cap, base·2^attempt). */
const windowOf = (attempt: number, b: Backoff): number => Math.max(0, Math.min(b.capMs, b.baseMs * 2 ** Math.max(0, Math.floor(attempt) || 0)));

/**
 * Full jitter: a delay drawn uniformly from [0, min(cap, base·2^attempt)). Clients that failed
 * together do not come back together, which plain exponential backoff does not prevent.
 */
export function backoffDelay(attempt: number, backoff: Backoff = DEFAULT_BACKOFF, random: Random = Math.random): number {
  return random() * windowOf(attempt, backoff);
}

/**
 * Retry-After (RFC 9110 §10.2.3: delay-seconds or an HTTP-date) in milliseconds from `nowMs`;
 * undefined when absent or unreadable, 0 for a date in the past.
 */
export function parseRetryAfter(value: string | null | undefined, nowMs: number = Date.now()): number | undefined {
  if (value === null || value === undefined) return undefined;
  const s = value.trim();
  if (/^\d+$/.test(s)) return Number(s) * 1000;
  if (!/[a-z]/i.test(s)) return undefined; // "-1", "1.5", "": not a date either
  const at = Date.parse(s);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

/**
 * The delay before retry number `attempt` (0 = first retry). Without Retry-After it is
 * `backoffDelay`. With it, Retry-After is the floor and the jitter is added on top, drawn over the
 * larger of the backoff window and Retry-After itself (capped): clients told "1 s" at the same
 * moment come back spread over the next second instead of all at once.
 */
export function retryDelay(attempt: number, retryAfterMs: number | undefined, backoff: Backoff = DEFAULT_BACKOFF, random: Random = Math.random): number {
  if (retryAfterMs === undefined) return backoffDelay(attempt, backoff, random);
  const spread = Math.min(backoff.capMs, Math.max(windowOf(attempt, backoff), retryAfterMs));
  return retryAfterMs + random() * spread;
}

export interface RetryBudgetOptions {
  /** Tokens each request deposits: the share of requests that may be retried (0.1 = 10 %). */
  ratio?: number;
  /** Most tokens the bucket holds: retries possible in a burst after a calm period (the floor). */
  maxTokens?: number;
  /** Tokens at start (default: maxTokens). */
  initialTokens?: number;
  /** Tokens added per second regardless of traffic, for clients that send little (default 0). */
  refillPerSecond?: number;
  now?: () => number;
}

/**
 * A retry budget (the token bucket of gRPC's retry throttling and Finagle's RetryBudget): every
 * request deposits `ratio` of a token, every retry spends a whole one, and the bucket holds at most
 * `maxTokens`. Over any stretch of time retries ≤ ratio × requests + maxTokens, however many
 * requests fail. Share one budget per client (per app, or per server it talks to), not per request.
 */
export class RetryBudget {
  readonly ratio: number;
  readonly maxTokens: number;
  private readonly refillPerMs: number;
  private readonly now: () => number;
  private tokens: number;
  private last: number;
  /** Counters, for metrics and tests. */
  requests = 0;
  retries = 0;
  denied = 0;

  constructor(opts: RetryBudgetOptions = {}) {
    this.ratio = opts.ratio ?? 0.1;
    this.maxTokens = opts.maxTokens ?? 10;
    if (!(this.ratio >= 0) || !(this.maxTokens >= 0)) throw new RangeError('RetryBudget: ratio and maxTokens must be ≥ 0');
    this.tokens = Math.min(this.maxTokens, opts.initialTokens ?? this.maxTokens);
    this.refillPerMs = (opts.refillPerSecond ?? 0) / 1000;
    this.now = opts.now ?? Date.now;
    this.last = this.now();
  }

  private refill(): void {
    if (this.refillPerMs === 0) return;
    const t = this.now();
    this.tokens = Math.min(this.maxTokens, this.tokens + Math.max(0, t - this.last) * this.refillPerMs);
    this.last = t;
  }

  /** Call once per request (not per retry). */
  deposit(): void {
    this.requests++;
    this.refill();
    this.tokens = Math.min(this.maxTokens, this.tokens + this.ratio);
  }

  /** Spends a token for one retry; false (and nothing spent) when the budget is exhausted. */
  withdraw(): boolean {
    this.refill();
    if (this.tokens < 1) {
      this.denied++;
      return false;
    }
    this.tokens -= 1;
    this.retries++;
    return true;
  }

  get available(): number {
    this.refill();
    return this.tokens;
  }
}

/** What the retry decision needs to know about the request. */
export interface RequestFacts {
  method: string;
  /** Whether the request carries an Idempotency-Key (the server then replays the first response to a repeat). */
  idempotencyKey?: boolean;
}

/** How one attempt ended. */
export type AttemptOutcome =
  | {
      kind: 'response';
      status: number;
      /** The Retry-After header, as received. */
      retryAfter?: string | null;
      /** problem+json `retryable`, when the body was one. */
      retryable?: boolean;
    }
  /** No answer within the client's timeout. */
  | { kind: 'timeout' }
  /** Connection refused or reset, DNS failure…: the request may or may not have reached the server. */
  | { kind: 'network' };

const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
/** Statuses that mean "not now" whatever the body says: overloaded, rate-limited, or a gateway that got no answer. */
export const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([429, 502, 503, 504]);

/** Repeating the request cannot do the work twice: an idempotent method, or a write with an Idempotency-Key. */
export const safeToRepeat = (req: RequestFacts): boolean => IDEMPOTENT_METHODS.has(req.method.toUpperCase()) || req.idempotencyKey === true;

/**
 * Whether the outcome is a failure worth retrying, ignoring budgets and attempt counts. Timeouts
 * and network errors are; so are 429/502/503/504 and any problem+json with `retryable: true` (e.g.
 * 409 `idempotency_in_progress`). Other 4xx never are: the same request would fail the same way.
 * An explicit `retryable: false` wins over the status.
 */
export function isRetryableOutcome(outcome: AttemptOutcome): boolean {
  if (outcome.kind !== 'response') return true;
  if (outcome.status < 400) return false;
  if (outcome.retryable !== undefined) return outcome.retryable;
  return RETRYABLE_STATUSES.has(outcome.status);
}

export interface RetryPolicy {
  /** Retries after the first attempt (default 2: three attempts in all). */
  maxRetries?: number;
  backoff?: Backoff;
  /** A longer Retry-After is not waited for: the failure goes back to the caller (default 30 s). */
  maxRetryAfterMs?: number;
  /** Shared retry budget; without one only maxRetries bounds retries. */
  budget?: RetryBudget;
  random?: Random;
}

export type RetryDecision =
  | { retry: true; delayMs: number }
  | { retry: false; reason: 'success' | 'not_retryable' | 'unsafe' | 'attempts' | 'retry_after_too_long' | 'budget' };

/**
 * Whether to retry after `outcome`, and when. `retriesSoFar` counts retries already made for this
 * request (0 after the first attempt). Spends a budget token only when it answers `retry: true`.
 */
export function decideRetry(req: RequestFacts, outcome: AttemptOutcome, retriesSoFar: number, policy: RetryPolicy = {}, nowMs: number = Date.now()): RetryDecision {
  if (outcome.kind === 'response' && outcome.status < 400) return { retry: false, reason: 'success' };
  if (!isRetryableOutcome(outcome)) return { retry: false, reason: 'not_retryable' };
  if (!safeToRepeat(req)) return { retry: false, reason: 'unsafe' };
  if (retriesSoFar >= (policy.maxRetries ?? 2)) return { retry: false, reason: 'attempts' };
  const retryAfterMs = outcome.kind === 'response' ? parseRetryAfter(outcome.retryAfter, nowMs) : undefined;
  if (retryAfterMs !== undefined && retryAfterMs > (policy.maxRetryAfterMs ?? 30_000)) return { retry: false, reason: 'retry_after_too_long' };
  if (policy.budget && !policy.budget.withdraw()) return { retry: false, reason: 'budget' };
  return { retry: true, delayMs: retryDelay(retriesSoFar, retryAfterMs, policy.backoff ?? DEFAULT_BACKOFF, policy.random ?? Math.random) };
}

// ---- fetch --------------------------------------------------------------------------------------

/** The parts of a fetch Response used here (fetch in Node/undici, browsers and React Native all fit). */
export interface FetchResponseLike {
  status: number;
  headers: { get(name: string): string | null };
  clone(): { json(): Promise<unknown> };
  body?: { cancel?(): Promise<void> } | null;
}

type HeadersLike = { get(name: string): string | null } | [string, string][] | Record<string, string>;

/** The parts of RequestInit used here. The body must be re-sendable (a string or bytes, not a stream). */
export interface FetchInitLike {
  method?: string;
  headers?: HeadersLike;
  signal?: AbortSignal | null;
}

export interface FetchRetryPolicy extends RetryPolicy {
  /** Per-attempt timeout, ms (default 10 s; 0 for none). */
  timeoutMs?: number;
  /** Called before each retry is scheduled (logging, metrics). */
  onRetry?: (info: { attempt: number; delayMs: number; outcome: AttemptOutcome }) => void;
  /** For tests: how to wait. */
  sleep?: (ms: number, signal?: AbortSignal | null) => Promise<void>;
}

/** Thrown when an attempt got no answer within `timeoutMs` and no retry followed. */
export class AttemptTimeoutError extends Error {
  constructor(ms: number) {
    super(`no response within ${ms} ms`);
    this.name = 'TimeoutError';
  }
}

function headerOf(headers: HeadersLike | undefined, name: string): string | undefined {
  if (!headers) return undefined;
  if (typeof (headers as { get?: unknown }).get === 'function') return (headers as { get(n: string): string | null }).get(name) ?? undefined;
  const entries = Array.isArray(headers) ? headers : Object.entries(headers);
  return entries.find(([k]) => k.toLowerCase() === name)?.[1];
}

const abortError = (signal: AbortSignal): unknown => signal.reason ?? new Error('aborted');

const defaultSleep = (ms: number, signal?: AbortSignal | null) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/**
 * `fetchFn(url, init)` with the recommended retry policy. Returns the last response (a non-retried
 * error status is returned, not thrown, as fetch does); throws the last network error or an
 * AttemptTimeoutError when no attempt got an answer. The caller's `init.signal` aborts everything,
 * including a wait between attempts. Pass one shared `budget` for the whole client.
 */
export async function fetchWithRetry<R extends FetchResponseLike, I extends FetchInitLike>(
  fetchFn: (url: string, init: I) => Promise<R>,
  url: string,
  init: I,
  policy: FetchRetryPolicy = {},
): Promise<R> {
  const req: RequestFacts = { method: init.method ?? 'GET', idempotencyKey: headerOf(init.headers, 'idempotency-key') !== undefined };
  const timeoutMs = policy.timeoutMs ?? 10_000;
  const sleep = policy.sleep ?? defaultSleep;
  const outer = init.signal ?? undefined;
  policy.budget?.deposit();
  for (let retries = 0; ; retries++) {
    const ac = new AbortController();
    let timedOut = false;
    const onOuterAbort = () => ac.abort(abortError(outer!));
    if (outer?.aborted) throw abortError(outer);
    outer?.addEventListener('abort', onOuterAbort, { once: true });
    const timer =
      timeoutMs > 0
        ? setTimeout(() => {
            timedOut = true;
            ac.abort(new AttemptTimeoutError(timeoutMs));
          }, timeoutMs)
        : undefined;

    let outcome: AttemptOutcome;
    let response: R | undefined;
    let failure: unknown;
    try {
      response = await fetchFn(url, { ...init, signal: ac.signal });
      let retryable: boolean | undefined;
      if (response.status >= 400 && /problem\+json/i.test(response.headers.get('content-type') ?? '')) {
        try {
          const body = await response.clone().json();
          const r = (body as { retryable?: unknown } | null)?.retryable;
          if (typeof r === 'boolean') retryable = r;
        } catch {
          /* not JSON after all: judge by status */
        }
      }
      outcome = { kind: 'response', status: response.status, retryAfter: response.headers.get('retry-after'), retryable };
    } catch (e) {
      if (outer?.aborted) throw abortError(outer);
      failure = timedOut ? new AttemptTimeoutError(timeoutMs) : e;
      outcome = timedOut ? { kind: 'timeout' } : { kind: 'network' };
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener('abort', onOuterAbort);
    }

    const decision = decideRetry(req, outcome, retries, policy);
    if (!decision.retry) {
      if (response) return response;
      throw failure;
    }
    try {
      await response?.body?.cancel?.(); // free the connection of a response we drop
    } catch {
      /* already consumed */
    }
    policy.onRetry?.({ attempt: retries + 1, delayMs: decision.delayMs, outcome });
    await sleep(decision.delayMs, outer);
  }
}
