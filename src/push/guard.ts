import { setTimeout as sleep } from 'node:timers/promises';
import type { Dependency } from '../protection/dependency.js';
import type { PushMessage, PushProvider, PushTarget, SendResult } from './providers/port.js';

// Isolation around one push provider: its own concurrency pool and circuit breaker (a Dependency)
// and a rate limit, so a provider that is down, slow or throttling costs its own queue time and
// nothing else. While the circuit is open, sends come back at once as `retry` after the half-open
// delay: the notifications wait in the queue (until their TTL) instead of hammering the provider.

/** Failures that say the provider is unwell (not that one message or token is bad). */
class ProviderUnwell extends Error {
  constructor(readonly result: SendResult & { outcome: 'retry' }) {
    super(result.reason);
  }
}

export const isProviderUnwell = (e: unknown) => e instanceof ProviderUnwell;

/**
 * A token bucket that waits: `take` resolves when a send may go (sends are background work, so they
 * queue here rather than fail). Written by hand: a few lines, and rate-limiter-flexible's limiters
 * refuse instead of waiting.
 */
export function rateGate(perSecond: number) {
  let tokens = perSecond;
  let last = performance.now();
  let chain = Promise.resolve();
  let waiting = 0;
  const refill = () => {
    const now = performance.now();
    tokens = Math.min(perSecond, tokens + ((now - last) / 1000) * perSecond);
    last = now;
  };
  const ready = Promise.resolve();
  return {
    take(signal?: AbortSignal): Promise<void> {
      // The common case — a token is there and nobody queues — costs no chained promise.
      if (waiting === 0) {
        refill();
        if (tokens >= 1) {
          tokens -= 1;
          return ready;
        }
      }
      waiting++;
      const turn = chain.then(async () => {
        refill();
        while (tokens < 1) {
          await sleep(Math.ceil(((1 - tokens) / perSecond) * 1000), undefined, { signal });
          refill();
        }
        tokens -= 1;
      });
      chain = turn.catch(() => {}).finally(() => void waiting--);
      return turn;
    },
  };
}

export function guardProvider(provider: PushProvider, opts: { dependency: Dependency; perSecond: number; openRetryMs: number }): PushProvider {
  const gate = rateGate(opts.perSecond);
  // An open circuit only half-opens when a call is tried after its delay: so after `openRetryMs`
  // of being open, one batch is let through to try, else nothing would ever close it again.
  let openSince: number | undefined;
  const unavailableFor = (): number | undefined => {
    if (opts.dependency.state() !== 'open') {
      openSince = undefined;
      return undefined;
    }
    const now = performance.now();
    openSince ??= now;
    const left = opts.openRetryMs - (now - openSince);
    if (left > 0) return Math.ceil(left);
    openSince = undefined;
    return undefined;
  };
  return {
    platform: provider.platform,
    close: () => provider.close(),
    unavailableFor,
    async send(target: PushTarget, message: PushMessage, signal?: AbortSignal): Promise<SendResult> {
      try {
        await gate.take(signal);
        return await opts.dependency.run(async () => {
          const r = await provider.send(target, message, signal);
          if (r.outcome === 'retry') throw new ProviderUnwell(r);
          return r;
        });
      } catch (e) {
        if (e instanceof ProviderUnwell) return e.result;
        // The circuit is open or the pool is full: not sent, try again once it may have recovered.
        return { outcome: 'retry', reason: e instanceof Error ? e.message : String(e), retryAfterMs: opts.openRetryMs };
      }
    },
  };
}
