import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { Pool, type Dispatcher } from 'undici';
import { decideRetry, RetryBudget, type AttemptOutcome } from '../../src/client/retry.js';
import { FEED_PATH } from '../workloads.js';
import type { ClassName, InitSpec, Kind, Mix, Phase, Policy, RunResult, RunSpec } from './protocol.js';
import { CLASSES } from './protocol.js';
import { PhaseAcc, recordMs, WindowAcc } from './stats.js';

// The open-model load generator of `npm run bench:overload`. It runs in its own process
// (gen-process.ts, forked by the orchestrator) so that its CPU use and event-loop lag are measured apart from everything else.
//
// Open model: arrivals follow a fixed schedule (evenly spaced at the phase's rate) whatever the
// server answers; a 1 ms tick sends everything that is due. Latency is measured from the scheduled
// time, not from the actual send, so a slow server (or a slow generator) cannot hide its queueing
// (no coordinated omission); the generator's own lag behind the schedule is reported beside it.
// Each attempt has a client timeout; a timed-out request is aborted, as a mobile client would.
//
// The mix (InitSpec.mix, BENCH_MIX): feed reads (of which 65 % first page — class default, 20 % a
// later page with a cursor from an earlier answer — sheddable, 15 % a prefetch of the first page
// sent with `Levee-Priority: sheddable`), writes (POST with an Idempotency-Key — critical) and token
// refreshes (each refresh token is used once; the new one goes back to the pool — critical).
const weights = (m: Mix): { kind: Kind; weight: number }[] => [
  { kind: 'feed', weight: m.reads * 0.65 },
  { kind: 'page', weight: m.reads * 0.2 },
  { kind: 'prefetch', weight: m.reads * 0.15 },
  { kind: 'write', weight: m.writes },
  { kind: 'refresh', weight: m.refreshes },
];
const CLASS_OF: Record<Kind, ClassName> = { feed: 'default', page: 'sheddable', prefetch: 'sheddable', write: 'critical', refresh: 'critical' };
const CLASS_INDEX: Record<ClassName, number> = { critical: CLASSES.indexOf('critical'), default: CLASSES.indexOf('default'), sheddable: CLASSES.indexOf('sheddable') };
const CRITICAL = CLASS_INDEX.critical;

/** Bounds on one run, whatever it is asked: time and request count. */
const MAX_RUN_SECONDS = 3_600;
const MAX_ARRIVALS = 20_000_000;
/** Most sends per tick before yielding to I/O (a generator far behind must still read answers). */
const MAX_SENDS_PER_TICK = 1_000;
const NAIVE_RETRIES = 3;
/** In flight at most this many times the connection count (the rest waits in undici's queue). */
const QUEUE_FACTOR = 4;
const CURSOR_RING = 512;

/** Deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One logical request: what the user wanted. Retries resend the same method, path, headers and body. */
interface Req {
  kind: Kind;
  cls: number;
  method: 'GET' | 'POST';
  path: string;
  headers: Record<string, string>;
  body: string | undefined;
  /** refresh: the token this request presents (kept for a retry). */
  token: string | undefined;
  retries: number;
  /** Phase of the first attempt: where the logical outcome is counted. */
  phase: number;
}

const TIMED_OUT = new Error('client timeout');

/** One attempt of a request, and its undici dispatch handler. */
class Attempt implements Dispatcher.DispatchHandler {
  sentAt = 0;
  done = false;
  controller: Dispatcher.DispatchController | null = null;
  status = 0;
  retryAfter: string | undefined;
  chunks: Buffer[] | null = null;

  constructor(
    readonly gen: Generator,
    readonly req: Req,
    /** When the schedule wanted it sent (performance.now() ms). */
    readonly scheduled: number,
    readonly phase: number,
    readonly window: number,
  ) {}

