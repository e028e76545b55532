import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  backoffDelay,
  decideRetry,
  fetchWithRetry,
  parseRetryAfter,
  retryDelay,
  RetryBudget,
  type AttemptOutcome,
  type FetchResponseLike,
  type RequestFacts,
} from '../../src/client/retry.js';

// The client retry helper: delays, the retry decision, the budget, and fetchWithRetry over a fake
// fetch. Deterministic: `random` and `sleep` are injected, fast-check runs with a fixed seed.

const FC = { seed: 0x7e7, numRuns: 300 };
const GET: RequestFacts = { method: 'GET' };
const POST: RequestFacts = { method: 'POST' };
const POST_KEYED: RequestFacts = { method: 'POST', idempotencyKey: true };
const status = (s: number, extra: Partial<Extract<AttemptOutcome, { kind: 'response' }>> = {}): AttemptOutcome => ({ kind: 'response', status: s, ...extra });

describe('retry delays', () => {
  it('full jitter stays within [0, min(cap, base·2^attempt))', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 80 }),
        fc.integer({ min: 1, max: 5_000 }),
        fc.integer({ min: 1, max: 120_000 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (attempt, baseMs, capMs, r) => {
          const d = backoffDelay(attempt, { baseMs, capMs }, () => r);
          const window = Math.min(capMs, baseMs * 2 ** attempt);
          return d >= 0 && d <= window && (window === 0 || d < window || r === 0);
        },
      ),
      FC,
    );
  });

  it('uses the whole window: the lowest and highest random give 0 and nearly the window', () => {
    assert.equal(backoffDelay(3, { baseMs: 100, capMs: 10_000 }, () => 0), 0);
    assert.ok(backoffDelay(3, { baseMs: 100, capMs: 10_000 }, () => 0.999_999) > 799);
    assert.ok(backoffDelay(30, { baseMs: 100, capMs: 10_000 }, () => 0.999_999) <= 10_000);
  });

  it('Retry-After is a floor, with jitter added on top', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10 }),
        fc.integer({ min: 0, max: 60_000 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (attempt, retryAfterMs, r) => {
          const b = { baseMs: 100, capMs: 10_000 };
          const d = retryDelay(attempt, retryAfterMs, b, () => r);
          return d >= retryAfterMs && d <= retryAfterMs + Math.min(b.capMs, Math.max(retryAfterMs, b.baseMs * 2 ** attempt));
        },
      ),
      FC,
    );
    // Clients told "1 s" together come back spread over the next second, not in a 100 ms burst.
    const b = { baseMs: 100, capMs: 10_000 };
    assert.equal(retryDelay(0, 1000, b, () => 0), 1000);
    assert.ok(retryDelay(0, 1000, b, () => 0.99) > 1900);
  });

  it('parses Retry-After as seconds or an HTTP date', () => {
    const now = Date.parse('2026-11-23T12:00:00Z');
    assert.equal(parseRetryAfter('2', now), 2000);
    assert.equal(parseRetryAfter(' 0 ', now), 0);
    assert.equal(parseRetryAfter('Mon, 23 Nov 2026 12:00:05 GMT', now), 5000);
    assert.equal(parseRetryAfter('Mon, 23 Nov 2026 11:00:00 GMT', now), 0);
    for (const bad of [null, undefined, '', '-1', '1.5', 'soon']) assert.equal(parseRetryAfter(bad, now), undefined, String(bad));
  });
});

describe('the retry decision', () => {
  it('retries timeouts, network errors, 429/502/503/504 and problem+json retryable: true', () => {
    for (const o of [{ kind: 'timeout' } as const, { kind: 'network' } as const, status(429), status(502), status(503), status(504), status(500, { retryable: true }), status(409, { retryable: true })]) {
      assert.equal(decideRetry(GET, o, 0).retry, true, JSON.stringify(o));
    }
  });

  it('never retries a 400, 401, 409 or other 4xx, nor a success', () => {
    for (const s of [400, 401, 403, 404, 409, 412, 413, 422]) {
      assert.deepEqual(decideRetry(GET, status(s), 0), { retry: false, reason: 'not_retryable' }, `GET ${s}`);
      assert.deepEqual(decideRetry(GET, status(s, { retryable: false }), 0), { retry: false, reason: 'not_retryable' }, `GET ${s} problem`);
      assert.deepEqual(decideRetry(POST_KEYED, status(s), 0), { retry: false, reason: 'not_retryable' }, `POST ${s}`);
    }
    assert.deepEqual(decideRetry(GET, status(200), 0), { retry: false, reason: 'success' });
    assert.deepEqual(decideRetry(GET, status(503, { retryable: false }), 0), { retry: false, reason: 'not_retryable' });
  });

  it('retries a POST only when it carries an Idempotency-Key', () => {
    for (const o of [{ kind: 'timeout' } as const, { kind: 'network' } as const, status(503), status(429)]) {
      assert.deepEqual(decideRetry(POST, o, 0), { retry: false, reason: 'unsafe' });
      assert.deepEqual(decideRetry({ method: 'PATCH' }, o, 0), { retry: false, reason: 'unsafe' });
      assert.equal(decideRetry(POST_KEYED, o, 0).retry, true);
      assert.equal(decideRetry({ method: 'put' }, o, 0).retry, true);
    }
  });

  it('honours Retry-After, and gives up when it is longer than the policy waits', () => {
    const d = decideRetry(GET, status(503, { retryAfter: '3' }), 0, { random: () => 0.5 });
    assert.ok(d.retry && d.delayMs >= 3000 && d.delayMs <= 6000, JSON.stringify(d));
    assert.deepEqual(decideRetry(GET, status(503, { retryAfter: '120' }), 0, { maxRetryAfterMs: 30_000 }), { retry: false, reason: 'retry_after_too_long' });
  });

  it('stops after maxRetries', () => {
    assert.equal(decideRetry(GET, status(503), 1, { maxRetries: 2 }).retry, true);
    assert.deepEqual(decideRetry(GET, status(503), 2, { maxRetries: 2 }), { retry: false, reason: 'attempts' });
  });
});

