import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { v7 } from 'uuid';
import { createTestApp, signUp, type TestApp } from '../support/app.js';
import { engines } from '../support/engines.js';
import { WsClient } from './client.js';

// Offline writes uploaded through sync (this API's push and WatermelonDB's) reach realtime
// subscribers at once: the idle poll is set to a minute, so only the write's own poke can deliver.

for (const engine of await engines()) {
  describe(`sync writes reach realtime subscribers on ${engine.name}`, { skip: engine.skip }, () => {
    let t: TestApp;
    let base: string;
    let alice: Awaited<ReturnType<typeof signUp>>;
    const open: WsClient[] = [];
    before(async () => {
      t = await createTestApp(engine, { collections: { notes: { read: 'owner', write: 'owner' } }, realtime: true, overrides: { realtimePollMs: 60_000 } });
      base = await t.app.listen({ port: 0, host: '127.0.0.1' });
      alice = await signUp(t);
    });
    after(async () => {
      for (const c of open) c.ws.terminate();
      await t.close();
    });

    it('delivers a sync push and a WatermelonDB push within two seconds', async () => {
      const c = await WsClient.open(base, { token: alice.accessToken });
      open.push(c);
      assert.equal((await c.subscribe({ collections: ['notes'] })).subscribed.type, 'subscribed');

      const id = v7();
      const pushed = await t.call('POST', '/v1/sync/push', { token: alice.accessToken, body: { mutations: [{ id: 'm1', collection: 'notes', op: 'create', docId: id, data: { title: 'offline' } }] } });
      assert.equal(pushed.json().results[0].status, 'applied');
      assert.equal((await c.change((m) => m.change.id === id, 2_000)).change.op, 'create');

      const pull = (await t.call('GET', '/v1/sync/watermelon', { token: alice.accessToken })).json();
      const wid = v7();
      const wm = await t.call('POST', '/v1/sync/watermelon', {
        token: alice.accessToken,
        body: { changes: { notes: { created: [{ id: wid, title: 'from watermelon', _status: 'created', _changed: '' }], updated: [], deleted: [] } }, lastPulledAt: pull.timestamp },
      });
      assert.equal(wm.statusCode, 204, wm.body);
      assert.deepEqual((await c.change((m) => m.change.id === wid, 2_000)).change.data, { title: 'from watermelon' });
    });
  });
}
