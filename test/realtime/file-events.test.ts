import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import pino from 'pino';
import { createRedisSignal, type UserEvent } from '../../src/realtime/signal.js';
import { createSharedRedis } from '../../src/protection/redis.js';
import { createDependencies } from '../../src/protection/dependency.js';
import { composeWorkerMedia } from '../../src/roles/compose-media.js';
import { startWorker } from '../../src/roles/worker.js';
import { Registry } from 'prom-client';
import { createTestApp, signUp, type TestApp } from '../support/app.js';
import { CI, engines } from '../support/engines.js';
import { jpeg } from '../files/images.js';
import { WsClient } from './client.js';

// A file's processing ends in the worker role; its owner's realtime connections (user channel) hear
// it — `{"type":"event","event":{"type":"file","id",…,"state":"ready"|"failed"}}` — and nobody else's.

const pglite = (await engines()).find((e) => e.name === 'pglite')!;

describe('file state events over realtime', () => {
  let t: TestApp;
  let base: string;
  const open: WsClient[] = [];
  before(async () => {
    t = await createTestApp(pglite, { files: true, queues: true, realtime: true, overrides: { imageMaxPixels: 1_000_000 } });
    base = await t.app.listen({ port: 0, host: '127.0.0.1' });
  });
  after(async () => {
    for (const c of open) c.ws.terminate();
    await t.close();
  });

  it('tells the owner (only) when an uploaded image is ready, and when one failed', async () => {
    const alice = await signUp(t);
    const bob = await signUp(t);
    const mine = await WsClient.open(base, { token: alice.accessToken });
    const theirs = await WsClient.open(base, { token: bob.accessToken });
    open.push(mine, theirs);
    await mine.subscribe({ user: true });
    await theirs.subscribe({ user: true });
    const worker = await startWorker({
      db: t.database.db,
      clock: { now: () => new Date() },
      logger: pino({ level: 'silent' }),
      queues: t.queues!,
      housekeepingEveryMs: 3_600_000,
      media: composeWorkerMedia(t.config, t.services.db, t.files!.storage, t.files!, t.queues!, undefined, t.services.signal),
    });
    try {
      const upload = (body: Buffer) => t.app.inject({ method: 'POST', url: '/v1/files?bucket=avatars', headers: { authorization: `Bearer ${alice.accessToken}`, 'content-type': 'image/jpeg' }, payload: body });
      const good = (await upload(await jpeg(300, 200))).json();
      const ready = await mine.next((m) => m.type === 'event' && m.event.id === good.id, 20_000, 'the ready event');
      assert.deepEqual(ready.event, { type: 'file', id: good.id, state: 'ready' });
      const big = (await upload(await jpeg(1200, 1000))).json(); // over the 1,000,000-pixel limit set above
      const failed = await mine.next((m) => m.type === 'event' && m.event.id === big.id, 20_000, 'the failed event');
      assert.deepEqual(failed.event, { type: 'file', id: big.id, state: 'failed', failureReason: 'image_too_large' });
      await assert.rejects(theirs.next((m) => m.type === 'event', 300, 'an event for someone else'), /timed out/);
    } finally {
      await worker.stop();
      await t.queues!.unschedule('maintenance', 'housekeeping');
    }
  });
});

const redisUp = await (async () => {
  const r = new Redis('redis://127.0.0.1:6379', { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 1000 });
  try {
    await r.connect();
    return true;
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
})();

describe('user events across processes through Redis', { skip: !redisUp && !CI ? 'Redis is not reachable on 127.0.0.1:6379' : false }, () => {
  it('a notice published by one instance (a worker) reaches the listeners of another', async () => {
    const prefix = `levee-test-${process.pid}-${Date.now()}:`;
    const logger = pino({ level: 'silent' });
    const make = () => {
      const redis = createSharedRedis({ url: 'redis://127.0.0.1:6379', commandTimeoutMs: 1000, keyPrefix: prefix, logger, createDependency: createDependencies(new Registry()) });
      return { redis, signal: createRedisSignal({ redis, url: 'redis://127.0.0.1:6379', channel: `${prefix}realtime:changes`, logger }) };
    };
    const api = make();
    const worker = make();
    try {
      const got = new Promise<[string, UserEvent]>((ok) => api.signal.onUserEvent((u, e) => ok([u, e])));
      // The subscriber connects in the background: publish until it hears one (bounded).
      let heard: [string, UserEvent] | undefined;
      void got.then((v) => (heard = v));
      for (let i = 0; i < 50 && !heard; i++) {
        worker.signal.notifyUser('u-1', { type: 'file', id: 'f-1', state: 'ready' });
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.deepEqual(heard, ['u-1', { type: 'file', id: 'f-1', state: 'ready' }]);
    } finally {
      await api.signal.close();
      await worker.signal.close();
      await api.redis.close();
      await worker.redis.close();
    }
  });
});
