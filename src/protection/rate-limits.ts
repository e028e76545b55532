import { isIPv4, isIPv6 } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { SharedRedis } from './redis.js';

// Token-bucket rate limits: a bucket per (policy, key) holds up to `burst` tokens and refills at
// `perMinute` tokens a minute; a request takes one token or is refused with the time until the
// next one. Buckets live in Redis when REDIS_URL is set (shared by every instance), else in this
// process. While Redis is unreachable, slow or its circuit is open, each decision is taken from a
// per-process bucket instead: limits then hold per instance (N instances let up to N× through)
// and no request waits on Redis longer than one command timeout.
//
// Why by hand rather than rate-limiter-flexible (which brute-force.ts uses for counting failures):
// its limiters count fixed windows, so a client can spend a whole window's quota at the end of one
// window and again at the start of the next — twice the limit within seconds. A token bucket has
// no boundary to game, allows a declared burst, and its state is two numbers per key, updated
// atomically by one small Lua script.

export interface BucketPolicy {
  /** Names the policy in RateLimit headers and metrics, and namespaces its keys. */
  readonly name: string;
  /** Refill rate: tokens added per minute. */
  readonly perMinute: number;
  /** Capacity: the most requests allowed at once after a quiet period. */
  readonly burst: number;
}

export interface Decision {
  allowed: boolean;
  /** Whole tokens left after this request. */
  remaining: number;
  /** Milliseconds until at least one token is available (0 if one is now). */
  nextTokenMs: number;
  /** Milliseconds until the bucket is full again. */
  resetMs: number;
}

export interface BucketStore {
  /** Takes one token from the bucket of `key` under `policy`, if there is one. */
  take(policy: BucketPolicy, key: string): Promise<Decision>;
}

// Rounds up, ignoring floating-point dust (0.002 / 0.002 is not always exactly 1).
const ceil = (ms: number) => Math.ceil(ms - 1e-6);

const decide = (policy: BucketPolicy, tokensBefore: number, ratePerMs: number): { tokens: number; decision: Decision } => {
  const allowed = tokensBefore >= 1;
  const tokens = allowed ? tokensBefore - 1 : tokensBefore;
  return {
    tokens,
    decision: {
      allowed,
      remaining: Math.floor(tokens),
      nextTokenMs: tokens >= 1 ? 0 : ceil((1 - tokens) / ratePerMs),
      resetMs: ceil((policy.burst - tokens) / ratePerMs),
    },
  };
};

interface MemoryBucket {
  tokens: number;
  /** When `tokens` was computed (ms, monotonic). */
  at: number;
  /** When the bucket is full again: from then on it is the same as no bucket at all. */
  fullAt: number;
}

export interface MemoryBuckets extends BucketStore {
  /** Buckets held now (tests, metrics). */
  size(): number;
}

/**
 * Buckets in this process's memory, bounded: a Map in least-recently-used order. Each call drops
 * the oldest buckets that have refilled completely (indistinguishable from a fresh one), and past
 * `maxKeys` the least recently used bucket goes whatever its level — so a flood of distinct keys
 * (spoofed or many IPs) costs at most `maxKeys` entries, at the price of forgetting the quietest.
 */
export function createMemoryBuckets(opts: { maxKeys?: number; now?: () => number } = {}): MemoryBuckets {
  const maxKeys = opts.maxKeys ?? 100_000;
  const now = opts.now ?? (() => performance.now());
  const buckets = new Map<string, MemoryBucket>();

  const evict = (t: number) => {
    for (let i = 0; i < 2; i++) {
      const oldest = buckets.entries().next();
      if (oldest.done || oldest.value[1].fullAt > t) break;
      buckets.delete(oldest.value[0]);
    }
    while (buckets.size > maxKeys) buckets.delete(buckets.keys().next().value!);
  };

  return {
    size: () => buckets.size,
    async take(policy, key) {
      const t = now();
      const id = `${policy.name}\u0000${key}`;
      const ratePerMs = policy.perMinute / 60_000;
      const b = buckets.get(id);
      const before = b ? Math.min(policy.burst, b.tokens + Math.max(0, t - b.at) * ratePerMs) : policy.burst;
      const { tokens, decision } = decide(policy, before, ratePerMs);
      if (b) buckets.delete(id); // re-inserted at the end: the Map stays in least-recently-used order
      buckets.set(id, { tokens, at: t, fullAt: t + decision.resetMs });
      evict(t);
      return decision;
    },
  };
}

// One atomic step on a bucket stored as a hash {t: tokens, at: ms}. Time is the Redis server's, so
// instances with skewed clocks agree. The key expires when the bucket would be full again: an idle
// key vanishes, and a missing key is a full bucket.
// KEYS[1] bucket · ARGV[1] burst · ARGV[2] tokens per ms
// Returns {allowed 0|1, tokens left × 1000 (Lua numbers leave Redis as integers)}.
const TAKE_SCRIPT = `
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 't', 'at')
local tokens = tonumber(b[1])
local at = tonumber(b[2])
if tokens == nil or at == nil then
  tokens = burst
elseif now > at then
  tokens = math.min(burst, tokens + (now - at) * rate)
end
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((burst - tokens) / rate)))
return {allowed, math.floor(tokens * 1000)}
`;

