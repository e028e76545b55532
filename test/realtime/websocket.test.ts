import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Clock } from '../../src/lib/clock.js';
import { createTestApp, makeAdmin, signUp, type TestApp } from '../support/app.js';
import { engines } from '../support/engines.js';
import { waitFor } from '../support/process.js';
import { WsClient, type Msg } from './client.js';

// Realtime over WebSocket on each engine: delivery with positions, read rules, the user channel,
// resume without gaps or duplicates, and every bound (slow consumer, heartbeat, bad input, token
// expiry, shutdown). The app listens on a real port: upgrades do not go through inject().

const COLLECTIONS = {
  posts: { read: 'public', write: 'owner' },
  notes: { read: 'owner', write: 'owner' },
  members: { read: 'authenticated', write: 'authenticated' },
  settings: { read: 'admin', write: 'admin' },
};

for (const engine of await engines()) {
  describe(`realtime over WebSocket on ${engine.name}`, { skip: engine.skip }, () => {
    let t: TestApp;
    let base: string;
    let alice: Awaited<ReturnType<typeof signUp>>;
    let bob: Awaited<ReturnType<typeof signUp>>;
    // Moved back for the token-expiry test only: tokens issued then expire seconds after issue.
    let clockOffsetMs = 0;
    const clock: Clock = { now: () => new Date(Date.now() + clockOffsetMs) };
    const open: WsClient[] = [];
    const connect = async (opts: Parameters<typeof WsClient.open>[1] = {}) => {
      const c = await WsClient.open(base, opts);
      open.push(c);
      return c;
    };

    before(async () => {
      t = await createTestApp(engine, {
        collections: COLLECTIONS,
        clock,
        realtime: true,
        overrides: { realtimeMaxBufferedBytes: 64 * 1024, realtimeMaxSubscriptions: 3, realtimeMaxFrameBytes: 4096, realtimeMessagesPerSecond: 5 },
      });
      base = await t.app.listen({ port: 0, host: '127.0.0.1' });
      alice = await signUp(t);
      bob = await signUp(t);
    });
    after(async () => {
      for (const c of open) c.ws.terminate();
      await t.close();
    });

    const write = async (collection: string, token: string | undefined, body: unknown) => {
      const res = await t.call('POST', `/v1/collections/${collection}/documents`, { token, body });
      assert.equal(res.statusCode, 201, res.body);
      return res.json() as { id: string; version: number };
    };

    it('delivers a write to a subscriber, with its position', async () => {
      const c = await connect({ token: alice.accessToken });
      const { subscribed } = await c.subscribe({ collections: ['posts'] });
      assert.equal(subscribed.type, 'subscribed', JSON.stringify(subscribed));
      assert.deepEqual(subscribed.collections, ['posts']);
      assert.match(subscribed.position, /^c1\./);
      const doc = await write('posts', bob.accessToken, { title: 'hello' });
      const m = await c.change();
      assert.equal(m.change.id, doc.id);
      assert.equal(m.change.op, 'create');
      assert.equal(m.change.collection, 'posts');
      assert.deepEqual(m.change.data, { title: 'hello' });
      assert.match(m.position, /^c1\./);
      assert.notEqual(m.position, subscribed.position);
      // Anonymous clients may follow public collections.
      const anon = await connect();
      assert.equal((await anon.subscribe({ collections: ['posts'] })).subscribed.type, 'subscribed');
      const upd = await t.call('PATCH', `/v1/collections/posts/documents/${doc.id}`, { token: bob.accessToken, body: { title: 'edited' } });
      assert.equal(upd.statusCode, 200, upd.body);
      const [a, b] = await Promise.all([c.change(), anon.change()]);
      assert.equal(a.change.op, 'update');
      assert.equal(a.change.version, 2);
      assert.equal(a.position, b.position, 'every subscriber sees the same position for a change');
    });

    it('applies read rules: owner-only documents reach their owner only; anonymous and non-admins are refused', async () => {
      const a = await connect({ token: alice.accessToken });
      assert.equal((await a.subscribe({ collections: ['notes'] })).subscribed.type, 'subscribed');
      await write('notes', bob.accessToken, { secret: 'bob' });
      const mine = await write('notes', alice.accessToken, { secret: 'alice' });
      const first = await a.change();
      assert.equal(first.change.id, mine.id, "bob's note must not reach alice");
      assert.equal(first.change.ownerId, alice.user.id);

      const anon = await connect();
      const refused = await anon.subscribe({ collections: ['notes'] });
      assert.equal(refused.subscribed.type, 'error');
      assert.equal(refused.subscribed.code, 'unauthenticated');
      const forbidden = await a.subscribe({ collections: ['settings'] });
      assert.equal(forbidden.subscribed.code, 'forbidden');
      // An admin sees every owner's notes.
      const admin = await makeAdmin(t);
      const ad = await connect({ token: admin.accessToken });
      await ad.subscribe({ collections: ['notes', 'settings'] });
      const bobs = await write('notes', bob.accessToken, { secret: 'bob again' });
      assert.equal((await ad.change()).change.id, bobs.id);
    });

    it("the user channel carries changes to the user's own documents, in any collection", async () => {
      const a = await connect({ query: `access_token=${alice.accessToken}` });
      const { subscribed } = await a.subscribe({ user: true });
      assert.equal(subscribed.user, true);
      await write('posts', bob.accessToken, { title: 'not alice' });
      const post = await write('posts', alice.accessToken, { title: 'alice post' });
      const note = await write('notes', alice.accessToken, { n: 1 });
      assert.equal((await a.change()).change.id, post.id);
      assert.equal((await a.change()).change.id, note.id);
      // Subscribed to posts as well: each change arrives once, not once per subscription.
      const b = await connect({ token: alice.accessToken });
      await b.subscribe({ user: true, collections: ['posts'] });
      const p2 = await write('posts', alice.accessToken, { title: 'once' });
      const marker = await write('posts', bob.accessToken, { title: 'marker' });
      assert.equal((await b.change()).change.id, p2.id);
      assert.equal((await b.change()).change.id, marker.id, 'the same change was sent twice');
      const anon = await connect();
      assert.equal((await anon.subscribe({ user: true })).subscribed.code, 'unauthenticated');
    });

    it('resumes from the last position: exactly the missed changes, then live ones, no duplicates', async () => {
      let c = await connect({ token: alice.accessToken });
      await c.subscribe({ collections: ['posts', 'notes'] });
      const before1 = await write('posts', alice.accessToken, { title: 'seen' });
      const seen = await c.change((m) => m.change.id === before1.id);
      await c.close();

      const missed: string[] = [];
      for (let i = 0; i < 7; i++) missed.push((await write(i % 2 ? 'notes' : 'posts', alice.accessToken, { i })).id);
      await write('notes', bob.accessToken, { hidden: true });
      // An update of an already-missed document moves it to a later position: delivered once, in its latest state.
      const upd = await t.call('PATCH', `/v1/collections/posts/documents/${missed[0]}`, { token: alice.accessToken, body: { i: 'updated' } });
      assert.equal(upd.statusCode, 200);

      c = await connect({ token: alice.accessToken });
      const { subscribed, caughtUp } = await c.subscribe({ collections: ['posts', 'notes'], cursor: seen.position });
      assert.equal(subscribed.type, 'subscribed', JSON.stringify(subscribed));
      const ids = caughtUp.map((m) => m.change.id);
      assert.deepEqual([...ids].sort(), [...missed].sort(), 'exactly the missed changes');
      assert.equal(ids.at(-1), missed[0], 'the updated document comes at its latest position');
      assert.deepEqual(caughtUp.find((m) => m.change.id === missed[0])!.change.data, { i: 'updated' });
      const positions = caughtUp.map((m) => m.position as string);
      assert.equal(new Set(positions).size, positions.length);

      const live = await write('posts', alice.accessToken, { title: 'live' });
      const next = await c.change();
      assert.equal(next.change.id, live.id, 'live changes follow, nothing replayed');

      // Resuming from the `subscribed` position of a live-only subscription misses nothing either.
      const d = await connect({ token: alice.accessToken });
      const s = (await d.subscribe({ collections: ['posts'] })).subscribed;
      await d.close();
      const gone = await write('posts', alice.accessToken, { title: 'while away' });
      const d2 = await connect({ token: alice.accessToken });
      const again = await d2.subscribe({ collections: ['posts'], cursor: s.position });
      assert.deepEqual(again.caughtUp.map((m) => m.change.id), [gone.id]);
    });

    it('resumes while writes keep coming: every change exactly once across the reconnect', async () => {
      const c = await connect({ token: alice.accessToken });
      const start = (await c.subscribe({ collections: ['members'] })).subscribed.position as string;
      await c.close();
      const written: string[] = [];
      let stop = false;
      const writer = (async () => {
        for (let i = 0; !stop && i < 200; i++) written.push((await write('members', bob.accessToken, { i })).id);
      })();
      await waitFor('some writes', async () => written.length >= 10, 10_000, 10);
      const d = await connect({ token: alice.accessToken });
      const got: Msg[] = [];
      d.ws.on('message', (b) => {
        const m = JSON.parse(b.toString());
        if (m.type === 'change') got.push(m);
      });
      d.send({ type: 'subscribe', collections: ['members'], cursor: start });
      await waitFor('more writes after the resume', async () => written.length >= 40, 20_000, 10);
      stop = true;
      await writer;
      await waitFor('every write delivered', async () => got.length >= written.length, 10_000, 20);
      assert.deepEqual(got.map((m) => m.change.id), written, 'in order, each once');
    });

    it('disconnects a slow consumer with close 4008 and its resume position', async () => {
      const c = await connect({ token: alice.accessToken });
      await c.subscribe({ collections: ['members'] });
      const last: Msg[] = [];
      c.ws.on('message', (b) => {
        const m = JSON.parse(b.toString());
        if (m.type === 'change') last.push(m);
      });
      // The client stops reading its socket; the kernel's buffers fill, then the server's (64 KiB).
      (c.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause();
      const big = 'x'.repeat(60_000); // documents are at most 64 KiB
      const slowBefore = await counter(t, 'levee_realtime_slow_consumer_disconnects_total');
      for (let i = 0; i < 1000; i++) {
        await write('members', bob.accessToken, { big, i });
        if ((await counter(t, 'levee_realtime_slow_consumer_disconnects_total')) > slowBefore) break;
      }
      assert.ok((await counter(t, 'levee_realtime_slow_consumer_disconnects_total')) > slowBefore, 'the slow consumer was never cut off');
      (c.ws as unknown as { _socket: { resume(): void } })._socket.resume();
      const closed = await c.closed;
      assert.equal(closed.code, 4008, JSON.stringify(closed));
      const m = /resume from (c1\.\S+)/.exec(closed.reason);
      assert.ok(m, closed.reason);
      assert.ok(last.length > 0);
      assert.equal(m[1], last.at(-1)!.position, 'the resume position is the last change the client received');
      // Resuming from it gives what was not sent.
      const d = await connect({ token: alice.accessToken });
      const marker = await write('members', bob.accessToken, { marker: true });
      const { caughtUp } = await d.subscribe({ collections: ['members'], cursor: m[1] });
      assert.ok(caughtUp.length >= 1);
      assert.equal(caughtUp.at(-1)!.change.id, marker.id);
      assert.ok(!caughtUp.some((x) => last.some((y) => y.position === x.position)), 'nothing received before is sent again');
    });

    it('rejects bad input with clear errors, and closes on abuse', async () => {
      const c = await connect({ token: alice.accessToken });
      c.send('{not json');
      assert.equal((await c.next()).code, 'invalid_json');
      c.send({ type: 'dance' });
      const unknown = await c.next();
      assert.equal(unknown.code, 'bad_request');
      assert.match(unknown.detail, /Unknown message type/);
      c.send({ type: 'subscribe', collections: ['nope'] });
      assert.equal((await c.next()).code, 'unknown_collection');
      c.send({ type: 'subscribe', collections: ['posts'], cursor: 'c1.forged.cursor.xxxxxxxxxxxxxxxxxxxxxx' });
      assert.equal((await c.next()).code, 'invalid_cursor');
      await new Promise((r) => setTimeout(r, 1100)); // the message bucket refills
      c.send({ type: 'ping' });
      assert.equal((await c.next()).type, 'pong', 'the connection survives bad messages');

      // More subscriptions than allowed (3 here).
      const flood = await connect({ token: alice.accessToken });
      flood.send({ type: 'subscribe', collections: ['posts', 'notes', 'members'], user: true });
      assert.equal((await flood.next()).code, 'too_many_subscriptions');
      assert.equal((await flood.closed).code, 1008);

      // A frame over the limit (4 KiB here): closed by the protocol layer with 1009.
      const big = await connect({ token: alice.accessToken });
      big.send(JSON.stringify({ type: 'ping', pad: 'x'.repeat(8192) }));
      assert.equal((await big.closed).code, 1009);

      // A message flood: errors first, then 1008.
      const chatty = await connect({ token: alice.accessToken });
      for (let i = 0; i < 100; i++) chatty.send({ type: 'ping' });
      const limited = await chatty.next((m) => m.type === 'error');
      assert.equal(limited.code, 'rate_limited');
      assert.equal((await chatty.closed).code, 1008);

      // The server is fine: a new connection works.
      const ok = await connect();
      assert.equal((await ok.subscribe({ collections: ['posts'] })).subscribed.type, 'subscribed');
    });

    it('refuses a bad token before the upgrade, and a plain GET', async () => {
      await assert.rejects(WsClient.open(base, { token: 'not.a.token' }), (e: { status?: number }) => e.status === 401);
      const plain = await t.call('GET', '/v1/realtime');
      assert.equal(plain.statusCode, 400);
      assert.equal(plain.json().code, 'bad_request');
    });

    it('closes with 4001 when the access token expires', async () => {
      clockOffsetMs = -(t.config.accessTokenTtlSeconds - 3) * 1000; // expires 2–3 s from now
      const short = await signUp(t);
      clockOffsetMs = 0;
      const c = await connect({ token: short.accessToken });
      await c.subscribe({ collections: ['posts'] });
      const closed = await c.closed;
      assert.equal(closed.code, 4001);
      assert.match(closed.reason, /token_expired/);
    });

    it('shutdown closes connections with 1001 and a reconnect hint', async () => {
      const c = await connect({ token: alice.accessToken });
      await c.subscribe({ collections: ['posts'] });
      t.realtime!.closeConnections();
      const closed = await c.closed;
      assert.equal(closed.code, 1001);
      assert.match(closed.reason, /reconnect elsewhere/);
      await assert.rejects(WsClient.open(base), (e: { status?: number; headers?: Record<string, string> }) => e.status === 503 && Number(e.headers?.['retry-after']) >= 1);
    });
  });
}

describe('realtime heartbeat', async () => {
  const engine = (await engines())[0]!;
  let t: TestApp;
  let base: string;
  before(async () => {
    t = await createTestApp(engine, { realtime: true, overrides: { realtimePingIntervalMs: 200 } });
    base = await t.app.listen({ port: 0, host: '127.0.0.1' });
  });
  after(() => t.close());

  it('terminates a connection that does not answer pings, and keeps one that does', async () => {
    const dead = await WsClient.open(base, { autoPong: false });
    const alive = await WsClient.open(base);
    await dead.subscribe({ collections: ['posts'] });
    await alive.subscribe({ collections: ['posts'] });
    const closed = await dead.closed;
    assert.equal(closed.code, 1006, 'terminated, no close handshake');
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(alive.ws.readyState, alive.ws.OPEN, 'a client that answers pings stays connected');
    alive.ws.close();
  });
});

async function counter(t: TestApp, name: string): Promise<number> {
  const text = await t.metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(name));
  return line ? Number(line.split(' ').at(-1)) : 0;
}