describe('the retry budget', () => {
  /** N requests that all fail; each retried while the policy allows. Returns retries made. */
  function totalFailure(requests: number, budget: RetryBudget, maxRetries = 3): number {
    let retries = 0;
    for (let i = 0; i < requests; i++) {
      budget.deposit();
      for (let r = 0; ; r++) {
        const d = decideRetry(GET, status(503), r, { budget, maxRetries, random: () => 0 });
        if (!d.retry) break;
        retries++;
      }
    }
    return retries;
  }

  it('caps retries at ~10 % of requests under total failure', () => {
    const budget = new RetryBudget();
    const retries = totalFailure(10_000, budget);
    assert.ok(retries >= 999 && retries <= 1_000 + 10, `retries ${retries}`);
    assert.equal(budget.retries, retries);
    assert.ok(budget.denied > 9_000);
    // Without a budget the same failure makes three retries per request.
    let unbudgeted = 0;
    for (let i = 0; i < 100; i++) for (let r = 0; decideRetry(GET, status(503), r, { maxRetries: 3 }).retry; r++) unbudgeted++;
    assert.equal(unbudgeted, 300);
  });

  it('property: retries ≤ ratio × requests + maxTokens, whatever fails and in whatever order', () => {
    const outcome = fc.constantFrom<AttemptOutcome>(status(200), status(400), status(503), status(429), { kind: 'timeout' }, { kind: 'network' }, status(500, { retryable: true }));
    fc.assert(
      fc.property(
        fc.array(fc.array(outcome, { minLength: 1, maxLength: 5 }), { maxLength: 400 }),
        fc.double({ min: 0, max: 0.5, noNaN: true }),
        fc.integer({ min: 0, max: 20 }),
        (requests, ratio, maxTokens) => {
          const budget = new RetryBudget({ ratio, maxTokens });
          let retries = 0;
          for (const attempts of requests) {
            budget.deposit();
            for (let r = 0; r < attempts.length; r++) {
              if (!decideRetry(GET, attempts[r]!, r, { budget, maxRetries: 4, random: () => 0 }).retry) break;
              retries++;
            }
          }
          return retries <= ratio * requests.length + maxTokens + 1e-9 && retries === budget.retries;
        },
      ),
      FC,
    );
  });

  it('refills over time for clients that send little, never above maxTokens', () => {
    let now = 0;
    const budget = new RetryBudget({ maxTokens: 2, initialTokens: 0, refillPerSecond: 0.5, now: () => now });
    assert.equal(budget.withdraw(), false);
    now = 2_000;
    assert.equal(budget.withdraw(), true);
    assert.equal(budget.withdraw(), false);
    now = 600_000;
    assert.equal(budget.available, 2);
  });
});

