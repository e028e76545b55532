import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, uniqueEmail, type TestApp } from '../support/app.js';
import { engines } from '../support/engines.js';
import { from, LIMITS } from '../support/rate-limits.js';
import { closedPort, silentServer } from '../support/redis.js';

// REDIS_URL set but Redis refusing connections, or accepting them and never answering: every
// request is still answered promptly (no request waits on Redis), and the limits still hold, per
// process.

const pglite = (await engines()).find((e) => e.name === 'pglite')!;

describe('Redis unreachable: requests are served promptly and limits apply per process', () => {
  for (const kind of ['refused connections', 'a server that accepts and never answers'] as const) {
    describe(kind, () => {
      let t: TestApp;
      let silent: Awaited<ReturnType<typeof silentServer>> | undefined;
      before(async () => {
        silent = kind === 'refused connections' ? undefined : await silentServer();
        const redisUrl = silent?.url ?? `redis://127.0.0.1:${await closedPort()}`;
        t = await createTestApp(pglite, { overrides: { ...LIMITS, rateLimitIpBurst: 3, redisUrl, redisCommandTimeoutMs: 100 } });
      });
      after(async () => {
        await t?.close();
        await silent?.close();
      });

      it('each request well under 500 ms; the per-IP limit still holds', async () => {
        const call = from(t, '10.3.0.1');
        const times: number[] = [];
        const statuses: number[] = [];
        for (let i = 0; i < 6; i++) {
          const t0 = performance.now();
          // A route that does not touch the database: the time measured is the limits' own.
          statuses.push((await call('GET', '/v1/auth/me')).statusCode);
          times.push(performance.now() - t0);
        }
        assert.deepEqual(statuses, [401, 401, 401, 429, 429, 429]);
        assert.ok(Math.max(...times) < 500, times.map((ms) => ms.toFixed(0)).join(' '));
        // While disconnected the client refuses at once (no offline queue): not even the command
        // timeout is paid — six requests take less than four timeouts' worth.
        assert.ok(times.reduce((a, b) => a + b) < 400, times.map((ms) => ms.toFixed(0)).join(' '));
        assert.match((await t.call('GET', '/metrics')).body, /levee_rate_limit_fallback_total\{limit="ip"[^}]*\} [1-9]/);
      });

      it('sign-in throttling still holds, promptly', async () => {
        const email = uniqueEmail('down');
        const t0 = performance.now();
        for (let i = 0; i < 3; i++) assert.equal((await from(t, `10.3.1.${i}`)('POST', '/v1/auth/signin', { body: { email, password: 'wrong password' } })).statusCode, 401);
        const blocked = await from(t, '10.3.1.9')('POST', '/v1/auth/signin', { body: { email, password: 'wrong password' } });
        assert.equal(blocked.statusCode, 429);
        assert.ok(performance.now() - t0 < 2_000, `${(performance.now() - t0).toFixed(0)} ms for 4 sign-ins`);
      });
    });
  }
});
