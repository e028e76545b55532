import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, uniqueEmail, type TestApp } from '../support/app.js';
import { engines } from '../support/engines.js';
import { assertLimited, from, LIMITS } from '../support/rate-limits.js';
import { deletePrefix, REDIS_TEST_URL, redisSkip, uniquePrefix } from '../support/redis.js';

// Two instances share their rate limits and sign-in counts through the real Redis.

const pglite = (await engines()).find((e) => e.name === 'pglite')!;
const redisSkipped = await redisSkip();

describe('rate limits shared through Redis by two instances', { skip: redisSkipped }, () => {
  const prefix = uniquePrefix();
  let a: TestApp;
  let b: TestApp;
  before(async () => {
    const overrides = { ...LIMITS, rateLimitIpBurst: 4, redisUrl: REDIS_TEST_URL, redisKeyPrefix: prefix };
    [a, b] = await Promise.all([createTestApp(pglite, { overrides }), createTestApp(pglite, { overrides })]);
    for (const t of [a, b]) {
      const client = t.services.redis!.client;
      if (client.status !== 'ready') await new Promise((ok) => client.once('ready', ok));
    }
  });
  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await deletePrefix(prefix);
  });

  it('the second instance sees what the first consumed', async () => {
    const onA = from(a, '10.2.0.1');
    const onB = from(b, '10.2.0.1');
    assert.match(String((await onA('GET', '/v1/collections/posts/documents')).headers.ratelimit), /^"ip";r=3;/);
    await onA('GET', '/v1/collections/posts/documents');
    assert.match(String((await onB('GET', '/v1/collections/posts/documents')).headers.ratelimit), /^"ip";r=1;/);
    assert.match(String((await onB('GET', '/v1/collections/posts/documents')).headers.ratelimit), /^"ip";r=0;/);
    assertLimited(await onA('GET', '/v1/collections/posts/documents'), 'ip');
    assertLimited(await onB('GET', '/v1/collections/posts/documents'), 'ip');
  });

  it('sign-in failures on one instance block the account on the other', async () => {
    const email = uniqueEmail('shared');
    for (let i = 0; i < 3; i++) assert.equal((await from(a, `10.2.1.${i}`)('POST', '/v1/auth/signin', { body: { email, password: 'wrong password' } })).statusCode, 401);
    const blocked = await from(b, '10.2.1.9')('POST', '/v1/auth/signin', { body: { email, password: 'wrong password' } });
    assert.equal(blocked.statusCode, 429);
    assert.equal(blocked.json().code, 'too_many_sign_in_attempts');
  });
});