describe('fetchWithRetry', () => {
  /** A fake fetch answering from a script; records each call's method and headers. */
  function scripted(script: (number | 'hang' | 'reset' | { status: number; headers?: Record<string, string>; body?: unknown })[]) {
    const calls: { url: string; init: RequestInit }[] = [];
    const fetchFn = async (url: string, init: RequestInit): Promise<FetchResponseLike> => {
      calls.push({ url, init });
      const step = script[Math.min(calls.length - 1, script.length - 1)]!;
      if (step === 'reset') throw new TypeError('fetch failed: ECONNRESET');
      if (step === 'hang') {
        return new Promise((_, reject) => init.signal!.addEventListener('abort', () => reject(init.signal!.reason), { once: true }));
      }
      const s = typeof step === 'number' ? { status: step } : step;
      const isProblem = s.status >= 400 && s.body !== undefined;
      const headers = new Headers({ ...(isProblem ? { 'content-type': 'application/problem+json' } : {}), ...s.headers });
      return new Response(s.body === undefined ? null : JSON.stringify(s.body), { status: s.status, headers });
    };
    return { calls, fetchFn };
  }
  const noWait = (delays: number[]) => ({ sleep: async (ms: number) => void delays.push(ms), random: () => 0.5 });

  it('retries a 503 after its Retry-After and returns the success', async () => {
    const { calls, fetchFn } = scripted([{ status: 503, headers: { 'retry-after': '1' }, body: { code: 'unavailable', retryable: true } }, 200]);
    const delays: number[] = [];
    const res = await fetchWithRetry(fetchFn, 'http://x/v1/a', { method: 'GET' }, noWait(delays));
    assert.equal(res.status, 200);
    assert.equal(calls.length, 2);
    assert.ok(delays[0]! >= 1000 && delays[0]! <= 2000, String(delays));
  });

  it('returns a 400/401/409 at once, and a 409 the server marks retryable is retried', async () => {
    for (const s of [400, 401, 409]) {
      const { calls, fetchFn } = scripted([{ status: s, body: { code: 'x', retryable: false } }, 200]);
      const res = await fetchWithRetry(fetchFn, 'http://x/', { method: 'GET' }, noWait([]));
      assert.equal(res.status, s);
      assert.equal(calls.length, 1);
    }
    const { calls, fetchFn } = scripted([{ status: 409, body: { code: 'idempotency_in_progress', retryable: true } }, 201]);
    const res = await fetchWithRetry(fetchFn, 'http://x/', { method: 'POST', headers: { 'Idempotency-Key': 'k1' } }, noWait([]));
    assert.equal(res.status, 201);
    assert.equal(calls.length, 2);
  });

  it('does not retry a POST without Idempotency-Key; with one, sends the same key again', async () => {
    const plain = scripted([503, 201]);
    assert.equal((await fetchWithRetry(plain.fetchFn, 'http://x/', { method: 'POST', body: '{}' }, noWait([]))).status, 503);
    assert.equal(plain.calls.length, 1);
    const keyed = scripted([503, 'reset', 201]);
    const res = await fetchWithRetry(keyed.fetchFn, 'http://x/', { method: 'POST', body: '{}', headers: new Headers({ 'idempotency-key': 'k2' }) }, noWait([]));
    assert.equal(res.status, 201);
    assert.equal(keyed.calls.length, 3);
    for (const c of keyed.calls) assert.equal(new Headers(c.init.headers).get('idempotency-key'), 'k2');
  });

  it('times out each attempt, retries, then throws a TimeoutError', async () => {
    const { calls, fetchFn } = scripted(['hang']);
    await assert.rejects(fetchWithRetry(fetchFn, 'http://x/', { method: 'GET' }, { ...noWait([]), timeoutMs: 20, maxRetries: 2 }), { name: 'TimeoutError' });
    assert.equal(calls.length, 3);
  });

  it('a shared budget stops retries once spent', async () => {
    const budget = new RetryBudget({ maxTokens: 1, ratio: 0 });
    const { calls, fetchFn } = scripted([503]);
    const res = await fetchWithRetry(fetchFn, 'http://x/', { method: 'GET' }, { ...noWait([]), budget, maxRetries: 5 });
    assert.equal(res.status, 503);
    assert.equal(calls.length, 2);
    assert.equal(budget.denied, 1);
  });

  it("the caller's signal aborts a wait between attempts", async () => {
    const { fetchFn } = scripted([{ status: 503, headers: { 'retry-after': '5' } }]);
    const ac = new AbortController();
    const t0 = performance.now();
    setTimeout(() => ac.abort(new Error('user left the screen')), 30);
    await assert.rejects(fetchWithRetry(fetchFn, 'http://x/', { method: 'GET', signal: ac.signal }, { timeoutMs: 1000 }), /user left the screen/);
    assert.ok(performance.now() - t0 < 2_000);
  });

  it('works with the global fetch against a real server (503 + Retry-After, then 200)', async () => {
    let calls = 0;
    const server = createServer((req, res) => {
      calls++;
      if (calls === 1) {
        res.writeHead(503, { 'content-type': 'application/problem+json', 'retry-after': '0' });
        res.end(JSON.stringify({ type: 'urn:levee:problem:overloaded', status: 503, code: 'overloaded', retryable: true }));
      } else {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ok: true, method: req.method }));
      }
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    try {
      const { port } = server.address() as AddressInfo;
      const res = await fetchWithRetry(fetch, `http://127.0.0.1:${port}/v1/x`, { method: 'GET' }, { backoff: { baseMs: 1, capMs: 5 }, timeoutMs: 5_000 });
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { ok: true, method: 'GET' });
      assert.equal(calls, 2);
    } finally {
      server.close();
    }
  });
});
