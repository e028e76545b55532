import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import type { AccessTokens } from '../../src/auth/access-tokens.js';
import type { IdTokenVerifier } from '../../src/auth/id-tokens.js';
import type { PasswordHasher } from '../../src/auth/passwords.js';
import { createAuthService } from '../../src/auth/service.js';
import type { Db } from '../../src/db/port.js';
import { systemClock } from '../../src/lib/clock.js';
import { isLeveeError, type LeveeError } from '../../src/lib/errors.js';
import { createLogger } from '../../src/observability/logger.js';
import { createSignInThrottle, type SignInThrottle } from '../../src/protection/brute-force.js';
import { createDependencies } from '../../src/protection/dependency.js';
import { createSharedRedis, type SharedRedis } from '../../src/protection/redis.js';
import { closedPort, deletePrefix, REDIS_TEST_URL, redisSkip, silentServer, uniquePrefix } from '../support/redis.js';

// Sign-in brute-force protection: per account and per IP, cleared by a success, refused before any
// database read or password hash — in memory, through Redis (shared), and with Redis unreachable.

const rejection = async (p: Promise<unknown>): Promise<LeveeError | undefined> => {
  try {
    await p;
    return undefined;
  } catch (e) {
    if (!isLeveeError(e)) throw e;
    return e;
  }
};

let scanKeys: () => Promise<string[]> = async () => [];

const limits = { accountFailures: 3, accountWindowSeconds: 900, ipFailures: 5, ipWindowSeconds: 3600 };

function throttleContract(name: string, make: () => Promise<{ throttle: SignInThrottle; peer?: SignInThrottle | undefined }>, opts: { skip?: string | false; shared?: boolean } = {}) {
  describe(`sign-in throttle: ${name}`, { skip: opts.skip ?? false }, () => {
    let n = 0;
    const email = () => `Victim.${process.pid}.${Date.now()}.${n++}@Example.com`;
    const ip = () => `198.51.100.${n++ % 250}`;

    it('blocks an account after its failures, for one window, whatever the IP', async () => {
      const { throttle } = await make();
      const who = email();
      for (let i = 0; i < 3; i++) {
        await throttle.check(who, ip());
        await throttle.failed(who, ip());
      }
      // The same account in another case, from a new IP: still blocked.
      const err = await rejection(throttle.check(who.toUpperCase(), ip()));
      assert.equal(err?.code, 'too_many_sign_in_attempts');
      assert.equal(err?.status, 429);
      assert.ok(err.retryAfter! > 850 && err.retryAfter! <= 900, `retryAfter ${err.retryAfter}`);
      assert.match(err.message, /account/);
      // Another account from one of those IPs is fine.
      await throttle.check(email(), ip());
    });

    it('a success clears the account count (not the IP count)', async () => {
      const { throttle } = await make();
      const who = email();
      const from = ip();
      await throttle.failed(who, from);
      await throttle.failed(who, from);
      await throttle.succeeded(who);
      await throttle.failed(who, from);
      await throttle.failed(who, from);
      await throttle.check(who, from); // 2 since the success: not blocked
      await throttle.failed(who, from);
      assert.equal((await rejection(throttle.check(who, undefined)))?.code, 'too_many_sign_in_attempts');
    });

    it('blocks an IP after its failures across accounts', async () => {
      const { throttle } = await make();
      const from = `203.0.113.${n++ % 250}`;
      for (let i = 0; i < 5; i++) await throttle.failed(email(), from);
      const err = await rejection(throttle.check(email(), from));
      assert.equal(err?.code, 'too_many_sign_in_attempts');
      assert.match(err!.message, /network/);
      assert.ok(err!.retryAfter! > 3500);
      await throttle.check(email(), '203.0.113.251');
    });

    if (opts.shared) {
      it('is shared between instances', async () => {
        const { throttle, peer } = await make();
        const who = email();
        for (let i = 0; i < 3; i++) await throttle.failed(who, ip());
        assert.equal((await rejection(peer!.check(who, ip())))?.code, 'too_many_sign_in_attempts');
        // Counted in Redis, under hashed emails: no address in any key.
        const keys = await scanKeys();
        assert.ok(keys.some((k) => k.includes('signin:account')) && keys.some((k) => k.includes('signin:ip')), keys.join(' '));
        assert.ok(!keys.some((k) => k.toLowerCase().includes('example.com')));
        await peer!.succeeded(who);
        await throttle.check(who, ip());
      });
    }
  });
}

