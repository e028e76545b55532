import { AsyncLocalStorage } from 'node:async_hooks';
import { performance } from 'node:perf_hooks';
import { LeveeError } from '../lib/errors.js';

// Every request runs with a deadline. The http layer opens a scope around each route handler; the
// code underneath (the database adapter, the password hasher, outbound calls) reads the remaining
// budget from here instead of taking it as an argument through every service signature.
// AsyncLocalStorage follows the scope across awaits; code outside any scope (jobs, migrations,
// start-up) has no deadline and relies on each dependency's own bounds.

export interface Deadline {
  /** performance.now() value at which the request's budget runs out. */
  readonly at: number;
  /** Aborted when the budget runs out: pass it to anything that can be cancelled. */
  readonly signal: AbortSignal;
}

/** A request's deadline; its signal (and the timer behind it) is only made if something asks for it. */
export class RequestDeadline implements Deadline {
  #controller: AbortController | undefined;
  #timer: NodeJS.Timeout | undefined;
  constructor(readonly at: number) {}

  get signal(): AbortSignal {
    if (!this.#controller) {
      const controller = (this.#controller = new AbortController());
      const ms = this.at - performance.now();
      if (ms <= 0) controller.abort();
      else this.#timer = setTimeout(() => controller.abort(), ms);
    }
    return this.#controller.signal;
  }

  /** Called when the response is done: nothing more will wait on this deadline. */
  dispose(): void {
    clearTimeout(this.#timer);
  }
}

const scope = new AsyncLocalStorage<Deadline>();

export const runWithDeadline = <T>(deadline: Deadline, fn: () => T): T => scope.run(deadline, fn);

export const currentDeadline = (): Deadline | undefined => scope.getStore();

/**
 * Runs `fn` on a budget of its own instead of what is left of the request's: for undoing a partial
 * write after the request's deadline passed (which would refuse the undo too).
 */
export async function withOwnBudget<T>(ms: number, fn: () => Promise<T>): Promise<T> {
  const own = new RequestDeadline(performance.now() + ms);
  try {
    return await runWithDeadline(own, fn);
  } finally {
    own.dispose();
  }
}

/** Milliseconds left in the current request's budget; Infinity outside a request. */
export function remainingMs(): number {
  const d = scope.getStore();
  return d ? d.at - performance.now() : Infinity;
}

/** The error a request gets when its budget ran out while waiting on a dependency. */
export const deadlineExceeded = (what: string) => new LeveeError('timeout', `The request's deadline passed while waiting for ${what}`, { retryAfter: 1 });

/**
 * Waits for `work` at most `min(remaining budget, capMs)`; past that, rejects with `onTimeout()`.
 * `work` keeps running (the caller arranges its cancellation through the deadline's signal).
 */
export async function withinBudget<T>(work: Promise<T>, what: string, capMs = Infinity, onTimeout: () => Error = () => deadlineExceeded(what)): Promise<T> {
  const ms = Math.min(remainingMs(), capMs);
  if (ms === Infinity) return work;
  if (ms <= 0) {
    work.catch(() => {});
    throw onTimeout();
  }
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([work, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(onTimeout()), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
