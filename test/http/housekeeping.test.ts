import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import pino from 'pino';
import type { PgliteDb } from '../../src/db/adapters/pglite.js';
import { openJobQueues } from '../../src/jobs/engines.js';
import { queueSpecs } from '../../src/jobs/queues.js';
import { housekeeping, startWorker } from '../../src/roles/worker.js';
import { createTestApp, signUp, type TestApp } from '../support/app.js';
import { engines } from '../support/engines.js';

const DAY = 86_400_000;
const rows = async (t: TestApp, table: string) => (await t.database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]!.n;

for (const engine of await engines()) {
  describe(`worker housekeeping on ${engine.name}`, { skip: engine.skip }, () => {
    let t: TestApp;
    before(async () => {
      t = await createTestApp(engine);
    });
    after(() => t.close());

    it('purges expired idempotency records, long-ended sessions and old used refresh tokens — and nothing live', async () => {
      const live = await signUp(t);
      const rotated = await t.call('POST', '/v1/auth/refresh', { body: { refreshToken: live.refreshToken } });
      const ended = await signUp(t);
      await t.call('POST', '/v1/auth/signout', { token: ended.accessToken });
      await t.call('POST', '/v1/collections/notes/documents', { token: live.accessToken, body: { a: 1 }, headers: { 'idempotency-key': 'hk-1' } });

      // Nothing is old enough yet.
      const now = Date.now();
      assert.deepEqual(await housekeeping(t.database.db, new Date(now)), { idempotencyKeys: 0, sessionsAndTokens: 0, stuckPushDeliveries: 0, tombstones: 0, syncMutations: 0 });

      // 31 days on: the idempotency record (24 h), the signed-out session (30 d) with its tokens, and
      // the live session's used token (7 d) go; the live session and its current token stay.
      const sessionsBefore = await rows(t, 'sessions');
      const purged = await housekeeping(t.database.db, new Date(now + 31 * DAY));
      assert.equal(purged.idempotencyKeys, 1);
      assert.ok(purged.sessionsAndTokens >= 2);
      assert.equal(await rows(t, 'idempotency_keys'), 0);
      assert.equal(await rows(t, 'sessions'), sessionsBefore - 1);
      const again = await t.call('POST', '/v1/auth/refresh', { body: { refreshToken: rotated.json().refreshToken } });
      assert.equal(again.statusCode, 200, 'the live session still refreshes');
    });

    it('the worker role runs it as a recurring job on the maintenance queue', async () => {
      await t.call('POST', '/v1/collections/notes/documents', { token: (await signUp(t)).accessToken, body: { a: 2 }, headers: { 'idempotency-key': 'hk-2' } });
      assert.equal(await rows(t, 'idempotency_keys'), 1);
      const queues = await openJobQueues(
        engine.name === 'pglite' ? { kind: 'pglite', session: (t.database.db as PgliteDb).session } : { kind: 'postgres', url: t.database.url!, poolSize: 4 },
        queueSpecs(),
        new Registry(),
      );
      const later = { now: () => new Date(Date.now() + 2 * DAY) };
      const worker = await startWorker({ db: t.database.db, clock: later, logger: pino({ level: 'silent' }), queues, housekeepingEveryMs: 200 });
      try {
        const until = Date.now() + 10_000;
        while ((await rows(t, 'idempotency_keys')) > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
        assert.equal(await rows(t, 'idempotency_keys'), 0, 'purged by the scheduled job');
      } finally {
        await worker.stop();
        await queues.unschedule('maintenance', 'housekeeping');
        await queues.close();
      }
    });
  });
}