type WithTake = Redis & { leveeTakeToken(key: string, burst: string, ratePerMs: string): Promise<[number, number]> };

/** Buckets in Redis. Rejects when Redis does not answer in time (callers fall back). */
export function createRedisBuckets(redis: SharedRedis): BucketStore {
  // defineCommand sends EVALSHA and falls back to EVAL when the server does not have the script
  // yet (first call, or after a restart or SCRIPT FLUSH).
  redis.client.defineCommand('leveeTakeToken', { numberOfKeys: 1, lua: TAKE_SCRIPT });
  return {
    async take(policy, key) {
      const ratePerMs = policy.perMinute / 60_000;
      const [allowed, milliTokens] = await redis.run((c) => (c as WithTake).leveeTakeToken(`${redis.keyPrefix}rl:${policy.name}:${key}`, String(policy.burst), String(ratePerMs)));
      const tokens = milliTokens / 1000;
      const d = decide(policy, tokens + (allowed === 1 ? 1 : 0), ratePerMs).decision;
      return { ...d, allowed: allowed === 1 };
    },
  };
}

/**
 * The store the request path uses: Redis when configured and available, this process's buckets
 * otherwise — for each decision on its own, so a Redis outage changes nothing but the scope of
 * the limits. The first fallback of an outage is logged (by SharedRedis); each is counted.
 */
export function createBucketStore(opts: { redis?: SharedRedis | undefined; registry: Registry; logger: Logger; memory?: MemoryBuckets }): BucketStore {
  const memory = opts.memory ?? createMemoryBuckets();
  const { redis } = opts;
  if (!redis) return memory;
  const remote = createRedisBuckets(redis);
  const fallbacks = new Counter({
    name: 'levee_rate_limit_fallback_total',
    help: 'Rate-limit decisions taken per process because Redis was unavailable (limits are then per instance)',
    labelNames: ['limit'] as const,
    registers: [opts.registry],
  });
  return {
    async take(policy, key) {
      if (redis.available()) {
        try {
          return await remote.take(policy, key);
        } catch {
          // Logged once per outage by SharedRedis; the breaker counts the failure.
        }
      }
      fallbacks.inc({ limit: policy.name });
      return memory.take(policy, key);
    },
  };
}

/**
 * The key a client's IP is counted under: IPv4 as is (IPv4-mapped IPv6 included), IPv6 by its
 * /64 prefix — one subscriber usually holds a whole /64, so single addresses would be free to rotate.
 */
export function ipKey(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped && isIPv4(mapped[1]!)) return mapped[1]!;
  const addr = ip.split('%')[0]!;
  if (!isIPv6(addr)) return ip;
  const [head = '', tail] = addr.split('::');
  const groupsOf = (s: string) => (s === '' ? [] : s.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g])));
  const h = groupsOf(head);
  const full = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - groupsOf(tail).length).fill('0'), ...groupsOf(tail)];
  return `${full.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(':')}::/64`;
}

export interface RouteLimit {
  perMinute: number;
  burst: number;
}

export interface RateLimitsOptions {
  ip: RouteLimit;
  user: RouteLimit;
  /** Per-route limits by name (from settings); routes refer to them by name. */
  routes: Record<string, RouteLimit>;
  store: BucketStore;
  registry: Registry;
}

export interface RateLimits {
  readonly ip: BucketPolicy;
  readonly user: BucketPolicy;
  /** The policy of a named route limit: the configured one, else `inline`; throws if neither. */
  route(name: string, inline?: Partial<RouteLimit>): BucketPolicy;
  take(policy: BucketPolicy, key: string): Promise<Decision>;
}

export function createRateLimits(opts: RateLimitsOptions): RateLimits {
  const limited = new Counter({ name: 'levee_rate_limited_total', help: 'Requests refused by a rate limit (429), by limit', labelNames: ['limit'] as const, registers: [opts.registry] });
  const routes = new Map<string, BucketPolicy>();
  return {
    ip: { name: 'ip', ...opts.ip },
    user: { name: 'user', ...opts.user },
    route(name, inline) {
      let p = routes.get(name);
      if (!p) {
        if (name === 'ip' || name === 'user') throw new Error(`rate limit name "${name}" is reserved`);
        const limit = opts.routes[name] ?? (inline?.perMinute ? { perMinute: inline.perMinute, burst: inline.burst ?? inline.perMinute } : undefined);
        if (!limit) throw new Error(`rate limit "${name}" has no configured or declared rate`);
        p = { name, ...limit };
        routes.set(name, p);
      }
      return p;
    },
    async take(policy, key) {
      const d = await opts.store.take(policy, key);
      if (!d.allowed) limited.inc({ limit: policy.name });
      return d;
    },
  };
}
