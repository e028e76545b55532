import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { createLogger } from '../../src/observability/logger.js';
import { createDependencies } from '../../src/protection/dependency.js';
import { createBucketStore, createMemoryBuckets, createRateLimits, createRedisBuckets, ipKey, type BucketPolicy, type BucketStore } from '../../src/protection/rate-limits.js';
import { createSharedRedis, type SharedRedis } from '../../src/protection/redis.js';
import { closedPort, deletePrefix, freezableProxy, REDIS_TEST_URL, redisSkip, silentServer, uniquePrefix } from '../support/redis.js';

// The token bucket itself: burst, refill, retry-after arithmetic and the memory bound — on the
// in-process store (with a hand-moved clock) and on the real Redis (Lua script, real time).

const policy = (burst: number, perMinute: number, name = 'test'): BucketPolicy => ({ name, burst, perMinute });

async function takeN(store: BucketStore, p: BucketPolicy, key: string, n: number) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(await store.take(p, key));
  return out;
}

describe('token bucket in memory', () => {
  let now = 0;
  const clock = () => now;

  it('allows a burst, then refuses with the time until the next token', async () => {
    now = 1_000;
    const store = createMemoryBuckets({ now: clock });
    const p = policy(5, 60); // one token a second
    const ds = await takeN(store, p, 'a', 6);
    assert.deepEqual(ds.map((d) => d.allowed), [true, true, true, true, true, false]);
    assert.deepEqual(ds.map((d) => d.remaining), [4, 3, 2, 1, 0, 0]);
    assert.equal(ds[0]!.nextTokenMs, 0);
    assert.equal(ds[5]!.nextTokenMs, 1000);
    assert.equal(ds[5]!.resetMs, 5000);
    assert.equal(ds[0]!.resetMs, 1000);
  });

  it('refills at the declared rate, never above the burst', async () => {
    now = 0;
    const store = createMemoryBuckets({ now: clock });
    const p = policy(3, 120); // one token every 500 ms
    await takeN(store, p, 'k', 3);
    now += 499;
    const early = await store.take(p, 'k');
    assert.equal(early.allowed, false);
    assert.equal(early.nextTokenMs, 1);
    now += 1;
    assert.equal((await store.take(p, 'k')).allowed, true);
    now += 250;
    const half = await store.take(p, 'k');
    assert.equal(half.allowed, false);
    assert.equal(half.nextTokenMs, 250);
    // An hour idle fills the bucket to its burst, no more.
    now += 3_600_000;
    const ds = await takeN(store, p, 'k', 4);
    assert.deepEqual(ds.map((d) => d.allowed), [true, true, true, false]);
  });

  it('keeps keys and policies apart', async () => {
    now = 0;
    const store = createMemoryBuckets({ now: clock });
    await takeN(store, policy(2, 60, 'one'), 'x', 2);
    assert.equal((await store.take(policy(2, 60, 'one'), 'x')).allowed, false);
    assert.equal((await store.take(policy(2, 60, 'one'), 'y')).allowed, true);
    assert.equal((await store.take(policy(2, 60, 'two'), 'x')).allowed, true);
  });

  it('stays within maxKeys under a flood of distinct keys', async () => {
    now = 0;
    const store = createMemoryBuckets({ now: clock, maxKeys: 1000 });
    const p = policy(10, 60);
    for (let i = 0; i < 50_000; i++) {
      now += 0.01;
      await store.take(p, `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`);
    }
    assert.ok(store.size() <= 1000, `size ${store.size()}`);
  });

  it('drops buckets that have refilled completely, so idle keys do not linger', async () => {
    now = 0;
    const store = createMemoryBuckets({ now: clock });
    const p = policy(2, 600); // full again 200 ms after one take
    for (let i = 0; i < 100; i++) await store.take(p, `idle-${i}`);
    assert.equal(store.size(), 100);
    now += 1_000;
    for (let i = 0; i < 60; i++) await store.take(p, `busy-${i}`);
    // Each call drops up to two full buckets from the old end: the 100 idle ones are gone.
    assert.equal(store.size(), 60);
  });

  it('route limits: configured by name, or declared inline; ip and user are reserved', () => {
    const limits = createRateLimits({ ip: { perMinute: 60, burst: 10 }, user: { perMinute: 30, burst: 5 }, routes: { signup: { perMinute: 20, burst: 20 } }, store: createMemoryBuckets(), registry: new Registry() });
    assert.deepEqual(limits.route('signup', { perMinute: 1 }), { name: 'signup', perMinute: 20, burst: 20 });
    assert.deepEqual(limits.route('upload', { perMinute: 6 }), { name: 'upload', perMinute: 6, burst: 6 });
    assert.deepEqual(limits.route('export', { perMinute: 6, burst: 2 }), { name: 'export', perMinute: 6, burst: 2 });
    assert.throws(() => limits.route('mystery'), /no configured or declared rate/);
    assert.throws(() => limits.route('ip', { perMinute: 5 }), /reserved/);
  });

  it('counts IPv6 clients by their /64 and unwraps IPv4-mapped addresses', () => {
    assert.equal(ipKey('203.0.113.7'), '203.0.113.7');
    assert.equal(ipKey('::ffff:203.0.113.7'), '203.0.113.7');
    assert.equal(ipKey('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
    assert.equal(ipKey('2001:db8:1:2::9'), '2001:db8:1:2::/64');
    assert.equal(ipKey('2001:0db8:0001:0002:ffff::1'), '2001:db8:1:2::/64');
    assert.equal(ipKey('2001:db8::1'), '2001:db8:0:0::/64');
    assert.equal(ipKey('::1'), '0:0:0:0::/64');
    assert.equal(ipKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
    assert.equal(ipKey('not an ip'), 'not an ip');
  });
});

const skip = await redisSkip();

describe('token bucket in Redis', { skip }, () => {
  const prefix = uniquePrefix();
  const lines: string[] = [];
  let redis: SharedRedis;
  let store: BucketStore;
  let raw: Redis;
  before(() => {
    const sink = new PassThrough();
    sink.on('data', (c: Buffer) => lines.push(...c.toString().split('\n').filter(Boolean)));
    // A generous command timeout: a busy CI machine must not turn this into a test of the local fallback.
    redis = createSharedRedis({ url: REDIS_TEST_URL, commandTimeoutMs: 2_000, keyPrefix: prefix, logger: createLogger('info', sink), createDependency: createDependencies(new Registry()) });
    store = createRedisBuckets(redis);
    raw = new Redis(REDIS_TEST_URL);
  });
  after(async () => {
    await deletePrefix(prefix);
    await redis.close();
    raw.disconnect();
  });

  it('allows a burst, then refuses with the time until the next token', async () => {
    await raw.ping();
    const p = policy(5, 60, 'burst');
    const t0 = performance.now();
    const ds = await takeN(store, p, 'a', 6);
    const elapsed = performance.now() - t0 + 2; // real time passes between calls: that much refill
    assert.deepEqual(ds.map((d) => d.allowed), [true, true, true, true, true, false]);
    assert.deepEqual(ds.map((d) => d.remaining), [4, 3, 2, 1, 0, 0]);
    assert.ok(ds[5]!.nextTokenMs >= 1000 - elapsed && ds[5]!.nextTokenMs <= 1000, `nextTokenMs ${ds[5]!.nextTokenMs}, ${elapsed.toFixed(0)} ms`);
    assert.ok(ds[5]!.resetMs >= 5000 - elapsed && ds[5]!.resetMs <= 5000, `resetMs ${ds[5]!.resetMs}, ${elapsed.toFixed(0)} ms`);
  });

  it('refills at the declared rate, never above the burst', async () => {
    const p = policy(3, 120, 'refill'); // one token every 500 ms
    await takeN(store, p, 'k', 3);
    assert.equal((await store.take(p, 'k')).allowed, false);
    await new Promise((r) => setTimeout(r, 550));
    assert.equal((await store.take(p, 'k')).allowed, true);
    assert.equal((await store.take(p, 'k')).allowed, false);
    await new Promise((r) => setTimeout(r, 2_000));
    const ds = await takeN(store, p, 'k', 4);
    assert.deepEqual(ds.map((d) => d.allowed), [true, true, true, false]);
  });

  it('is atomic under concurrent takes', async () => {
    const p = policy(10, 1, 'atomic');
    const ds = await Promise.all(Array.from({ length: 50 }, () => store.take(p, 'shared')));
    assert.equal(ds.filter((d) => d.allowed).length, 10);
  });

  it('expires an idle key once its bucket would be full again', async () => {
    const p = policy(4, 60, 'ttl');
    await takeN(store, p, 'idle', 2);
    const ttl = await raw.pttl(`${prefix}rl:ttl:idle`);
    assert.ok(ttl > 1000 && ttl <= 2000, `pttl ${ttl}`);
  });

  it('reloads its script after SCRIPT FLUSH (EVALSHA falls back to EVAL)', async () => {
    const p = policy(2, 60, 'flush');
    assert.equal((await store.take(p, 'x')).allowed, true);
    await raw.script('FLUSH');
    assert.equal((await store.take(p, 'x')).allowed, true);
    assert.equal((await store.take(p, 'x')).allowed, false);
  });
});

describe('Redis unavailable: decisions fall back to this process, promptly', () => {
  async function fallbackStore(url: string) {
    const lines: string[] = [];
    const sink = new PassThrough();
    sink.on('data', (c: Buffer) => lines.push(...c.toString().split('\n').filter(Boolean)));
    const logger = createLogger('info', sink);
    const registry = new Registry();
    const redis = createSharedRedis({ url, commandTimeoutMs: 100, keyPrefix: uniquePrefix(), logger, createDependency: createDependencies(registry) });
    const store = createBucketStore({ redis, registry, logger });
    return { redis, store, registry, lines };
  }

  for (const kind of ['refused connections', 'a server that never answers'] as const) {
    it(`${kind}: every decision within the command timeout, limits still apply, one log line`, async () => {
      const silent = kind === 'a server that never answers' ? await silentServer() : undefined;
      const { redis, store, registry, lines } = await fallbackStore(silent?.url ?? `redis://127.0.0.1:${await closedPort()}`);
      try {
        await new Promise((r) => setTimeout(r, 50)); // let the client try to connect
        const p = policy(5, 60, 'fb');
        const times: number[] = [];
        const ds = [];
        for (let i = 0; i < 20; i++) {
          const t0 = performance.now();
          ds.push(await store.take(p, 'client'));
          times.push(performance.now() - t0);
        }
        assert.ok(Math.max(...times) < 250, `slowest decision ${Math.max(...times).toFixed(1)} ms`);
        // Refused at once while not connected (no offline queue), then skipped (open circuit).
        assert.ok(times.reduce((a, b) => a + b) < 200, `20 decisions took ${times.reduce((a, b) => a + b).toFixed(0)} ms`);
        assert.deepEqual(ds.map((d) => d.allowed), [...Array<boolean>(5).fill(true), ...Array<boolean>(15).fill(false)]);
        const fallbacks = (await registry.getSingleMetric('levee_rate_limit_fallback_total')!.get()).values.reduce((s, v) => s + v.value, 0);
        assert.equal(fallbacks, 20);
        await new Promise((r) => setImmediate(r));
        const outage = lines.filter((l) => (JSON.parse(l) as { msg: string }).msg.startsWith('redis unavailable'));
        assert.equal(outage.length, 1, lines.join('\n'));
      } finally {
        await redis.close();
        await silent?.close();
      }
    });
  }
});

describe('Redis that hangs after it was ready', { skip }, () => {
  it('costs each decision at most the command timeout, then nothing once the circuit opens; shared state resumes after', async () => {
    const proxy = await freezableProxy();
    const registry = new Registry();
    const prefix = uniquePrefix();
    const redis = createSharedRedis({ url: proxy.url, commandTimeoutMs: 100, keyPrefix: prefix, logger: createLogger('silent'), createDependency: createDependencies(registry) });
    const store = createBucketStore({ redis, registry, logger: createLogger('silent') });
    const raw = new Redis(REDIS_TEST_URL);
    try {
      await new Promise<void>((ok) => (redis.client.status === 'ready' ? ok() : redis.client.once('ready', () => ok())));
      const p = policy(100, 60, 'hang');
      await store.take(p, 'c'); // through Redis
      assert.equal(await raw.exists(`${prefix}rl:hang:c`), 1);
      proxy.freeze();
      const times: number[] = [];
      for (let i = 0; i < 12; i++) {
        const t0 = performance.now();
        assert.equal((await store.take(p, 'c')).allowed, true);
        times.push(performance.now() - t0);
      }
      assert.ok(Math.max(...times) < 250, `slowest ${Math.max(...times).toFixed(0)} ms`);
      // The breaker opened after a few timeouts: the later decisions did not touch Redis at all.
      assert.equal(redis.available(), false);
      assert.ok(times.slice(-5).reduce((a, b) => a + b) < 80, times.map((t) => t.toFixed(0)).join(' '));

      proxy.thaw();
      await new Promise((r) => setTimeout(r, 2_200)); // the breaker's half-open delay
      await raw.del(`${prefix}rl:hang:c`);
      await store.take(p, 'c');
      assert.equal(await raw.exists(`${prefix}rl:hang:c`), 1, 'decisions are shared through Redis again');
      assert.equal(redis.available(), true);
    } finally {
      await redis.close();
      await proxy.close();
      await deletePrefix(prefix);
      raw.disconnect();
    }
  });
});
