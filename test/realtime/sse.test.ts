import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, signUp, type TestApp } from '../support/app.js';
import { engines } from '../support/engines.js';
import { SseClient } from './client.js';

// The Server-Sent Events fallback: the same hub and rules as the WebSocket; `id:` is the position,
// so a browser's automatic reconnect (Last-Event-ID) resumes where it stopped.

const COLLECTIONS = {
  posts: { read: 'public', write: 'owner' },
  notes: { read: 'owner', write: 'owner' },
};

for (const engine of await engines()) {
  describe(`realtime over SSE on ${engine.name}`, { skip: engine.skip }, () => {
    let t: TestApp;
    let base: string;
    let alice: Awaited<ReturnType<typeof signUp>>;
    let bob: Awaited<ReturnType<typeof signUp>>;
    const streams: SseClient[] = [];
    const open = async (query: string, headers: Record<string, string> = {}) => {
      const s = await SseClient.open(base, query, headers);
      if (!(s instanceof SseClient)) assert.fail(`refused: ${s.status} ${s.body}`);
      streams.push(s);
      return s;
    };
    before(async () => {
      t = await createTestApp(engine, { collections: COLLECTIONS, realtime: true, overrides: { realtimePingIntervalMs: 300, realtimeMaxBufferedBytes: 64 * 1024, rateLimitUserBurst: 100_000, rateLimitIpBurst: 100_000 } });
      base = await t.app.listen({ port: 0, host: '127.0.0.1' });
      alice = await signUp(t);
      bob = await signUp(t);
    });
    after(async () => {
      for (const s of streams) s.abort();
      await t.close();
    });
    const write = async (collection: string, token: string, body: unknown) => {
      const res = await t.call('POST', `/v1/collections/${collection}/documents`, { token, body });
      assert.equal(res.statusCode, 201, res.body);
      return res.json() as { id: string };
    };

    it('streams changes with the position as the event id, read rules applied, heartbeats as comments', async () => {
      const s = await open(`collections=posts,notes&access_token=${alice.accessToken}`);
      const subscribed = await s.next((e) => e.event === 'subscribed');
      const position = JSON.parse(subscribed.data).position as string;
      assert.match(position, /^c1\./);
      await write('notes', bob.accessToken, { secret: 'bob' });
      const mine = await write('notes', alice.accessToken, { n: 1 });
      const e = await s.next((x) => x.event === 'change');
      const body = JSON.parse(e.data);
      assert.equal(body.change.id, mine.id, "bob's note must not reach alice");
      assert.equal(e.id, body.position);
      // Heartbeat comments keep flowing (300 ms here) and do not show up as events.
      let raw = '';
      s.res.on('data', (c: string) => (raw += c));
      await new Promise((r) => setTimeout(r, 800));
      assert.match(raw, /^: ping$/m);
    });

    it('resumes from Last-Event-ID (over the cursor parameter): the missed changes, then live ones', async () => {
      const s = await open('collections=posts');
      await s.next((e) => e.event === 'subscribed');
      const first = await write('posts', alice.accessToken, { title: 'first' });
      const seen = await s.next((e) => e.event === 'change');
      assert.equal(JSON.parse(seen.data).change.id, first.id);
      s.abort();
      const missed = [(await write('posts', alice.accessToken, { title: 'a' })).id, (await write('posts', bob.accessToken, { title: 'b' })).id];
      // The URL still carries the original (older) cursor, as a browser's reconnect would.
      const r = await open('collections=posts&cursor=', { 'last-event-id': seen.id! });
      const got: string[] = [];
      for (;;) {
        const e = await r.next((x) => x.event === 'change' || x.event === 'subscribed');
        if (e.event === 'subscribed') break;
        got.push(JSON.parse(e.data).change.id);
      }
      assert.deepEqual(got, missed);
      const live = await write('posts', alice.accessToken, { title: 'live' });
      assert.equal(JSON.parse((await r.next((x) => x.event === 'change')).data).change.id, live.id);
    });

    it('answers refusals as problems before the stream starts', async () => {
      const anon = (await SseClient.open(base, 'collections=notes')) as { status: number; body: string };
      assert.equal(anon.status, 401);
      assert.equal(JSON.parse(anon.body).code, 'unauthenticated');
      const unknown = (await SseClient.open(base, 'collections=nope')) as { status: number; body: string };
      assert.equal(unknown.status, 404);
      assert.equal(JSON.parse(unknown.body).code, 'unknown_collection');
      const forged = (await SseClient.open(base, 'collections=posts', { 'last-event-id': 'c1.1.1.forgedforgedforgedforge' })) as { status: number; body: string };
      assert.equal(forged.status, 400);
      assert.equal(JSON.parse(forged.body).code, 'invalid_cursor');
    });

    it('cuts off a slow SSE consumer once its buffer is over the bound', async () => {
      const s = await open(`collections=notes&access_token=${alice.accessToken}`);
      await s.next((e) => e.event === 'subscribed');
      s.res.pause();
      const big = 'y'.repeat(60_000);
      const sseClients = () => [...t.realtime!.hub.clients()].filter((c) => c.peer.transport === 'sse').length;
      const before = sseClients();
      for (let i = 0; i < 1000 && sseClients() === before; i++) await write('notes', alice.accessToken, { big, i });
      assert.equal(sseClients(), before - 1, 'the slow SSE client was disconnected');
      s.res.resume();
      const close = await s.next((e) => e.event === 'close', 15_000, 'the close event');
      assert.equal(JSON.parse(close.data).code, 4008);
    });
  });
}
