import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, uniqueEmail, type TestApp } from '../support/app.js';
import { engines } from '../support/engines.js';
import { assertLimited, from, LIMITS, PASSWORD, signUpFrom } from '../support/rate-limits.js';

// Rate limits and sign-in throttling through HTTP, with in-process buckets: 429 problem+json with
// Retry-After and the RateLimit headers; per IP, per user, per route; brute-force per account and
// per IP. The feature does not depend on the database engine, so it runs on the embedded one.
// Through Redis and with Redis down: rate-limits-redis*.test.ts.

const pglite = (await engines()).find((e) => e.name === 'pglite')!;

describe('rate limits over HTTP (in-process buckets)', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp(pglite, { overrides: { ...LIMITS, trustProxy: true } });
  });
  after(() => t.close());

  it('per IP: headers on every answer, then 429 problem+json with Retry-After; other IPs unaffected', async () => {
    const call = from(t, '10.0.2.1');
    const ok = await call('GET', '/v1/collections/posts/documents');
    assert.equal(ok.statusCode, 200);
    assert.equal(ok.headers['ratelimit-policy'], '"ip";q=60;w=60, "user";q=120;w=60');
    assert.match(String(ok.headers.ratelimit), /^"ip";r=5;t=1, "user";r=7;t=1$/);
    for (let i = 0; i < 5; i++) assert.equal((await call('GET', '/v1/collections/posts/documents')).statusCode, 200);
    const refused = await call('GET', '/v1/collections/posts/documents');
    assert.equal(assertLimited(refused, 'ip'), 1);
    assert.equal(refused.headers['ratelimit-policy'], '"ip";q=60;w=60');
    // Refused before authentication: even a garbage token gets the 429, not a 401.
    assertLimited(await call('GET', '/v1/auth/me', { token: 'garbage' }), 'ip');
    assert.equal((await from(t, '10.0.2.2')('GET', '/v1/collections/posts/documents')).statusCode, 200);
  });

  it('ops and documentation routes are never limited and carry no RateLimit headers', async () => {
    const call = from(t, '10.0.2.9');
    for (let i = 0; i < 7; i++) await call('GET', '/v1/collections/posts/documents');
    assertLimited(await call('GET', '/v1/collections/posts/documents'), 'ip');
    for (const url of ['/healthz', '/readyz', '/metrics', '/openapi.json', '/.well-known/jwks.json', '/docs/json']) {
      const res = await call('GET', url);
      assert.equal(res.statusCode, 200, `${url}: ${res.statusCode}`);
      assert.equal(res.headers.ratelimit, undefined, url);
    }
  });

  it('per user: a user is limited across IPs; another user on the same IP is not', async () => {
    const alice = await signUpFrom(from(t, '10.0.3.100'));
    const bob = await signUpFrom(from(t, '10.0.3.101'));
    for (let i = 0; i < 8; i++) {
      const res = await from(t, `10.0.3.${i}`)('GET', '/v1/auth/me', { token: alice.accessToken });
      assert.equal(res.statusCode, 200, res.body);
    }
    assertLimited(await from(t, '10.0.3.8')('GET', '/v1/auth/me', { token: alice.accessToken }), 'user');
    assert.equal((await from(t, '10.0.3.0')('GET', '/v1/auth/me', { token: bob.accessToken })).statusCode, 200);
  });

  it('per route: sign-up per IP, with all three policies in the headers', async () => {
    const call = from(t, '10.0.4.1');
    const first = await call('POST', '/v1/auth/signup', { body: { email: uniqueEmail('rl'), password: PASSWORD } });
    assert.equal(first.statusCode, 201);
    assert.equal(first.headers['ratelimit-policy'], '"ip";q=60;w=60, "user";q=120;w=60, "signup";q=2;w=60');
    assert.match(String(first.headers.ratelimit), /"signup";r=1;t=30$/);
    assert.equal((await call('POST', '/v1/auth/signup', { body: { email: uniqueEmail('rl'), password: PASSWORD } })).statusCode, 201);
    const refused = await call('POST', '/v1/auth/signup', { body: { email: uniqueEmail('rl'), password: PASSWORD } });
    const retryAfter = assertLimited(refused, 'signup');
    assert.ok(retryAfter > 25 && retryAfter <= 30, `Retry-After ${retryAfter}`);
    assert.equal((await from(t, '10.0.4.2')('POST', '/v1/auth/signup', { body: { email: uniqueEmail('rl'), password: PASSWORD } })).statusCode, 201);
  });

  it('per route: anonymous accounts per IP, password changes per user', async () => {
    const call = from(t, '10.0.5.1');
    for (let i = 0; i < 3; i++) assert.equal((await call('POST', '/v1/auth/anonymous')).statusCode, 201);
    assertLimited(await call('POST', '/v1/auth/anonymous'), 'anonymous');

    const u = await signUpFrom(from(t, '10.0.5.2'));
    const change = (ip: string) => from(t, ip)('POST', '/v1/auth/password', { token: u.accessToken, body: { currentPassword: 'wrong password', newPassword: 'another pass 2' } });
    assert.equal((await change('10.0.5.3')).statusCode, 401);
    assertLimited(await change('10.0.5.4'), 'password_change');
  });

  it('behind a trusted proxy, clients are told apart by X-Forwarded-For', async () => {
    const viaProxy = (client: string) => from(t, '10.9.9.9')('GET', '/v1/collections/posts/documents', { headers: { 'x-forwarded-for': client } });
    for (let i = 0; i < 6; i++) assert.equal((await viaProxy('192.0.2.10')).statusCode, 200);
    assertLimited(await viaProxy('192.0.2.10'), 'ip');
    assert.equal((await viaProxy('192.0.2.11')).statusCode, 200);
  });

  it('sign-in: an account is blocked after its failures — even with the right password — until Retry-After', async () => {
    const victim = await signUpFrom(from(t, '10.0.6.100'));
    for (let i = 0; i < 3; i++) {
      const res = await from(t, `10.0.6.${i}`)('POST', '/v1/auth/signin', { body: { email: victim.email, password: 'wrong password' } });
      assert.equal(res.statusCode, 401);
    }
    const blocked = await from(t, '10.0.6.50')('POST', '/v1/auth/signin', { body: { email: victim.email.toUpperCase(), password: PASSWORD } });
    assert.equal(blocked.statusCode, 429, blocked.body);
    assert.equal(blocked.headers['content-type'], 'application/problem+json; charset=utf-8');
    assert.equal(blocked.json().code, 'too_many_sign_in_attempts');
    assert.equal(blocked.json().retryable, true);
    const retryAfter = Number(blocked.headers['retry-after']);
    assert.ok(retryAfter > 850 && retryAfter <= 900, `Retry-After ${retryAfter}`);
  });

  it('sign-in: a success clears the account count', async () => {
    const u = await signUpFrom(from(t, '10.0.7.100'));
    const signIn = (password: string, i: number) => from(t, `10.0.7.${i}`)('POST', '/v1/auth/signin', { body: { email: u.email, password } });
    assert.equal((await signIn('wrong password', 1)).statusCode, 401);
    assert.equal((await signIn('wrong password', 2)).statusCode, 401);
    assert.equal((await signIn(PASSWORD, 3)).statusCode, 200);
    assert.equal((await signIn('wrong password', 4)).statusCode, 401);
    assert.equal((await signIn('wrong password', 5)).statusCode, 401);
    assert.equal((await signIn(PASSWORD, 6)).statusCode, 200);
  });

  it('sign-in: an IP is blocked after its failures across accounts; blocked attempts are cheap', async () => {
    const call = from(t, '10.0.8.1');
    const failed: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      assert.equal((await call('POST', '/v1/auth/signin', { body: { email: uniqueEmail('nobody'), password: 'guess guess' } })).statusCode, 401);
      failed.push(performance.now() - t0);
    }
    const t0 = performance.now();
    const blocked = await call('POST', '/v1/auth/signin', { body: { email: uniqueEmail('nobody'), password: 'guess guess' } });
    const blockedMs = performance.now() - t0;
    assert.equal(blocked.statusCode, 429);
    assert.equal(blocked.json().code, 'too_many_sign_in_attempts');
    // A failure hashes (argon2id, tens of ms); a blocked attempt does not.
    const median = failed.sort((a, b) => a - b)[2]!;
    assert.ok(blockedMs < median, `blocked ${blockedMs.toFixed(1)} ms, failed median ${median.toFixed(1)} ms`);
    assert.equal((await from(t, '10.0.8.2')('POST', '/v1/auth/signin', { body: { email: uniqueEmail('nobody'), password: 'guess guess' } })).statusCode, 401);
  });

  it('counts refusals in /metrics', async () => {
    const text = (await t.call('GET', '/metrics')).body;
    assert.match(text, /levee_rate_limited_total\{limit="ip"[^}]*\} [1-9]/);
    assert.match(text, /levee_rate_limited_total\{limit="signup"[^}]*\} [1-9]/);
    assert.match(text, /levee_sign_in_blocked_total\{by="account"[^}]*\} [1-9]/);
  });
});

describe('LEVEE_PROTECTION=off', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp(pglite, { overrides: { protection: false, rateLimitIpBurst: 1, rateLimitUserBurst: 1, rateLimitSignupPerMinute: 1 } });
  });
  after(() => t.close());

  it('installs no rate limits and sends no RateLimit headers', async () => {
    const call = from(t, '10.1.0.1');
    for (let i = 0; i < 5; i++) {
      const res = await call('GET', '/v1/collections/posts/documents');
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers['ratelimit-policy'], undefined);
    }
    for (let i = 0; i < 3; i++) await signUpFrom(call);
  });
});
