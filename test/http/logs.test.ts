import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/observability/logger.js';
import { createTestApp, uniqueEmail, type TestApp } from '../support/app.js';
import { engines } from '../support/engines.js';

// Logs are JSON lines, one per request with its request id, and never carry passwords or tokens —
// even at trace level and when the request fails.
for (const engine of await engines()) {
  describe(`structured logs on ${engine.name}`, { skip: engine.skip }, () => {
    let t: TestApp;
    const lines: string[] = [];
    before(async () => {
      const sink = new PassThrough();
      sink.on('data', (chunk: Buffer) => lines.push(...chunk.toString('utf8').split('\n').filter(Boolean)));
      t = await createTestApp(engine, { logger: createLogger('trace', sink) });
    });
    after(() => t.close());

    it('one JSON line per request with its request id; no secret in any line', async () => {
      const email = uniqueEmail('logs');
      const password = 'Sup3r secret pass';
      const up = await t.call('POST', '/v1/auth/signup', { body: { email, password }, headers: { 'x-request-id': 'log-test-1' } });
      assert.equal(up.statusCode, 201);
      const { accessToken, refreshToken } = up.json();
      await t.call('POST', '/v1/auth/signin', { body: { email, password: 'wrong but secret-ish' } });
      const refreshed = await t.call('POST', '/v1/auth/refresh', { body: { refreshToken } });
      await t.call('GET', '/v1/auth/me', { token: accessToken });
      await t.call('GET', '/v1/auth/me', { token: `${accessToken}x` }); // a bad token is logged as a failure, not echoed
      await t.call('POST', '/v1/auth/password', { token: accessToken, body: { currentPassword: password, newPassword: 'another s3cret pw' } });
      await new Promise((r) => setImmediate(r));

      assert.ok(lines.length >= 6, `expected request lines, got ${lines.length}`);
      const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
      const requests = parsed.filter((l) => l.msg === 'request');
      assert.ok(requests.length >= 6);
      assert.ok(requests.every((l) => typeof l.requestId === 'string' && typeof l.status === 'number' && typeof l.route === 'string'));
      assert.ok(requests.some((l) => l.requestId === 'log-test-1' && l.status === 201));
      const all = lines.join('\n');
      for (const secret of [password, 'wrong but secret-ish', 'another s3cret pw', accessToken, refreshToken, refreshed.json().refreshToken]) {
        assert.ok(!all.includes(secret), `a secret leaked into the logs: ${String(secret).slice(0, 12)}…`);
      }
    });

    it('redacts secrets when an object carrying them is logged', () => {
      const sink = new PassThrough();
      const out: string[] = [];
      sink.on('data', (c: Buffer) => out.push(c.toString()));
      const log = createLogger('info', sink);
      log.info({ body: { password: 'p4ss', refreshToken: 'rt_abc' }, req: { headers: { authorization: 'Bearer xyz' } }, accessToken: 'eyJ' }, 'x');
      return new Promise<void>((resolve) =>
        setImmediate(() => {
          const text = out.join('');
          for (const s of ['p4ss', 'rt_abc', 'Bearer xyz', 'eyJ']) assert.ok(!text.includes(s), `${s} leaked: ${text}`);
          assert.match(text, /\[redacted\]/);
          resolve();
        }),
      );
    });
  });
}
