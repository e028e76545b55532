import { Counter, type Registry } from 'prom-client';
import { RateLimiterMemory, RateLimiterRedis, type RateLimiterAbstract, type RateLimiterRes } from 'rate-limiter-flexible';
import { LeveeError } from '../lib/errors.js';
import { sha256 } from '../lib/ids.js';
import { ipKey } from './rate-limits.js';
import type { SharedRedis } from './redis.js';

// Password-guessing protection for sign-in: failed attempts are counted per account (the email,
// lowercased) and per client IP. An account or IP that reached its limit is refused with 429
// `too_many_sign_in_attempts` before any database read or password hash, so a blocked attacker
// costs almost nothing; the block lasts one window from the failure that reached the limit. A
// successful sign-in clears the account's count (not the IP's: one known password must not buy
// an IP more guesses at other accounts).
//
// Counting failures over a window is what rate-limiter-flexible does well (fixed windows are fine
// here: this is a lockout, not a request rate). With Redis it uses RateLimiterRedis, whose
// `insuranceLimiter` (a RateLimiterMemory) answers when Redis errors or times out, and
// `rejectIfRedisNotReady` skips Redis at once while disconnected. While the shared circuit is
// open the memory limiter is used directly. So Redis trouble never blocks a sign-in: the counts
// just become per instance for a while.

/** What the auth service calls around a password sign-in (it owns the port: see auth/service.ts). */
export interface SignInThrottle {
  /** Throws a 429 LeveeError when the account or the IP is blocked. */
  check(email: string, ip: string | undefined): Promise<void>;
  failed(email: string, ip: string | undefined): Promise<void>;
  succeeded(email: string): Promise<void>;
}

export interface SignInThrottleOptions {
  /** Failures per account within `accountWindowSeconds` that block it for that long. */
  accountFailures: number;
  accountWindowSeconds: number;
  ipFailures: number;
  ipWindowSeconds: number;
  redis?: SharedRedis | undefined;
  registry: Registry;
}

interface Counted {
  points: number;
  windowSeconds: number;
  limiter(): RateLimiterAbstract;
}

export function createSignInThrottle(opts: SignInThrottleOptions): SignInThrottle {
  const { redis } = opts;
  const blocked = new Counter({ name: 'levee_sign_in_blocked_total', help: 'Sign-in attempts refused by brute-force protection, by what was blocked', labelNames: ['by'] as const, registers: [opts.registry] });

  const counter = (name: string, points: number, windowSeconds: number): Counted => {
    const local = new RateLimiterMemory({ keyPrefix: `signin:${name}`, points, duration: windowSeconds });
    if (!redis) return { points, windowSeconds, limiter: () => local };
    const remote = new RateLimiterRedis({
      storeClient: redis.client,
      keyPrefix: `${redis.keyPrefix}signin:${name}`,
      points,
      duration: windowSeconds,
      insuranceLimiter: local,
      rejectIfRedisNotReady: true,
    });
    return { points, windowSeconds, limiter: () => (redis.available() ? remote : local) };
  };
  const byAccount = counter('account', opts.accountFailures, opts.accountWindowSeconds);
  const byIp = counter('ip', opts.ipFailures, opts.ipWindowSeconds);

  // Emails are hashed: the counters hold no personal data, and their keys have a fixed length.
  const accountKey = (email: string) => sha256(email.trim().toLowerCase());

  // The throttle must never turn a sign-in into an error of its own: on any failure it lets the
  // attempt through (the insurance limiter has normally answered already).
  const safely = async <T>(p: Promise<T>): Promise<T | undefined> => p.catch(() => undefined);

  const isBlocked = (c: Counted, res: RateLimiterRes | null | undefined) => res != null && res.consumedPoints >= c.points && res.msBeforeNext > 0;

  const record = async (c: Counted, key: string) => {
    const limiter = c.limiter();
    const res = await safely(limiter.penalty(key, 1));
    // The failure that reaches the limit starts a full window of blocking.
    if (res && res.consumedPoints >= c.points) await safely(limiter.block(key, c.windowSeconds));
  };

  return {
    async check(email, ip) {
      const [account, client] = await Promise.all([
        safely(byAccount.limiter().get(accountKey(email))),
        ip ? safely(byIp.limiter().get(ipKey(ip))) : undefined,
      ]);
      const by = isBlocked(byAccount, account) ? 'account' : isBlocked(byIp, client) ? 'ip' : undefined;
      if (!by) return;
      blocked.inc({ by });
      const ms = (by === 'account' ? account : client)!.msBeforeNext;
      throw new LeveeError('too_many_sign_in_attempts', by === 'account' ? 'Too many failed sign-ins for this account: try again later' : 'Too many failed sign-ins from this network: try again later', {
        retryAfter: Math.max(1, Math.ceil(ms / 1000)),
      });
    },
    async failed(email, ip) {
      await Promise.all([record(byAccount, accountKey(email)), ip ? record(byIp, ipKey(ip)) : undefined]);
    },
    async succeeded(email) {
      await safely(byAccount.limiter().delete(accountKey(email)));
    },
  };
}
