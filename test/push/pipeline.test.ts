import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { fanoutHandler } from '../../src/push/fanout.js';
import type { Platform, PushMessage, PushProvider, PushTarget, SendResult } from '../../src/push/providers/port.js';
import { sendHandler } from '../../src/push/sender.js';
import { startPush } from '../../src/roles/push.js';
import { startWorker } from '../../src/roles/worker.js';
import { createTestApp, makeAdmin, signUp, type TestApp } from '../support/app.js';
import { engines } from '../support/engines.js';

// The push pipeline end to end on each database engine (jobs on the same engine): POST /v1/push,
// fan-out, provider batches, the push role's sends, progress. The providers here are recorders that
// implement the provider port; their real protocols are tested against local mock servers in
// providers.test.ts.

const SERVER_KEY = 'k'.repeat(40);

/** A provider that records every send and answers per token as told. */
function recorder(platform: Platform) {
  const sent = new Map<string, number>();
  const script = new Map<string, SendResult[]>();
  const messages: PushMessage[] = [];
  const state = { down: false };
  const provider: PushProvider = {
    platform,
    unavailableFor: () => (state.down ? 200 : undefined),
    async send(target: PushTarget, message: PushMessage): Promise<SendResult> {
      const token = target.platform === 'webpush' ? target.subscription.endpoint : target.token;
      const next = script.get(token)?.shift();
      if (next && next.outcome !== 'sent') return next;
      sent.set(token, (sent.get(token) ?? 0) + 1);
      messages.push(message);
      return { outcome: 'sent' };
    },
    close: async () => {},
  };
  return { provider, sent, script, messages, state };
}

const until = async (what: string, check: () => Promise<boolean> | boolean, ms = 15_000) => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`not within ${ms} ms: ${what}`);
};