  onRequestStart(controller: Dispatcher.DispatchController): void {
    if (this.done) controller.abort(TIMED_OUT); // timed out while waiting in undici's queue
    else this.controller = controller;
  }

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    this.status = statusCode;
    const ra = headers['retry-after'];
    this.retryAfter = Array.isArray(ra) ? ra[0] : ra;
    if (this.gen.wantsBody(this, String(headers['content-type'] ?? ''))) this.chunks = [];
  }

  onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer): void {
    this.chunks?.push(chunk);
  }

  onResponseEnd(): void {
    this.gen.finish(this, { kind: 'response', status: this.status, retryAfter: this.retryAfter });
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    if (err !== TIMED_OUT) this.gen.finish(this, { kind: 'network' });
  }
}

/** A small binary min-heap of retries by due time. */
class RetryQueue {
  private items: { at: number; req: Req }[] = [];
  get size() {
    return this.items.length;
  }
  peek() {
    return this.items[0];
  }
  push(at: number, req: Req) {
    const a = this.items;
    a.push({ at, req });
    for (let i = a.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (a[p]!.at <= a[i]!.at) break;
      [a[p], a[i]] = [a[i]!, a[p]!];
      i = p;
    }
  }
  pop() {
    const a = this.items;
    const top = a[0];
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && a[l]!.at < a[m]!.at) m = l;
        if (r < a.length && a[r]!.at < a[m]!.at) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i]!, a[m]!];
        i = m;
      }
    }
    return top;
  }
  clear() {
    const n = this.items.length;
    this.items = [];
    return n;
  }
}

export class Generator {
  private pool: Pool | undefined;
  private origin = '';
  private readonly random: () => number;
  private readonly keyPrefix = randomBytes(6).toString('base64url');
  private readonly feedHeaders: Record<string, string>[];
  private readonly prefetchHeaders: Record<string, string>[];
  private readonly sessions: string[] = [];
  private readonly cursors: string[] = [];
  private seq = 0;

  // State of the current run.
  private policy: Policy = 'none';
  private budget = new RetryBudget();
  private phases: PhaseAcc[] = [];
  private windows: WindowAcc[] = [];
  private phaseStarts: number[] = [];
  private start = 0;
  private inFlight = 0;
  private timeouts: Attempt[] = [];
  private timeoutHead = 0;
  private retryQueue = new RetryQueue();
  private closed: { concurrency: number; end: number } | undefined;
  /** Most attempts in flight, connections plus undici's queue: past it the generator itself is the bottleneck. */
  private readonly queueCap: number;

  private readonly mix: { kind: Kind; weight: number }[];

  constructor(private readonly spec: InitSpec) {
    this.mix = weights(spec.mix);
    this.queueCap = spec.connections * QUEUE_FACTOR;
    this.random = prng(spec.seed);
    this.feedHeaders = spec.accessTokens.map((t) => ({ authorization: `Bearer ${t}` }));
    this.prefetchHeaders = spec.accessTokens.map((t) => ({ authorization: `Bearer ${t}`, 'levee-priority': 'sheddable' }));
  }

  addSessions(tokens: string[]) {
    for (const t of tokens) this.sessions.push(t);
  }

  /** The connection pool for `url` (a new one when the server moved to another port). */
  private async target(url: string): Promise<Pool> {
    const u = new URL(url);
    if (u.hostname !== '127.0.0.1') throw new Error(`the load generator only sends to 127.0.0.1, not ${u.hostname}`);
    if (this.pool && this.origin === u.origin) return this.pool;
    await this.pool?.destroy();
    this.origin = u.origin;
    this.pool = new Pool(u.origin, { connections: this.spec.connections, pipelining: 1, keepAliveTimeout: 30_000, connectTimeout: this.spec.timeoutMs });
    return this.pool;
  }

  async close() {
    await this.pool?.destroy();
  }

  // ---- building requests ---------------------------------------------------------------------

  private userIndex() {
    return Math.floor(this.random() * this.spec.accessTokens.length);
  }

