import { performance } from 'node:perf_hooks';
import { GradientLimit, type LimitOptions } from './gradient-limit.js';

// Admission control: how many requests run at once, and who waits or is turned away past that.
//
// Written here rather than taken from a library: Netflix's concurrency-limits (Java) and Envoy's
// adaptive concurrency filter have no maintained Node counterpart, and the npm packages that exist
// either use a fixed limit or have no priority classes or bounded, deadline-aware queue.
//
// - The limit adapts to observed latency (GradientLimit): when requests start to queue somewhere
//   downstream (the database pool, the CPU), latency rises above its long-run level and the limit
//   shrinks, so excess load waits here — cheaply, before its body is read — instead of everywhere.
// - Past the limit a request waits in a short queue. Each priority class has a wait budget; what
//   waited past its budget is dropped first. Once the queue has not emptied for a whole interval
//   (CoDel's signal of a standing queue) it serves the newest waiter first (adaptive LIFO): the
//   oldest ones are the most likely to have given up already.
// - Classes: `critical` (sign-in, refresh, writes) may use every slot and waits longest;
//   `sheddable` (prefetch, later pages) only starts while a quarter of the slots are free and
//   nobody waits, and is the first evicted when the queue is full.

export type Priority = 'critical' | 'default' | 'sheddable';
export const PRIORITIES: readonly Priority[] = ['critical', 'default', 'sheddable'];
const RANK: Record<Priority, number> = { critical: 0, default: 1, sheddable: 2 };

export type Rejection = 'queue_full' | 'queue_timeout' | 'evicted';

export interface AdmissionOptions extends LimitOptions {
  queueSize: number;
  /** Wait budget of a `default` request; `critical` gets 3×, `sheddable` ¼. */
  queueWaitMs: number;
  /** A queue that has not emptied for this long is a standing queue: serve newest first. */
  congestionIntervalMs?: number;
  now?: () => number;
}

export interface Ticket {
  /** Call once when the request is done; `ok: false` for failures that signal overload (timeouts). */
  release(sample?: { ok: boolean }): void;
}

interface Waiter {
  priority: Priority;
  enqueuedAt: number;
  expiresAt: number;
  /** Settles the waiter's promise: a ticket, or why it was turned away (not an Error: a refusal must stay cheap). */
  settle(outcome: Ticket | Rejection): void;
}

export interface AdmissionStats {
  limit: number;
  inFlight: number;
  queued: number;
}

export class AdmissionController {
  readonly #limit: GradientLimit;
  readonly #opts: { queueSize: number; queueWaitMs: number; congestionIntervalMs: number; now: () => number };
  readonly #queues: Waiter[][] = [[], [], []];
  #inFlight = 0;
  #queued = 0;
  /** When the queue was last empty; a standing queue is one that has not emptied for an interval. */
  #lastEmptyAt: number;
  #sweep: NodeJS.Timeout | undefined;

  constructor(opts: AdmissionOptions) {
    this.#limit = new GradientLimit(opts);
    this.#opts = { queueSize: opts.queueSize, queueWaitMs: opts.queueWaitMs, congestionIntervalMs: opts.congestionIntervalMs ?? 100, now: opts.now ?? (() => performance.now()) };
    this.#lastEmptyAt = this.#opts.now();
  }

  stats(): AdmissionStats {
    return { limit: this.#limit.value, inFlight: this.#inFlight, queued: this.#queued };
  }

  /**
   * A ticket now, or a rejection reason (answer 503), or a promise of either (the request waits).
   * `maxWaitMs` caps the wait further (the request's remaining deadline).
   */
  acquire(priority: Priority, maxWaitMs = Infinity): Ticket | Rejection | Promise<Ticket | Rejection> {
    if (this.#mayStart(priority)) return this.#start();
    if (this.#opts.queueSize === 0) return 'queue_full';
    if (this.#queued >= this.#opts.queueSize && !this.#evictBelow(priority)) return 'queue_full';
    const now = this.#opts.now();
    const budget = Math.min(maxWaitMs, this.#waitBudget(priority));
    if (budget <= 0) return 'queue_timeout';
    return new Promise<Ticket | Rejection>((settle) => {
      if (this.#queued === 0) this.#lastEmptyAt = now;
      this.#queues[RANK[priority]]!.push({ priority, enqueuedAt: now, expiresAt: now + budget, settle });
      this.#queued++;
      this.#sweep ??= setInterval(() => this.#expire(), 5).unref();
    });
  }

  #waitBudget(priority: Priority): number {
    const base = this.#opts.queueWaitMs;
    return priority === 'critical' ? base * 3 : priority === 'sheddable' ? base / 4 : base;
  }

  #mayStart(priority: Priority): boolean {
    const limit = this.#limit.value;
    if (priority === 'sheddable') return this.#queued === 0 && this.#inFlight < limit * 0.75;
    // Waiting critical requests go first; a default request does not overtake them.
    if (priority === 'default' && this.#queues[0]!.length > 0) return false;
    return this.#inFlight < limit;
  }

  #start(): Ticket {
    this.#inFlight++;
    const startedAt = this.#opts.now();
    let released = false;
    return {
      release: (sample) => {
        if (released) return;
        released = true;
        this.#inFlight--;
        if (sample) this.#limit.onSample(this.#opts.now() - startedAt, this.#inFlight + 1, !sample.ok);
        this.#drain();
      },
    };
  }

  /** Starts waiters while slots are free: highest class first; newest first in a standing queue. */
  #drain() {
    const now = this.#opts.now();
    const lifo = now - this.#lastEmptyAt > this.#opts.congestionIntervalMs;
    while (this.#queued > 0) {
      const queue = this.#queues.find((q) => q.length > 0)!;
      const head = queue[0]!;
      if (this.#inFlight >= this.#limit.value * (head.priority === 'sheddable' ? 0.75 : 1)) return;
      const waiter = (lifo ? queue.pop() : queue.shift())!;
      this.#queued--;
      if (this.#queued === 0) this.#lastEmptyAt = now;
      if (waiter.expiresAt <= now) {
        waiter.settle('queue_timeout');
        continue;
      }
      waiter.settle(this.#start());
    }
  }

  /** Makes room for a `priority` arrival by evicting the oldest waiter of a lower class. */
  #evictBelow(priority: Priority): boolean {
    for (let rank = 2; rank > RANK[priority]; rank--) {
      const victim = this.#queues[rank]!.shift();
      if (victim) {
        this.#queued--;
        victim.settle('evicted');
        return true;
      }
    }
    return false;
  }

  #expire() {
    const now = this.#opts.now();
    for (const queue of this.#queues) {
      if (queue.length === 0 || queue.every((w) => w.expiresAt > now)) continue;
      const keep: Waiter[] = [];
      for (const w of queue) {
        if (w.expiresAt <= now) {
          this.#queued--;
          w.settle('queue_timeout');
        } else keep.push(w);
      }
      queue.splice(0, queue.length, ...keep);
    }
    if (this.#queued === 0) {
      this.#lastEmptyAt = now;
      clearInterval(this.#sweep);
      this.#sweep = undefined;
    }
  }

  close() {
    clearInterval(this.#sweep);
    this.#sweep = undefined;
  }
}