for (const engine of await engines()) {
  describe(`push pipeline on ${engine.name}`, { skip: engine.skip }, () => {
    let t: TestApp;
    let admin: string;
    const apns = recorder('apns');
    const fcm = recorder('fcm');
    let role: { stop(): Promise<void> };
    let worker: { stop(): Promise<void> };
    before(async () => {
      t = await createTestApp(engine, { queues: true, overrides: { pushTopics: ['news'], serverKey: SERVER_KEY, rateLimitIpPerMinute: 1_000_000, rateLimitIpBurst: 100_000, rateLimitUserPerMinute: 1_000_000, rateLimitUserBurst: 100_000, rateLimitSignupPerMinute: 100_000 } });
      admin = (await makeAdmin(t)).accessToken;
      // The worker role fans pushes out; the push role sends.
      worker = await startWorker({ db: t.services.db, clock: { now: () => new Date() }, logger: pino({ level: 'silent' }), queues: t.queues! });
      role = startPush({ db: t.services.db, clock: { now: () => new Date() }, logger: pino({ level: 'silent' }), queues: t.queues!, registry: t.metrics.registry, providers: { apns: apns.provider, fcm: fcm.provider } });
    });
    after(async () => {
      await role.stop();
      await worker.stop();
      await t.close();
    });

    const device = async (token: string, platform: 'apns' | 'fcm', topics: string[] = []) => {
      const value = platform === 'apns' ? randomBytes(32).toString('hex') : `fcm-${randomBytes(40).toString('base64url')}`;
      const res = await t.call('POST', '/v1/devices', { token, body: { platform, token: value, topics } });
      assert.ok(res.statusCode === 201, res.body);
      return value;
    };
    const push = async (body: unknown, headers: Record<string, string> = { 'x-server-key': SERVER_KEY }) => t.call('POST', '/v1/push', { body, headers });
    const progress = async (id: string) => (await t.call('GET', `/v1/push/${id}`, { headers: { 'x-server-key': SERVER_KEY } })).json();

    it('sends to every device of the targeted users once, and reports progress to done', async () => {
      const a = await signUp(t);
      const b = await signUp(t);
      const tokens = [await device(a.accessToken, 'apns'), await device(a.accessToken, 'fcm'), await device(b.accessToken, 'apns')];
      const res = await push({ audience: { userIds: [a.user.id, b.user.id] }, title: 'Hello', body: 'World', data: { postId: '42' }, collapseId: 'greeting', priority: 'normal' });
      assert.equal(res.statusCode, 202, res.body);
      const id = res.json().id;
      await until('done', async () => (await progress(id)).state === 'done');
      const p = await progress(id);
      assert.deepEqual([p.targeted, p.sent, p.failed, p.pruned, p.pending], [3, 3, 0, 0, 0]);
      for (const tok of tokens) assert.equal((apns.sent.get(tok) ?? 0) + (fcm.sent.get(tok) ?? 0), 1, tok);
      const m = apns.messages.at(-1)!;
      assert.deepEqual([m.title, m.body, m.data, m.collapseId, m.priority], ['Hello', 'World', { postId: '42' }, 'greeting', 'normal']);
      assert.ok(m.expiresAt instanceof Date && m.expiresAt.getTime() > Date.now());
    });

    it('prunes devices the provider disowns and retries what it asks to, honouring Retry-After', async () => {
      const a = await signUp(t);
      const gone = await device(a.accessToken, 'apns');
      const flaky = await device(a.accessToken, 'fcm');
      apns.script.set(gone, [{ outcome: 'invalid_token', reason: 'Unregistered' }]);
      fcm.script.set(flaky, [{ outcome: 'retry', reason: '503', retryAfterMs: 300 }]);
      const started = Date.now();
      const id = (await push({ audience: { userIds: [a.user.id] }, body: 'x' })).json().id;
      await until('done', async () => (await progress(id)).state === 'done');
      const p = await progress(id);
      assert.deepEqual([p.targeted, p.sent, p.failed, p.pruned], [2, 1, 0, 1]);
      assert.equal(fcm.sent.get(flaky), 1);
      assert.ok(Date.now() - started >= 300, 'the retry waited for Retry-After');
      const left = (await t.call('GET', '/v1/devices', { token: a.accessToken })).json().devices;
      assert.equal(left.length, 1, 'the disowned device was removed');
    });

    it('while a provider is unavailable (circuit open) its batches wait without claiming anything, then go out', async () => {
      const a = await signUp(t);
      const tok = await device(a.accessToken, 'fcm');
      fcm.state.down = true;
      try {
        const id = (await push({ audience: { userIds: [a.user.id] }, body: 'wait for it' })).json().id;
        await until('fanned out', async () => (await progress(id)).state === 'sending');
        await new Promise((r) => setTimeout(r, 600));
        const states = (await t.database.db.query<{ state: string; attempts: number }>('SELECT state, attempts FROM push_deliveries WHERE push_id = $1', [id])).rows;
        assert.deepEqual(states, [{ state: 'pending', attempts: 0 }], 'not claimed while the provider is down');
        assert.equal(fcm.sent.get(tok) ?? 0, 0);
        fcm.state.down = false;
        await until('done', async () => (await progress(id)).state === 'done');
        assert.equal(fcm.sent.get(tok), 1);
      } finally {
        fcm.state.down = false;
      }
    });

    it('a batch run twice, or a fan-out run twice, sends nothing twice (dedupe per push and device)', async () => {
      const a = await signUp(t);
      const toks = [await device(a.accessToken, 'apns'), await device(a.accessToken, 'apns'), await device(a.accessToken, 'fcm')];
      const id = (await push({ audience: { userIds: [a.user.id] }, body: 'once' })).json().id;
      await until('done', async () => (await progress(id)).state === 'done');
      // Replays, as after a crash between a send and its job's completion.
      const ctx = { id: 'x', name: 'n', queue: 'q', attempt: 2, signal: new AbortController().signal };
      await fanoutHandler({ db: t.services.db, clock: { now: () => new Date() }, queues: t.queues! })({ pushId: id }, ctx);
      const ids = (await t.database.db.query<{ device_id: string; platform: Platform }>('SELECT device_id, platform FROM push_deliveries WHERE push_id = $1', [id])).rows;
      const send = sendHandler({ db: t.services.db, clock: { now: () => new Date() }, queues: t.queues!, providers: { apns: apns.provider, fcm: fcm.provider }, registry: new (await import('prom-client')).Registry() });
      for (const platform of ['apns', 'fcm'] as const) await send({ pushId: id, platform, deviceIds: ids.filter((d) => d.platform === platform).map((d) => d.device_id) }, ctx);
      await new Promise((r) => setTimeout(r, 300));
      for (const tok of toks) assert.equal((apns.sent.get(tok) ?? 0) + (fcm.sent.get(tok) ?? 0), 1);
      assert.deepEqual([(await progress(id)).sent, (await progress(id)).targeted], [3, 3]);
    });

    it('deliveries left mid-send by a stopped worker are failed by housekeeping (never sent twice), and their push finishes', async () => {
      const a = await signUp(t);
      await device(a.accessToken, 'apns');
      await device(a.accessToken, 'apns');
      const { pushStore, deliveryStore } = await import('../../src/push/store.js');
      const { housekeeping } = await import('../../src/roles/worker.js');
      const { newId } = await import('../../src/lib/ids.js');
      // A push fanned out by hand, and its deliveries claimed by a worker that then died.
      const id = newId();
      const now = new Date();
      await pushStore.insert(t.services.db, { id, createdBy: 'test', audience: { userIds: [a.user.id] }, message: { body: 'lost', priority: 'high' }, sendAt: now, expiresAt: null, now });
      await pushStore.extendAudience(t.services.db, { id, audience: { userIds: [a.user.id] } }, 100, now);
      await pushStore.extendAudience(t.services.db, { id, audience: { userIds: [a.user.id] } }, 100, now);
      await pushStore.fanoutDone(t.services.db, id, now);
      const ids = (await t.database.db.query<{ device_id: string }>('SELECT device_id FROM push_deliveries WHERE push_id = $1', [id])).rows.map((r) => r.device_id);
      assert.equal((await deliveryStore.claim(t.services.db, id, ids, now)).claimed.length, 2);
      assert.equal((await housekeeping(t.database.db, new Date(now.getTime() + 60_000))).stuckPushDeliveries, 0, 'not yet: it may still be sending');
      const settled = await housekeeping(t.database.db, new Date(now.getTime() + 11 * 60_000));
      assert.equal(settled.stuckPushDeliveries, 2);
      const p = await progress(id);
      assert.deepEqual([p.state, p.targeted, p.failed, p.pending], ['done', 2, 2, 0]);
    });

    it('fans a large audience out in batches: topics and everyone', async () => {
      const users = await Promise.all(Array.from({ length: 4 }, () => signUp(t)));
      const news: string[] = [];
      for (const u of users) for (let i = 0; i < 3; i++) news.push(await device(u.accessToken, i % 2 ? 'fcm' : 'apns', ['news']));
      const id = (await push({ audience: { topics: ['news'] }, title: 'Breaking' })).json().id;
      await until('done', async () => (await progress(id)).state === 'done');
      const p = await progress(id);
      assert.equal(p.targeted, news.length);
      for (const tok of news) assert.equal((apns.sent.get(tok) ?? 0) + (fcm.sent.get(tok) ?? 0), 1);

      const total = (await t.database.db.query<{ n: number }>('SELECT count(*)::int AS n FROM devices')).rows[0]!.n;
      const everyone = (await push({ audience: { all: true }, body: 'all' })).json().id;
      await until('done', async () => (await progress(everyone)).state === 'done');
      assert.equal((await progress(everyone)).targeted, total);
    });

    it('a push scheduled for later waits; an expired one fails instead of arriving late', async () => {
      const a = await signUp(t);
      const tok = await device(a.accessToken, 'apns');
      const later = (await push({ audience: { userIds: [a.user.id] }, body: 'later', sendAt: new Date(Date.now() + 1_500).toISOString() })).json();
      assert.equal(later.state, 'scheduled');
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(apns.sent.get(tok) ?? 0, 0);
      await until('sent', async () => (await progress(later.id)).state === 'done');
      assert.equal(apns.sent.get(tok), 1);

      const stale = (await push({ audience: { userIds: [a.user.id] }, body: 'stale', ttlSeconds: 0 })).json().id;
      await until('done', async () => (await progress(stale)).state === 'done');
      assert.deepEqual([(await progress(stale)).failed, apns.sent.get(tok)], [1, 1]);
    });

    it('only the server key or an admin may send; bad pushes are refused with nothing stored', async () => {
      const user = await signUp(t);
      const ok = { audience: { all: true }, body: 'x' };
      const pushes = async () => (await t.database.db.query<{ n: number }>('SELECT count(*)::int AS n FROM pushes')).rows[0]!.n;
      const before = await pushes();
      assert.equal((await push(ok, {})).statusCode, 401);
      assert.equal((await push(ok, { 'x-server-key': 'nope' })).statusCode, 401);
      assert.equal((await push(ok, { authorization: `Bearer ${user.accessToken}` })).statusCode, 403);
      assert.equal((await t.call('GET', `/v1/push/${'0'.repeat(8)}-0000-4000-8000-${'0'.repeat(12)}`, { token: user.accessToken })).statusCode, 403);
      const cases: [unknown, number, string][] = [
        [{ audience: { all: true, topics: ['news'] }, body: 'x' }, 400, 'validation_failed'],
        [{ audience: {}, body: 'x' }, 400, 'validation_failed'],
        [{ audience: { topics: ['gossip'] }, body: 'x' }, 400, 'unknown_topic'],
        [{ audience: { all: true } }, 400, 'invalid_push'],
        [{ audience: { userIds: ['not-a-uuid'] }, body: 'x' }, 400, 'validation_failed'],
        [{ audience: { all: true }, body: 'x', sendAt: new Date(Date.now() + 40 * 86_400_000).toISOString() }, 400, 'invalid_push'],
        [{ audience: { all: true }, body: 'x', data: { big: 'y'.repeat(4000), more: 'z'.repeat(200) } }, 413, 'payload_too_large_for_provider'],
        [{ audience: { all: true }, body: 'x', priority: 'urgent' }, 400, 'validation_failed'],
      ];
      for (const [body, status, code] of cases) {
        const res = await push(body, { authorization: `Bearer ${admin}` });
        assert.deepEqual([res.statusCode, res.json().code], [status, code], JSON.stringify(body).slice(0, 100));
      }
      assert.equal(await pushes(), before);
      assert.equal((await t.call('GET', `/v1/push/${'0'.repeat(8)}-0000-4000-8000-${'0'.repeat(12)}`, { token: admin })).statusCode, 404);
    });
  });
}