  private pickKind(): Kind {
    let x = this.random();
    for (const m of this.mix) {
      if (x < m.weight) return m.kind;
      x -= m.weight;
    }
    return 'feed';
  }

  private newRequest(phase: number): Req | undefined {
    const kind = this.pickKind();
    const u = this.userIndex();
    const req: Req = { kind, cls: CLASS_INDEX[CLASS_OF[kind]], method: 'GET', path: FEED_PATH, headers: this.feedHeaders[u]!, body: undefined, token: undefined, retries: 0, phase };
    switch (kind) {
      case 'page': {
        const c = this.cursors.length ? this.cursors[Math.floor(this.random() * this.cursors.length)]! : undefined;
        if (c) req.path = `${FEED_PATH}&cursor=${encodeURIComponent(c)}`;
        break;
      }
      case 'prefetch':
        req.headers = this.prefetchHeaders[u]!;
        break;
      case 'write': {
        const n = ++this.seq;
        req.method = 'POST';
        req.path = '/v1/collections/posts/documents';
        req.headers = { ...this.feedHeaders[u]!, 'content-type': 'application/json', 'idempotency-key': `ovl-${this.keyPrefix}-${n}` };
        req.body = JSON.stringify({ title: `Overload post ${n}`, body: 'Posted by the overload benchmark while the server is under load.', tags: ['bench'] });
        break;
      }
      case 'refresh': {
        const token = this.sessions.pop();
        if (token === undefined) {
          this.phases[phase]!.refreshUnderflow++;
          return undefined;
        }
        req.method = 'POST';
        req.path = '/v1/auth/refresh';
        req.headers = { 'content-type': 'application/json' };
        req.body = JSON.stringify({ refreshToken: token });
        req.token = token;
        break;
      }
    }
    return req;
  }

  /** Whether to keep the body of this answer: tokens, cursors (a sample) and problem+json (for the retry decision). */
  wantsBody(a: Attempt, contentType: string): boolean {
    if (a.status >= 400) return this.policy === 'disciplined' && contentType.includes('problem+json');
    if (a.status !== 200 && a.status !== 201) return false;
    if (a.req.kind === 'refresh') return true;
    if (a.req.kind === 'feed' || a.req.kind === 'page') return this.cursors.length < CURSOR_RING || this.random() < 0.05;
    return false;
  }

  // ---- sending and finishing -----------------------------------------------------------------

  private phaseOf(t: number): number {
    let i = 0;
    while (i + 1 < this.phaseStarts.length && t >= this.phaseStarts[i + 1]!) i++;
    return i;
  }

  private windowAt(index: number): WindowAcc {
    for (let i = this.windows.length; i <= index; i++) this.windows[i] = new WindowAcc(i, this.phaseOf(this.start + i * 1000));
    return this.windows[index]!;
  }

  /** Counts an attempt (first try or retry) as scheduled, and returns it in flight. */
  private begin(req: Req, scheduled: number, now: number): Attempt {
    const phase = this.phaseOf(scheduled);
    const wi = Math.max(0, Math.floor((scheduled - this.start) / 1000));
    const a = new Attempt(this, req, scheduled, phase, wi);
    const p = this.phases[phase]!;
    const c = p.byClass[req.cls]!;
    c.attempts++;
    if (req.retries === 0) c.requests++;
    else p.retries++;
    p.byKind[req.kind].attempts++;
    const w = this.windowAt(wi);
    w.attempts++;
    if (req.cls === CRITICAL) w.criticalAttempts++;
    const lag = now - scheduled;
    recordMs(p.lag, lag);
    if (lag > w.lagMax) w.lagMax = lag;
    this.inFlight++;
    if (this.inFlight > p.maxInFlight) p.maxInFlight = this.inFlight;
    a.sentAt = now;
    return a;
  }

