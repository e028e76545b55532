import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { v7 } from 'uuid';
import { housekeeping } from '../../src/roles/worker.js';
import { createTestApp, makeAdmin, signUp, type TestApp } from '../support/app.js';
import { engines } from '../support/engines.js';

const COLLECTIONS = {
  posts: { read: 'public', write: 'owner', schema: { type: 'object', properties: { title: { type: 'string', maxLength: 200 } } } },
  notes: { read: 'owner', write: 'owner', conflict: 'last-write-wins' },
  settings: { read: 'admin', write: 'admin' },
};

type Pulled = { changes: { collection: string; id: string; op: string; version: number; data?: Record<string, unknown> }[]; cursor: string; hasMore: boolean };

for (const engine of await engines()) {
  describe(`sync pull and push on ${engine.name}`, { skip: engine.skip }, () => {
    let t: TestApp;
    let alice: Awaited<ReturnType<typeof signUp>>;
    let bob: Awaited<ReturnType<typeof signUp>>;
    before(async () => {
      t = await createTestApp(engine, { collections: COLLECTIONS });
      alice = await signUp(t);
      bob = await signUp(t);
    });
    after(() => t.close());

    const pull = async (token: string | undefined, query = '') => {
      const res = await t.call('GET', `/v1/sync/pull${query}`, { token });
      assert.equal(res.statusCode, 200, res.body);
      return res.json() as Pulled;
    };
    const pushed = async (token: string, mutations: unknown[]) => {
      const res = await t.call('POST', '/v1/sync/push', { token, body: { mutations } });
      assert.equal(res.statusCode, 200, res.body);
      return res.json().results as Record<string, unknown>[];
    };
    /** Pulls until caught up, from `cursor`. */
    const drain = async (token: string | undefined, cursor: string | undefined, extra = '') => {
      const all: Pulled['changes'] = [];
      let c = cursor;
      for (let i = 0; i < 1000; i++) {
        const page = await pull(token, `?${c ? `cursor=${encodeURIComponent(c)}&` : ''}${extra}`);
        all.push(...page.changes);
        c = page.cursor;
        if (!page.hasMore) break;
      }
      return { changes: all, cursor: c! };
    };

    it('pulls every write in order, in pages, with each collection’s read rule, then resumes from the cursor', async () => {
      const start = await drain(alice.accessToken, undefined);
      const p1 = (await t.call('POST', '/v1/collections/posts/documents', { token: alice.accessToken, body: { title: 'one' } })).json();
      const n1 = (await t.call('POST', '/v1/collections/notes/documents', { token: alice.accessToken, body: { text: 'alice only' } })).json();
      await t.call('POST', '/v1/collections/notes/documents', { token: bob.accessToken, body: { text: 'bob only' } });
      await t.call('PATCH', `/v1/collections/posts/documents/${p1.id}`, { token: alice.accessToken, body: { title: 'one, edited' } });
      const p2 = (await t.call('POST', '/v1/collections/posts/documents', { token: bob.accessToken, body: { title: 'two' } })).json();
      await t.call('DELETE', `/v1/collections/posts/documents/${p2.id}`, { token: bob.accessToken });

      const paged = await drain(alice.accessToken, start.cursor, 'limit=1');
      // The compacted log: each document once, in its latest state, in the order of its last write.
      assert.deepEqual(paged.changes.map((c) => c.id), [n1.id, p1.id, p2.id]);
      assert.deepEqual(paged.changes[1]!.data, { title: 'one, edited' });
      // "create" means created after the cursor of the page (p1 was created before the second page's).
      assert.deepEqual((await drain(alice.accessToken, start.cursor)).changes.map((c) => c.op), ['create', 'create', 'delete']);
      assert.deepEqual(paged.changes.map((c) => c.op), ['create', 'update', 'delete']);
      assert.equal(paged.changes[2]!.data, undefined, 'a tombstone carries no data');

      // Anonymous callers see public collections only; nobody sees another owner's notes.
      const anon = await drain(undefined, start.cursor);
      assert.deepEqual(anon.changes.map((c) => c.collection).sort(), ['posts', 'posts']);
      const bobs = await drain(bob.accessToken, start.cursor, 'collections=notes');
      assert.equal(bobs.changes.length, 1);
      assert.equal(bobs.changes[0]!.data!.text, 'bob only');

      // Resuming from the last cursor: only what happened since.
      assert.equal((await pull(alice.accessToken, `?cursor=${encodeURIComponent(paged.cursor)}`)).changes.length, 0);
      await t.call('PATCH', `/v1/collections/notes/documents/${n1.id}`, { token: alice.accessToken, body: { text: 'changed' } });
      const next = await pull(alice.accessToken, `?cursor=${encodeURIComponent(paged.cursor)}`);
      assert.deepEqual(next.changes.map((c) => [c.id, c.op, c.version]), [[n1.id, 'update', 2]]);
    });

    it('refuses malformed, forged and unreadable pulls with clear errors', async () => {
      const { cursor } = await pull(alice.accessToken);
      const forged = cursor.replace(/\.([0-9a-z]+)\./, (_m, seq: string) => `.${(parseInt(seq, 36) + 1).toString(36)}.`);
      for (const bad of ['nonsense', forged, `${cursor}x`, 'c1.zz.zz.' + 'A'.repeat(22)]) {
        const res = await t.call('GET', `/v1/sync/pull?cursor=${encodeURIComponent(bad)}`, { token: alice.accessToken });
        assert.equal(res.statusCode, 400, bad);
        assert.equal(res.json().code, 'invalid_cursor');
      }
      assert.equal((await t.call('GET', '/v1/sync/pull?collections=nope', { token: alice.accessToken })).json().code, 'unknown_collection');
      assert.equal((await t.call('GET', '/v1/sync/pull?collections=settings', { token: alice.accessToken })).statusCode, 403);
      assert.equal((await t.call('GET', '/v1/sync/pull?collections=notes')).statusCode, 401);
      assert.equal((await t.call('GET', '/v1/sync/pull?limit=0', { token: alice.accessToken })).statusCode, 400);
      const admin = await makeAdmin(t);
      assert.equal((await t.call('GET', '/v1/sync/pull?collections=settings', { token: admin.accessToken })).statusCode, 200);
    });

    it('answers 410 cursor_expired once the tombstones a cursor depends on are pruned', async () => {
      const { cursor } = await pull(alice.accessToken);
      const doc = (await t.call('POST', '/v1/collections/posts/documents', { token: alice.accessToken, body: { title: 'short-lived' } })).json();
      await t.call('DELETE', `/v1/collections/posts/documents/${doc.id}`, { token: alice.accessToken });
      const caughtUp = (await drain(alice.accessToken, cursor)).cursor;
      const purged = await housekeeping(t.database.db, new Date(Date.now() + 31 * 86_400_000));
      assert.ok(purged.tombstones >= 1);
      const res = await t.call('GET', `/v1/sync/pull?cursor=${encodeURIComponent(cursor)}`, { token: alice.accessToken });
      assert.equal(res.statusCode, 410);
      assert.equal(res.json().code, 'cursor_expired');
      // A cursor taken after the delete was pulled is still good; starting over always is.
      assert.equal((await t.call('GET', `/v1/sync/pull?cursor=${encodeURIComponent(caughtUp)}`, { token: alice.accessToken })).statusCode, 200);
      assert.equal((await t.call('GET', '/v1/sync/pull', { token: alice.accessToken })).statusCode, 200);
    });

    it('applies offline mutations in order, once per mutation id, answering applied, conflict or rejected', async () => {
      const id = v7();
      const batch = [
        { id: 'm1', collection: 'posts', op: 'create', docId: id, data: { title: 'offline' } },
        { id: 'm2', collection: 'posts', op: 'update', docId: id, baseVersion: 1, data: { title: 'offline, edited' } },
        { id: 'm3', collection: 'posts', op: 'update', docId: id, baseVersion: 1, data: { title: 'stale edit' } },
        { id: 'm4', collection: 'posts', op: 'create', docId: v7(), data: { title: 'x'.repeat(201) } },
        { id: 'm5', collection: 'nope', op: 'create', docId: v7(), data: {} },
      ];
      const first = await pushed(alice.accessToken, batch);
      assert.deepEqual(first.map((r) => r.status), ['applied', 'applied', 'conflict', 'rejected', 'rejected']);
      assert.equal(first[1]!.version, 2);
      assert.equal((first[2]!.current as { version: number }).version, 2, 'server-wins: the conflict carries the current version');
      assert.equal(first[3]!.code, 'document_invalid');
      assert.equal(first[4]!.code, 'unknown_collection');

      // The same batch again (a retry after a lost response): replays, applies nothing twice.
      const again = await pushed(alice.accessToken, batch);
      assert.deepEqual(again.map((r) => [r.status, r.replayed]), first.map((r) => [r.status, true]));
      const doc = (await t.call('GET', `/v1/collections/posts/documents/${id}`)).json();
      assert.equal(doc.version, 2);
      assert.equal(doc.data.title, 'offline, edited');

      // Someone else's document: rejected, nothing written.
      const bobs = await pushed(bob.accessToken, [{ id: 'b1', collection: 'posts', op: 'update', docId: id, baseVersion: 2, data: { title: 'hijack' } }]);
      assert.equal(bobs[0]!.status, 'rejected');
      assert.equal(bobs[0]!.code, 'forbidden');
      assert.equal((await t.call('GET', `/v1/collections/posts/documents/${id}`)).json().data.title, 'offline, edited');
    });

    it('last-write-wins merges the offline fields over the newer server version, keeping the other fields', async () => {
      const note = (await t.call('POST', '/v1/collections/notes/documents', { token: alice.accessToken, body: { title: 'T', body: 'B' } })).json();
      await t.call('PATCH', `/v1/collections/notes/documents/${note.id}`, { token: alice.accessToken, body: { body: 'B from the web' } });
      const [r] = await pushed(alice.accessToken, [{ id: `lww-${note.id}`, collection: 'notes', op: 'update', docId: note.id, baseVersion: 1, data: { title: 'T from the phone' } }]);
      assert.equal(r!.status, 'applied');
      assert.equal(r!.merged, true);
      const now = (await t.call('GET', `/v1/collections/notes/documents/${note.id}`, { token: alice.accessToken })).json();
      assert.deepEqual(now.data, { title: 'T from the phone', body: 'B from the web' });
      // Deleting something already deleted is done, not an error; editing it is a conflict.
      await t.call('DELETE', `/v1/collections/notes/documents/${note.id}`, { token: alice.accessToken });
      const late = await pushed(alice.accessToken, [
        { id: `del-${note.id}`, collection: 'notes', op: 'delete', docId: note.id, baseVersion: 3 },
        { id: `upd-${note.id}`, collection: 'notes', op: 'update', docId: note.id, baseVersion: 3, data: { title: 'gone' } },
      ]);
      assert.deepEqual(late.map((x) => x.status), ['applied', 'conflict']);
      assert.equal(late[1]!.current, null);
    });

    it('refuses malformed and oversize batches whole, writing nothing', async () => {
      const before = (await t.database.db.query<{ n: number }>('SELECT count(*)::int AS n FROM documents')).rows[0]!.n;
      const tooMany = Array.from({ length: t.config.syncPushMaxMutations + 1 }, (_, i) => ({ id: `x${i}`, collection: 'posts', op: 'create', docId: v7(), data: {} }));
      for (const body of [{ mutations: tooMany }, { mutations: [{ id: 'a', collection: 'posts', op: 'explode', docId: v7() }] }, { mutations: 'no' }, {}]) {
        const res = await t.call('POST', '/v1/sync/push', { token: alice.accessToken, body });
        assert.equal(res.statusCode, 400, res.body);
      }
      assert.equal((await t.call('POST', '/v1/sync/push', { body: { mutations: [] } })).statusCode, 401);
      assert.equal((await t.database.db.query<{ n: number }>('SELECT count(*)::int AS n FROM documents')).rows[0]!.n, before);
    });
  });
}
