import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';
import type { Settings } from '../../src/config/settings.js';
import { uniqueEmail, type TestApp } from './app.js';

// Helpers of the rate-limit HTTP suites (test/http/rate-limits*.test.ts).

export type Call = (method: 'GET' | 'POST' | 'DELETE', url: string, o?: { token?: string; body?: unknown; headers?: Record<string, string> }) => Promise<LightMyRequestResponse>;

/** Requests from one client address. */
export const from = (t: TestApp, ip: string): Call => (method, url, o = {}) =>
  t.app.inject({
    method,
    url,
    remoteAddress: ip,
    headers: { ...(o.token ? { authorization: `Bearer ${o.token}` } : {}), ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}), ...o.headers },
    ...(o.body !== undefined ? { payload: JSON.stringify(o.body) } : {}),
  });

export const PASSWORD = 'correct horse 1';

export async function signUpFrom(call: Call, email = uniqueEmail('rl')) {
  const res = await call('POST', '/v1/auth/signup', { body: { email, password: PASSWORD } });
  assert.equal(res.statusCode, 201, res.body);
  return { ...(res.json() as { accessToken: string; user: { id: string } }), email };
}

export function assertLimited(res: LightMyRequestResponse, limit: string) {
  assert.equal(res.statusCode, 429, res.body);
  assert.equal(res.headers['content-type'], 'application/problem+json; charset=utf-8');
  const body = res.json();
  assert.equal(body.code, 'rate_limited');
  assert.equal(body.retryable, true);
  assert.equal(body.limit, limit);
  const retryAfter = Number(res.headers['retry-after']);
  assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1, `Retry-After ${res.headers['retry-after']}`);
  assert.match(String(res.headers.ratelimit), new RegExp(`"${limit}";r=0;t=${retryAfter}(,|$)`));
  return retryAfter;
}

export const LIMITS: Partial<Settings> = {
  rateLimitIpPerMinute: 60,
  rateLimitIpBurst: 6,
  rateLimitUserPerMinute: 120,
  rateLimitUserBurst: 8,
  rateLimitSignupPerMinute: 2,
  rateLimitAnonymousPerMinute: 3,
  rateLimitPasswordChangePerMinute: 1,
  signInAccountFailures: 3,
  signInIpFailures: 5,
};
