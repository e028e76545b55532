import { BrokenCircuitError, BulkheadRejectedError, bulkhead, circuitBreaker, CircuitState, ConsecutiveBreaker, handleWhen, TaskCancelledError, wrap } from 'cockatiel';
import { Counter, Gauge, type Registry } from 'prom-client';
import { currentDeadline, withinBudget } from './deadline.js';

// A guard around one dependency (PostgreSQL, Redis, an identity provider's JWKS, later S3 and the
// push providers): a bulkhead (its own concurrency pool and a bounded queue, so a slow dependency
// cannot take every request with it) and a circuit breaker (after consecutive failures, calls
// fail at once for a while instead of piling onto a dependency that is down). cockatiel provides
// both; this adds the request deadline, the metrics and the mapping to Levee's errors.

export interface DependencyOptions {
  name: string;
  /** Calls running at once; more wait in the queue. Omit when the dependency bounds itself (a pool). */
  concurrency?: number;
  queue?: number;
  /** Consecutive failures that open the circuit. */
  failuresToOpen?: number;
  /** How long the circuit stays open before one trial call is let through. */
  halfOpenAfterMs?: number;
  /** Which errors count as the dependency failing (default: all). Others pass through untouched. */
  isFailure?: (e: unknown) => boolean;
  /** The error callers get when the circuit is open, the bulkhead is full or the budget ran out. */
  unavailable: (reason: 'open' | 'full' | 'deadline') => Error;
}

export interface Dependency {
  readonly name: string;
  run<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T>;
  state(): 'closed' | 'open' | 'half_open';
  /** A call now would be refused at once: the circuit is open, or every slot and queue place is taken. */
  saturated(): boolean;
}

const STATE_VALUE = { closed: 0, half_open: 1, open: 2 } as const;

export function createDependencies(registry: Registry) {
  const stateGauge = new Gauge({ name: 'levee_dependency_circuit_state', help: 'Circuit breaker state per dependency: 0 closed, 1 half-open, 2 open', labelNames: ['dependency'] as const, registers: [registry] });
  const rejected = new Counter({ name: 'levee_dependency_rejected_total', help: 'Calls refused without reaching the dependency, by reason (open circuit, full bulkhead, deadline)', labelNames: ['dependency', 'reason'] as const, registers: [registry] });
  const failures = new Counter({ name: 'levee_dependency_failures_total', help: 'Calls that reached the dependency and failed', labelNames: ['dependency'] as const, registers: [registry] });
  const busy = new Gauge({ name: 'levee_dependency_in_use', help: 'Calls running against the dependency now', labelNames: ['dependency'] as const, registers: [registry] });

  return function createDependency(opts: DependencyOptions): Dependency {
    const isFailure = opts.isFailure ?? (() => true);
    const breaker = circuitBreaker(handleWhen((e) => isFailure(e)), {
      halfOpenAfter: opts.halfOpenAfterMs ?? 2_000,
      breaker: new ConsecutiveBreaker(opts.failuresToOpen ?? 5),
    });
    const slots = opts.concurrency === undefined ? undefined : bulkhead(opts.concurrency, opts.queue ?? 0);
    const policy = slots ? wrap(slots, breaker) : breaker;
    const stateName = (): Dependency['state'] extends () => infer S ? S : never =>
      breaker.state === CircuitState.Closed ? 'closed' : breaker.state === CircuitState.HalfOpen ? 'half_open' : 'open';
    stateGauge.set({ dependency: opts.name }, 0);
    breaker.onStateChange(() => stateGauge.set({ dependency: opts.name }, STATE_VALUE[stateName()]));
    breaker.onFailure(({ handled }) => {
      if (handled) failures.inc({ dependency: opts.name });
    });

    const refuse = (reason: 'open' | 'full' | 'deadline') => {
      rejected.inc({ dependency: opts.name, reason });
      return opts.unavailable(reason);
    };

    return {
      name: opts.name,
      state: stateName,
      saturated: () => breaker.state === CircuitState.Open || (slots !== undefined && slots.executionSlots === 0 && slots.queueSlots === 0),
      async run(fn) {
        const deadline = currentDeadline();
        const work = policy.execute(async ({ signal }) => {
          busy.inc({ dependency: opts.name });
          try {
            return await fn(signal);
          } finally {
            busy.dec({ dependency: opts.name });
          }
        }, deadline?.signal);
        try {
          if (opts.concurrency === undefined) return await work;
          // A call queued in the bulkhead waits no longer than the request's budget; cockatiel then
          // skips it when its turn comes (the signal is aborted), so nothing runs for a request
          // that already got its answer.
          return await withinBudget(work, opts.name, Infinity, () => refuse('deadline'));
        } catch (e) {
          if (e instanceof BrokenCircuitError) throw refuse('open');
          if (e instanceof BulkheadRejectedError) throw refuse('full');
          if (e instanceof TaskCancelledError) throw refuse('deadline');
          throw e;
        }
      },
    };
  };
}

export type CreateDependency = ReturnType<typeof createDependencies>;