throttleContract('in memory', async () => ({ throttle: createSignInThrottle({ ...limits, registry: new Registry() }) }));

const skip = await redisSkip();
{
  const prefix = uniquePrefix();
  const clients: SharedRedis[] = [];
  const shared = async () => {
    const registry = new Registry();
    const redis = createSharedRedis({ url: REDIS_TEST_URL, commandTimeoutMs: 500, keyPrefix: prefix, logger: createLogger('silent'), createDependency: createDependencies(registry) });
    clients.push(redis);
    // Until connected, a new instance counts in memory (rejectIfRedisNotReady): wait for it here.
    if (redis.client.status !== 'ready') await new Promise((ok) => redis.client.once('ready', ok));
    return createSignInThrottle({ ...limits, redis, registry });
  };
  scanKeys = async () => {
    const c = new Redis(REDIS_TEST_URL);
    try {
      return await c.keys(`${prefix}*`);
    } finally {
      c.disconnect();
    }
  };
  describe('(Redis clients)', { skip }, () => {
    after(async () => {
      await Promise.all(clients.map((c) => c.close()));
      await deletePrefix(prefix);
    });
    throttleContract('through Redis', async () => ({ throttle: await shared(), peer: await shared() }), { skip, shared: true });
  });
}

describe('sign-in throttle with Redis unreachable', () => {
  for (const kind of ['refused connections', 'a server that never answers'] as const) {
    it(`${kind}: still counts (per process) and answers within the command timeout`, async () => {
      const silent = kind === 'a server that never answers' ? await silentServer() : undefined;
      const registry = new Registry();
      const redis = createSharedRedis({ url: silent?.url ?? `redis://127.0.0.1:${await closedPort()}`, commandTimeoutMs: 100, keyPrefix: uniquePrefix(), logger: createLogger('silent'), createDependency: createDependencies(registry) });
      try {
        await new Promise((r) => setTimeout(r, 50));
        const throttle = createSignInThrottle({ ...limits, redis, registry });
        const who = `x.${Date.now()}@example.com`;
        const t0 = performance.now();
        for (let i = 0; i < 3; i++) {
          await throttle.check(who, '192.0.2.1');
          await throttle.failed(who, '192.0.2.1');
        }
        assert.equal((await rejection(throttle.check(who, '192.0.2.1')))?.code, 'too_many_sign_in_attempts');
        assert.ok(performance.now() - t0 < 500, `took ${(performance.now() - t0).toFixed(0)} ms`);
      } finally {
        await redis.close();
        await silent?.close();
      }
    });
  }
});

describe('auth service: a blocked sign-in costs no database read and no password hash', () => {
  it('refuses before touching the database or the hasher; a wrong password is counted', async () => {
    let queries = 0;
    let hashes = 0;
    const db = new Proxy({} as Db, {
      get: (_t, prop) => (prop === 'then' ? undefined : (..._args: unknown[]) => {
        queries++;
        return Promise.resolve({ rows: [] });
      }),
    });
    const passwords: PasswordHasher = {
      hash: async () => {
        hashes++;
        return 'x';
      },
      verify: async () => {
        hashes++;
        return false;
      },
      burn: async () => {
        hashes++;
      },
      saturated: () => false,
      close: async () => {},
    };
    const throttle = createSignInThrottle({ ...limits, registry: new Registry() });
    const unused = (() => Promise.reject(new Error('unused'))) as unknown as IdTokenVerifier;
    const auth = createAuthService({ db, clock: systemClock, tokens: {} as AccessTokens, passwords, config: { sessionTtlDays: 1, adminEmails: [] }, apple: unused, google: unused, signInThrottle: throttle });

    const attempt = () => rejection(auth.signIn({ email: 'target@example.com', password: 'guess-guess', ip: '192.0.2.9' }));
    for (let i = 0; i < 3; i++) assert.equal((await attempt())?.code, 'invalid_credentials');
    assert.ok(queries >= 3 && hashes === 3, `queries ${queries}, hashes ${hashes}`);
    const [q, h] = [queries, hashes];
    for (let i = 0; i < 20; i++) assert.equal((await attempt())?.code, 'too_many_sign_in_attempts');
    assert.equal(queries, q, 'a blocked sign-in read the database');
    assert.equal(hashes, h, 'a blocked sign-in hashed a password');
  });
});