  private send(req: Req, scheduled: number, now: number) {
    const late = now - scheduled >= this.spec.timeoutMs;
    const full = this.inFlight >= this.queueCap;
    const a = this.begin(req, scheduled, now);
    const p = this.phases[a.phase]!;
    if (late || full) {
      // A retry the generator could not send in time, or with its own queue full: it fails
      // without reaching the server, as it would on a device that gave up.
      if (late) p.skipped++;
      else p.queueFull++;
      this.finish(a, late ? { kind: 'timeout' } : { kind: 'network' });
      return;
    }
    p.sent++;
    if (this.inFlight > this.spec.connections) p.sentWhileSaturated++;
    this.timeouts.push(a);
    try {
      this.pool!.dispatch({ path: req.path, method: req.method, headers: req.headers, body: req.body ?? null, headersTimeout: this.spec.timeoutMs * 2, bodyTimeout: this.spec.timeoutMs * 2 }, a);
    } catch {
      this.finish(a, { kind: 'network' });
    }
  }

  finish(a: Attempt, outcome: AttemptOutcome) {
    if (a.done) return;
    a.done = true;
    this.inFlight--;
    const now = performance.now();
    const latency = now - a.scheduled;
    const p = this.phases[a.phase]!;
    const c = p.byClass[a.req.cls]!;
    const w = this.windows[a.window]!;
    const ok = outcome.kind === 'response' && outcome.status >= 200 && outcome.status < 300;
    if (outcome.kind === 'response') {
      const key = String(outcome.status);
      c.status[key] = (c.status[key] ?? 0) + 1;
    } else if (outcome.kind === 'timeout') c.timeouts++;
    else c.errors++;
    if (ok) {
      c.ok++;
      p.byKind[a.req.kind].ok++;
      recordMs(c.hist, latency);
      recordMs(p.allHist, latency);
      recordMs(w.hist, latency);
      w.ok++;
      if (a.req.cls === CRITICAL) w.criticalOk++;
      if (latency <= this.spec.objectiveMs) {
        c.good++;
        w.good++;
      }
    } else {
      w.failed++;
    }
    const body = a.chunks ? Buffer.concat(a.chunks).toString() : undefined;
    a.chunks = null;
    if (outcome.kind === 'response' && body !== undefined && outcome.status >= 400) {
      const m = /"retryable":(true|false)/.exec(body);
      if (m) outcome.retryable = m[1] === 'true';
    }
    if (ok && body !== undefined && (a.req.kind === 'feed' || a.req.kind === 'page')) {
      const m = /"nextCursor":"([^"]+)"/.exec(body);
      if (m) {
        if (this.cursors.length < CURSOR_RING) this.cursors.push(m[1]!);
        else this.cursors[Math.floor(this.random() * CURSOR_RING)] = m[1]!;
      }
    }

    const delay = ok ? undefined : this.retryDelay(a.req, outcome, p);
    if (delay !== undefined) {
      a.req.retries++;
      this.retryQueue.push(now + delay, a.req);
      return;
    }
    // Final outcome of the logical request.
    if (ok) this.phases[a.req.phase]!.byClass[a.req.cls]!.succeeded++;
    if (a.req.kind === 'refresh') this.settleSession(a.req, outcome, body);
    if (this.closed && now < this.closed.end) this.launch(now, now);
  }

  /** Milliseconds until a retry, or undefined for none, by the run's client policy. */
  private retryDelay(req: Req, outcome: AttemptOutcome, p: PhaseAcc): number | undefined {
    if (this.policy === 'none') return undefined;
    if (this.policy === 'naive') {
      const retryable = outcome.kind !== 'response' || outcome.status >= 500 || outcome.status === 429;
      return retryable && req.retries < NAIVE_RETRIES ? 0 : undefined;
    }
    const d = decideRetry({ method: req.method, idempotencyKey: req.kind === 'write' }, outcome, req.retries, {
      budget: this.budget,
      maxRetries: 2,
      backoff: { baseMs: 100, capMs: 2_000 },
      maxRetryAfterMs: 5_000,
      random: this.random,
    });
    if (!d.retry && d.reason === 'budget') p.retriesDenied++;
    return d.retry ? d.delayMs : undefined;
  }

  /** A refresh is over: keep the new token, give back one the server did not consume, or count the session lost. */
  private settleSession(req: Req, outcome: AttemptOutcome, body: string | undefined) {
    const p = this.phases[req.phase]!;
    if (outcome.kind === 'response' && outcome.status === 200) {
      const m = body ? /"refreshToken":"([^"]+)"/.exec(body) : null;
      if (m) this.sessions.push(m[1]!);
      else p.sessionsLost++;
    } else if (outcome.kind === 'response' && (outcome.status === 429 || outcome.status === 503)) {
      this.sessions.push(req.token!); // refused before it was used: still valid
    } else {
      p.sessionsLost++; // timed out, 401 (revoked), 5xx after the work may have run: never reuse the token
    }
  }

  private launch(scheduled: number, now: number) {
    const phase = this.phaseOf(scheduled);
    // An arrival already a client timeout behind would time out before it could be answered: count
    // it as a timeout without sending it, so a generator that fell behind does not burst a backlog
    // of doomed requests at the server (and into the next phase).
    if (now - scheduled >= this.spec.timeoutMs) return this.skip(phase, scheduled, 'late');
    if (this.inFlight >= this.queueCap) return this.skip(phase, scheduled, 'full');
    const req = this.newRequest(phase);
    if (req) this.send(req, scheduled, now);
  }

  /** An arrival not sent: counted as a timeout (too late) or a connection error (the generator's queue is full). */
  private skip(phase: number, scheduled: number, why: 'late' | 'full') {
    const kind = this.pickKind();
    const cls = CLASS_INDEX[CLASS_OF[kind]];
    const p = this.phases[phase]!;
    const c = p.byClass[cls]!;
    c.attempts++;
    c.requests++;
    if (why === 'late') {
      c.timeouts++;
      p.skipped++;
    } else {
      c.errors++;
      p.queueFull++;
    }
    p.byKind[kind].attempts++;
    const w = this.windowAt(Math.max(0, Math.floor((scheduled - this.start) / 1000)));
    w.attempts++;
    w.failed++;
    if (cls === CRITICAL) w.criticalAttempts++;
  }

  private expireTimeouts(now: number) {
    const q = this.timeouts;
    while (this.timeoutHead < q.length && q[this.timeoutHead]!.sentAt + this.spec.timeoutMs <= now) {
      const a = q[this.timeoutHead++]!;
      if (a.done) continue;
      this.finish(a, { kind: 'timeout' });
      a.controller?.abort(TIMED_OUT);
    }
    if (this.timeoutHead > 50_000) {
      this.timeouts = q.slice(this.timeoutHead);
      this.timeoutHead = 0;
    }
  }

  // ---- a run -----------------------------------------------------------------------------------

  async run(spec: RunSpec, onPhase: (index: number) => void): Promise<RunResult> {
    const total = spec.phases.reduce((s, p) => s + p.seconds, 0);
    const arrivals = spec.closedConcurrency ? 0 : spec.phases.reduce((s, p) => s + Math.round(p.rate * p.seconds), 0);
    if (total <= 0 || total > MAX_RUN_SECONDS) throw new Error(`run length ${total} s is out of bounds (0, ${MAX_RUN_SECONDS}]`);
    if (arrivals > MAX_ARRIVALS) throw new Error(`run of ${arrivals} requests is over the bound of ${MAX_ARRIVALS}`);

    await this.target(spec.url);
    this.policy = spec.policy;
    this.budget = new RetryBudget({ ratio: 0.1, maxTokens: 10 });
    this.phases = spec.phases.map((p: Phase) => new PhaseAcc(p.name, p.rate, p.seconds));
    this.windows = [];
    this.timeouts = [];
    this.timeoutHead = 0;
    this.retryQueue = new RetryQueue();
    this.start = performance.now() + 10;
    this.phaseStarts = [];
    let acc = this.start;
    for (const p of spec.phases) {
      this.phaseStarts.push(acc);
      acc += p.seconds * 1000;
    }
    const end = acc;
    const drainUntil = end + this.spec.timeoutMs + 500;
    this.closed = spec.closedConcurrency ? { concurrency: spec.closedConcurrency, end } : undefined;

    // Arrival k of phase i is due at phaseStarts[i] + k / rate.
    let phaseIdx = 0;
    let k = 0;
    const counts = spec.phases.map((p) => (spec.closedConcurrency ? 0 : Math.round(p.rate * p.seconds)));
    const due = () => this.phaseStarts[phaseIdx]! + (k * 1000) / spec.phases[phaseIdx]!.rate;
    const skipEmpty = () => {
      while (phaseIdx < counts.length && k >= counts[phaseIdx]!) {
        phaseIdx++;
        k = 0;
      }
    };
    skipEmpty();

    // Phase bookkeeping: CPU and event-loop utilisation between phase boundaries.
    let current = -1;
    let lastClosed = false;
    let cpuMark = process.cpuUsage();
    let eluMark = performance.eventLoopUtilization();
    let wallMark = performance.now();
    const closePhase = (now: number) => {
      if (current < 0) return;
      const cpu = process.cpuUsage(cpuMark);
      const wall = (now - wallMark) / 1000;
      this.phases[current]!.cpu = (cpu.user + cpu.system) / 1e6 / wall;
      this.phases[current]!.elu = performance.eventLoopUtilization(eluMark).utilization;
    };
    const enterPhase = (i: number, now: number) => {
      closePhase(now);
      current = i;
      cpuMark = process.cpuUsage();
      eluMark = performance.eventLoopUtilization();
      wallMark = now;
      onPhase(i);
    };

    return new Promise<RunResult>((resolve, reject) => {
      const tick = () => {
        try {
          const now = performance.now();
          if (current + 1 < this.phaseStarts.length && now >= this.phaseStarts[current + 1]!) {
            enterPhase(current + 1, now);
            if (this.closed && current === 0) for (let i = 0; i < this.closed.concurrency; i++) this.launch(now, now);
          }
          if (!lastClosed && current === this.phaseStarts.length - 1 && now >= end) {
            closePhase(now);
            lastClosed = true;
          }

          let sends = 0;
          for (; phaseIdx < counts.length && sends < MAX_SENDS_PER_TICK; sends++) {
            const t = due();
            if (t > now) break;
            this.launch(t, now);
            k++;
            skipEmpty();
          }
          // Retries follow the schedule too: none is sent once the schedule is over (they count as abandoned).
          for (let r = this.retryQueue.peek(); r && r.at <= now && sends < MAX_SENDS_PER_TICK && now < end; r = this.retryQueue.peek(), sends++) {
            this.retryQueue.pop();
            this.send(r.req, r.at, now);
          }
          this.expireTimeouts(now);

          const scheduleDone = phaseIdx >= counts.length && now >= end;
          if (scheduleDone && (this.inFlight === 0 || now >= drainUntil)) {
            const abandoned = this.inFlight + this.retryQueue.clear();
            for (const a of this.timeouts.slice(this.timeoutHead)) {
              if (!a.done) {
                a.done = true;
                a.controller?.abort(TIMED_OUT);
              }
            }
            this.inFlight = 0;
            resolve({
              policy: spec.policy,
              phases: this.phases.map((p) => p.result()),
              windows: this.windows.filter(Boolean).map((w) => w.result()),
              sessionsLeft: this.sessions.length,
              abandoned,
            });
            return;
          }
          if (sends >= MAX_SENDS_PER_TICK) setImmediate(tick);
          else setTimeout(tick, 1);
        } catch (e) {
          reject(e);
        }
      };
      setTimeout(tick, Math.max(0, this.start - performance.now()));
    });
  }
}
