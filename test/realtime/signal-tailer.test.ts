import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { createLogger } from '../../src/observability/logger.js';
import { createDependencies } from '../../src/protection/dependency.js';
import { createSharedRedis } from '../../src/protection/redis.js';
import { createRedisSignal } from '../../src/realtime/signal.js';
import { createTailer } from '../../src/realtime/tailer.js';
import type { RealtimeEvent } from '../../src/realtime/event.js';
import { changeLog } from '../../src/sync/store.js';
import { createTestApp, signUp, type TestApp } from '../support/app.js';
import { engines } from '../support/engines.js';
import { waitFor } from '../support/process.js';
import { closedPort, REDIS_TEST_URL, redisSkip, uniquePrefix } from '../support/redis.js';

// The change signal and the tailer on their own: a poke never blocks or throws (Redis down: dropped
// and counted), pokes cross processes through Redis, and a poke that arrives before its write
// commits is still followed by the change, well before the idle poll.

const logger = createLogger('silent');
const noRedis = await redisSkip();

describe('change signal', () => {
  it('with Redis down, a poke neither throws nor waits; it is dropped and counted, and local listeners still run', async () => {
    const url = `redis://127.0.0.1:${await closedPort()}`;
    const redis = createSharedRedis({ url, commandTimeoutMs: 50, keyPrefix: 'x:', logger, createDependency: createDependencies(new Registry()) });
    let dropped = 0;
    let heard = 0;
    const signal = createRedisSignal({ redis, url, channel: 'x:realtime:changes', logger, onDropped: () => dropped++ });
    signal.onPoke(() => heard++);
    const t0 = performance.now();
    for (let i = 0; i < 50; i++) signal.poke();
    assert.ok(performance.now() - t0 < 50, 'poke is synchronous and cheap');
    await waitFor('a dropped poke to be counted', async () => dropped > 0, 5_000, 10);
    await waitFor('the local listener', async () => heard > 0, 5_000, 10);
    await signal.close();
    await redis.close();
  });

  it('through Redis, a poke on one instance wakes the others', { skip: noRedis }, async () => {
    const prefix = uniquePrefix();
    const make = () => {
      const redis = createSharedRedis({ url: REDIS_TEST_URL, commandTimeoutMs: 500, keyPrefix: prefix, logger, createDependency: createDependencies(new Registry()) });
      return { redis, signal: createRedisSignal({ redis, url: REDIS_TEST_URL, channel: `${prefix}realtime:changes`, logger }) };
    };
    const a = make();
    const b = make();
    let heardOnB = 0;
    b.signal.onPoke(() => heardOnB++);
    await waitFor('the subscriber to be ready', async () => {
      a.signal.poke();
      await new Promise((r) => setTimeout(r, 20));
      return heardOnB > 0;
    }, 10_000, 50);
    for (const x of [a, b]) {
      await x.signal.close();
      await x.redis.close();
    }
  });
});

for (const engine of await engines()) {
  describe(`tailer on ${engine.name}`, { skip: engine.skip }, () => {
    let t: TestApp;
    before(async () => {
      t = await createTestApp(engine);
    });
    after(() => t.close());

    it('starts at the head, emits later changes in order once, and re-reads after a poke that came before the commit', async () => {
      const user = await signUp(t);
      await t.call('POST', '/v1/collections/posts/documents', { token: user.accessToken, body: { title: 'before start' } });
      const got: RealtimeEvent[] = [];
      const everything = [...t.config.collections.keys()].map((collection) => ({ collection }));
      const tailer = createTailer({
        read: (from, limit) => changeLog.pull(t.database.db, everything, from, limit),
        encode: t.services.cursors.encode,
        emit: (events) => got.push(...events),
        pollMs: 60_000, // the idle poll must not be what finds the change
        logger,
      });
      await tailer.start();
      const principal = await t.services.tokens.verify(user.accessToken);
      // The write pokes, then takes a while to commit (as an Idempotency-Key write does).
      await t.database.db.transaction(async (tx) => {
        await t.services.docs.create('posts', principal, { title: 'slow commit' }, { tx });
        tailer.poke();
        await new Promise((r) => setTimeout(r, 25));
      });
      await waitFor('the change after its late commit', async () => got.length > 0, 5_000, 5);
      for (let i = 0; i < 5; i++) {
        await t.call('POST', '/v1/collections/posts/documents', { token: user.accessToken, body: { title: `n${i}` } });
        tailer.poke();
      }
      await waitFor('five more changes', async () => got.length >= 6, 5_000, 5);
      await tailer.stop();
      assert.deepEqual(got.map((e) => (e.change.data as { title: string }).title), ['slow commit', 'n0', 'n1', 'n2', 'n3', 'n4']);
      const positions = got.map((e) => `${e.position.tx}.${e.position.seq}`);
      assert.equal(new Set(positions).size, positions.length);
      assert.equal(got[0]!.cursor, t.services.cursors.encode(got[0]!.position));
    });
  });
}
