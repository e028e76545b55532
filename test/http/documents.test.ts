import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parseListQuery } from '../../src/data/list-query.js';
import { listSql } from '../../src/data/store.js';
import { createTestApp, makeAdmin, signUp, uniqueEmail, type TestApp } from '../support/app.js';
import { engines } from '../support/engines.js';

const count = async (t: TestApp, collection: string) =>
  (await t.database.db.query<{ n: number }>('SELECT count(*)::int AS n FROM documents WHERE collection = $1', [collection])).rows[0]!.n;

for (const engine of await engines()) {
  describe(`documents on ${engine.name}`, { skip: engine.skip }, () => {
    let t: TestApp;
    let alice: Awaited<ReturnType<typeof signUp>>;
    let bob: Awaited<ReturnType<typeof signUp>>;
    const adminEmail = uniqueEmail('admin');
    before(async () => {
      // The admin list must not make a password sign-up admin: only `levee admin grant` does.
      t = await createTestApp(engine, { overrides: { adminEmails: [adminEmail.toLowerCase()] } });
      alice = await signUp(t);
      bob = await signUp(t);
    });
    after(() => t.close());

    it('creates, reads with ETag, replaces, patches and deletes with If-Match', async () => {
      const created = await t.call('POST', '/v1/collections/posts/documents', { token: alice.accessToken, body: { title: 'Hello', status: 'draft', score: 1 } });
      assert.equal(created.statusCode, 201);
      const doc = created.json();
      assert.equal(created.headers.etag, '"1"');
      assert.equal(created.headers.location, `/v1/collections/posts/documents/${doc.id}`);
      assert.equal(doc.ownerId, alice.user.id);
      assert.deepEqual(doc.data, { title: 'Hello', status: 'draft', score: 1 });

      const read = await t.call('GET', `/v1/collections/posts/documents/${doc.id}`);
      assert.equal(read.statusCode, 200);
      assert.equal(read.headers.etag, '"1"');
      const notModified = await t.call('GET', `/v1/collections/posts/documents/${doc.id}`, { headers: { 'if-none-match': '"1"' } });
      assert.equal(notModified.statusCode, 304);

      const put = await t.call('PUT', `/v1/collections/posts/documents/${doc.id}`, { token: alice.accessToken, body: { title: 'Hello again', status: 'draft' }, headers: { 'if-match': '"1"' } });
      assert.equal(put.statusCode, 200);
      assert.equal(put.json().version, 2);
      assert.equal(put.headers.etag, '"2"');

      const stale = await t.call('PATCH', `/v1/collections/posts/documents/${doc.id}`, { token: alice.accessToken, body: { title: 'lost update' }, headers: { 'if-match': '"1"' } });
      assert.equal(stale.statusCode, 412);
      assert.equal(stale.json().code, 'version_conflict');
      assert.equal(stale.json().currentVersion, 2);

      const patched = await t.call('PATCH', `/v1/collections/posts/documents/${doc.id}`, {
        token: alice.accessToken,
        body: { status: null, score: 7 },
        headers: { 'if-match': 'W/"2"', 'content-type': 'application/merge-patch+json' },
      });
      assert.equal(patched.statusCode, 200, patched.body);
      assert.deepEqual(patched.json().data, { title: 'Hello again', score: 7 });
      assert.equal(patched.json().version, 3);

      assert.equal((await t.call('DELETE', `/v1/collections/posts/documents/${doc.id}`, { token: alice.accessToken, headers: { 'if-match': '"2"' } })).statusCode, 412);
      assert.equal((await t.call('DELETE', `/v1/collections/posts/documents/${doc.id}`, { token: alice.accessToken, headers: { 'if-match': '"3"' } })).statusCode, 204);
      const gone = await t.call('GET', `/v1/collections/posts/documents/${doc.id}`);
      assert.equal(gone.statusCode, 404);
      assert.equal(gone.json().code, 'document_not_found');
    });

    it('validates documents against the collection schema and writes nothing on failure', async () => {
      const before = await count(t, 'posts');
      const bad = await t.call('POST', '/v1/collections/posts/documents', { token: alice.accessToken, body: { title: 'x'.repeat(300) } });
      assert.equal(bad.statusCode, 422);
      assert.equal(bad.json().code, 'document_invalid');
      assert.ok(Array.isArray(bad.json().errors));
      const wrongType = await t.call('POST', '/v1/collections/posts/documents', { token: alice.accessToken, body: { score: 'high' } });
      assert.equal(wrongType.statusCode, 422);
      assert.equal(await count(t, 'posts'), before);
    });

    it('Idempotency-Key: a retried POST returns the first response and writes once', async () => {
      const before = await count(t, 'notes');
      const headers = { 'idempotency-key': `create-${Date.now()}` };
      const first = await t.call('POST', '/v1/collections/notes/documents', { token: alice.accessToken, body: { text: 'once' }, headers });
      const retry = await t.call('POST', '/v1/collections/notes/documents', { token: alice.accessToken, body: { text: 'once' }, headers });
      assert.equal(first.statusCode, 201);
      assert.equal(retry.statusCode, 201);
      assert.equal(retry.json().id, first.json().id);
      assert.equal(retry.headers['idempotent-replayed'], 'true');
      assert.equal(retry.headers.etag, first.headers.etag);
      assert.equal(await count(t, 'notes'), before + 1);

      const misuse = await t.call('POST', '/v1/collections/notes/documents', { token: alice.accessToken, body: { text: 'different' }, headers });
      assert.equal(misuse.statusCode, 422);
      assert.equal(misuse.json().code, 'idempotency_key_reused');
      // Keys are per user: Bob's identical key is his own.
      const bobs = await t.call('POST', '/v1/collections/notes/documents', { token: bob.accessToken, body: { text: 'once' }, headers });
      assert.notEqual(bobs.json().id, first.json().id);
      assert.equal(await count(t, 'notes'), before + 2);
    });

    it('Idempotency-Key: concurrent duplicates write once', async () => {
      const before = await count(t, 'notes');
      const headers = { 'idempotency-key': `race-${Date.now()}` };
      const results = await Promise.all(Array.from({ length: 6 }, () => t.call('POST', '/v1/collections/notes/documents', { token: alice.accessToken, body: { text: 'race' }, headers })));
      assert.deepEqual(new Set(results.map((r) => r.statusCode)), new Set([201]));
      assert.equal(new Set(results.map((r) => r.json().id)).size, 1);
      assert.equal(await count(t, 'notes'), before + 1);
    });

    it('Idempotency-Key on PATCH and DELETE: retries do not apply twice', async () => {
      const doc = (await t.call('POST', '/v1/collections/notes/documents', { token: alice.accessToken, body: { n: 1 } })).json();
      const headers = { 'idempotency-key': `patch-${doc.id}` };
      const p1 = await t.call('PATCH', `/v1/collections/notes/documents/${doc.id}`, { token: alice.accessToken, body: { n: 2 }, headers });
      const p2 = await t.call('PATCH', `/v1/collections/notes/documents/${doc.id}`, { token: alice.accessToken, body: { n: 2 }, headers });
      assert.equal(p1.json().version, 2);
      assert.equal(p2.json().version, 2);
      const now = await t.call('GET', `/v1/collections/notes/documents/${doc.id}`, { token: alice.accessToken });
      assert.equal(now.json().version, 2);
      const del = { 'idempotency-key': `delete-${doc.id}` };
      assert.equal((await t.call('DELETE', `/v1/collections/notes/documents/${doc.id}`, { token: alice.accessToken, headers: del })).statusCode, 204);
      assert.equal((await t.call('DELETE', `/v1/collections/notes/documents/${doc.id}`, { token: alice.accessToken, headers: del })).statusCode, 204);
      assert.equal((await t.call('DELETE', `/v1/collections/notes/documents/${doc.id}`, { token: alice.accessToken })).statusCode, 404);
    });

    it('applies read and write rules: public, owner, authenticated, admin', async () => {
      const post = (await t.call('POST', '/v1/collections/posts/documents', { token: alice.accessToken, body: { title: 'mine' } })).json();
      assert.equal((await t.call('GET', `/v1/collections/posts/documents/${post.id}`)).statusCode, 200, 'public read without a token');
      assert.equal((await t.call('POST', '/v1/collections/posts/documents', { body: { title: 'anon' } })).statusCode, 401);
      const bobEdit = await t.call('PATCH', `/v1/collections/posts/documents/${post.id}`, { token: bob.accessToken, body: { title: 'hijack' } });
      assert.equal(bobEdit.statusCode, 403);
      assert.equal((await t.call('DELETE', `/v1/collections/posts/documents/${post.id}`, { token: bob.accessToken })).statusCode, 403);
      assert.equal((await t.call('GET', `/v1/collections/posts/documents/${post.id}`)).json().data.title, 'mine');

      const note = (await t.call('POST', '/v1/collections/notes/documents', { token: alice.accessToken, body: { secret: 'a' } })).json();
      assert.equal((await t.call('GET', `/v1/collections/notes/documents/${note.id}`, { token: bob.accessToken })).statusCode, 404);
      assert.equal((await t.call('PUT', `/v1/collections/notes/documents/${note.id}`, { token: bob.accessToken, body: { secret: 'b' } })).statusCode, 404);
      const bobsList = await t.call('GET', '/v1/collections/notes/documents', { token: bob.accessToken });
      assert.ok(bobsList.json().items.every((d: { ownerId: string }) => d.ownerId === bob.user.id));
      assert.equal((await t.call('GET', '/v1/collections/notes/documents')).statusCode, 401);

      const member = (await t.call('POST', '/v1/collections/members/documents', { token: alice.accessToken, body: { n: 1 } })).json();
      assert.equal((await t.call('PATCH', `/v1/collections/members/documents/${member.id}`, { token: bob.accessToken, body: { n: 2 } })).statusCode, 200);

      assert.equal((await t.call('POST', '/v1/collections/settings/documents', { token: alice.accessToken, body: { x: 1 } })).statusCode, 403);
      assert.equal((await t.call('GET', '/v1/collections/settings/documents', { token: alice.accessToken })).statusCode, 403);
      const claimed = await signUp(t, adminEmail);
      assert.equal(claimed.user.role, 'user', 'signing up with a listed email proves nothing about the mailbox');
      assert.equal((await t.call('POST', '/v1/collections/settings/documents', { token: claimed.accessToken, body: { x: 1 } })).statusCode, 403);
      const admin = await makeAdmin(t, claimed);
      assert.equal(admin.user.role, 'admin');
      assert.equal((await t.call('POST', '/v1/collections/settings/documents', { token: admin.accessToken, body: { x: 1 } })).statusCode, 201);
      // Admins may read and change owner-only documents.
      assert.equal((await t.call('GET', `/v1/collections/notes/documents/${note.id}`, { token: admin.accessToken })).statusCode, 200);
    });

    it('lists with filters, sorts and cursor pagination without skipping or repeating', async () => {
      const tag = `batch-${Date.now()}`;
      const statuses = ['draft', 'published', 'archived'];
      for (let i = 0; i < 45; i++) {
        const body = i % 9 === 0 ? { title: tag } : { title: tag, status: statuses[i % 3], score: i };
        assert.equal((await t.call('POST', '/v1/collections/posts/documents', { token: alice.accessToken, body })).statusCode, 201);
      }
      const all: { id: string; data: { title: string } }[] = [];
      let cursor: string | null = null;
      for (let page = 0; page < 50; page++) {
        const res = await t.call('GET', `/v1/collections/posts/documents?limit=10${cursor ? `&cursor=${cursor}` : ''}`);
        assert.equal(res.statusCode, 200, res.body);
        const body = res.json() as { items: { id: string; data: { title: string }; createdAt: string }[]; nextCursor: string | null };
        assert.ok(body.items.length <= 10);
        all.push(...body.items);
        cursor = body.nextCursor;
        if (!cursor) break;
      }
      assert.equal(new Set(all.map((d) => d.id)).size, all.length, 'no document repeated');
      assert.equal(all.filter((d) => d.data.title === tag).length, 45, 'every document seen once');
      const times = (all as unknown as { createdAt: string; id: string }[]).map((d) => `${d.createdAt}|${d.id}`);
      assert.deepEqual(times, [...times].sort().reverse(), 'newest first');

      const published = (await t.call('GET', '/v1/collections/posts/documents?status=published&limit=100')).json().items;
      assert.ok(published.length >= 1 && published.every((d: { data: { status: string } }) => d.data.status === 'published'));

      const ranged = (await t.call('GET', '/v1/collections/posts/documents?score[gte]=10&score[lt]=20&sort=score&limit=100')).json().items;
      const scores = ranged.map((d: { data: { score: number } }) => d.data.score);
      assert.deepEqual(scores, [...scores].sort((a: number, b: number) => a - b));
      assert.ok(scores.length > 0 && scores.every((s: number) => s >= 10 && s < 20));

      const inList = (await t.call('GET', '/v1/collections/posts/documents?status[in]=draft,archived&limit=100')).json().items;
      assert.ok(inList.length > 0 && inList.every((d: { data: { status: string } }) => ['draft', 'archived'].includes(d.data.status)));

      // Descending by a data field, paged: documents without the field are left out (documented).
      const seen: number[] = [];
      let c: string | null = null;
      for (let page = 0; page < 20; page++) {
        const res = await t.call('GET', `/v1/collections/posts/documents?sort=-score&limit=7&score[lte]=44${c ? `&cursor=${c}` : ''}`);
        assert.equal(res.statusCode, 200, res.body);
        seen.push(...res.json().items.map((d: { data: { score: number } }) => d.data.score));
        c = res.json().nextCursor;
        if (!c) break;
      }
      assert.deepEqual(seen, [...seen].sort((a, b) => b - a));
      assert.equal(new Set(seen).size, seen.length, 'no score repeated across pages');
      assert.ok(seen.length >= 35, `expected every document with a score, saw ${seen.length}`);

      const wrongSortCursor = await t.call('GET', `/v1/collections/posts/documents?sort=score&cursor=${cursor ?? c ?? 'eyJ9'}`);
      assert.equal(wrongSortCursor.statusCode, 400);
    });

    it('pages by ownerId past documents without an owner', async () => {
      const t2 = await createTestApp(engine, { collections: { open: { read: 'public', write: 'public' } } });
      try {
        const u = await signUp(t2);
        for (let i = 0; i < 3; i++) await t2.call('POST', '/v1/collections/open/documents', { body: { anon: i } });
        for (let i = 0; i < 3; i++) await t2.call('POST', '/v1/collections/open/documents', { token: u.accessToken, body: { mine: i } });
        const first = await t2.call('GET', '/v1/collections/open/documents?sort=-ownerId&limit=2');
        assert.equal(first.statusCode, 200, first.body);
        const next = await t2.call('GET', `/v1/collections/open/documents?sort=-ownerId&limit=2&cursor=${first.json().nextCursor}`);
        assert.equal(next.statusCode, 200, next.body);
        assert.equal(first.json().items.length + next.json().items.length, 3);
      } finally {
        await t2.close();
      }
    });

    it('rejects undeclared filter and sort fields and unknown collections', async () => {
      const undeclared = await t.call('GET', '/v1/collections/posts/documents?title=x');
      assert.equal(undeclared.statusCode, 400);
      assert.equal(undeclared.json().code, 'invalid_filter');
      assert.equal((await t.call('GET', '/v1/collections/posts/documents?sort=title')).json().code, 'invalid_filter');
      assert.equal((await t.call('GET', '/v1/collections/nope/documents')).json().code, 'unknown_collection');
      assert.equal((await t.call('GET', '/v1/collections/posts/documents?limit=101')).statusCode, 400);
    });

    it('declared indexes become real PostgreSQL indexes', async () => {
      const idx = await t.database.db.query<{ indexname: string }>("SELECT indexname FROM pg_indexes WHERE tablename = 'documents'");
      const names = idx.rows.map((r) => r.indexname);
      for (const f of ['createdAt', 'status', 'score']) assert.ok(names.some((n) => n.startsWith(`doc_posts_${f}_`)), `index for posts.${f}`);
      assert.ok(!names.some((n) => n.startsWith('doc_members_')), 'no index for a collection that declares none');
    });

    // Plans are asserted on the real PostgreSQL only: that is where the feed must stay fast.
    if (engine.name === 'postgres') it('the feed query (newest 20) uses an index, not a scan and sort', async () => {
      const db = t.database.db;
      await db.query(
        `INSERT INTO documents (collection, id, owner_id, data, created_at, updated_at)
         SELECT CASE WHEN g % 3 = 0 THEN 'notes' ELSE 'posts' END, gen_random_uuid(), $1, jsonb_build_object('title', 'seed ' || g, 'score', g),
                now() - (g || ' seconds')::interval, now()
           FROM generate_series(1, 20000) g`,
        [alice.user.id],
      );
      await db.query('ANALYZE documents');
      const c = t.services.docs.collection('posts');
      const { sql, params } = listSql('posts', parseListQuery(c, { sort: '-createdAt', limit: '20' }));
      // The exact statement and parameters the API runs for the feed.
      const plan = (await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${sql}`, params)).rows.map((r) => r['QUERY PLAN']).join('\n');
      assert.match(plan, /Index Scan Backward using "?(doc_posts_createdAt_[0-9a-f]{8}|documents_created)"?/, plan);
      assert.doesNotMatch(plan, /Seq Scan|Sort\b/, plan);
    });
  });
}

for (const engine of await engines()) {
  describe(`document limits on ${engine.name}`, { skip: engine.skip }, () => {
    let t: TestApp;
    let token: string;
    before(async () => {
      t = await createTestApp(engine, {
        collections: { tags: { read: 'public', write: 'owner', indexes: ['label', 'constructor'], schema: { type: 'object', properties: { label: { type: 'string' } } } } },
      });
      token = (await signUp(t)).accessToken;
    });
    after(() => t.close());

    it('an indexed field longer than an index entry allows is a 422, not a 500, and nothing is written', async () => {
      const before = await count(t, 'tags');
      const random = Array.from({ length: 2000 }, () => Math.random().toString(36).slice(2, 6)).join('');
      const res = await t.call('POST', '/v1/collections/tags/documents', { token, body: { label: random } });
      assert.equal(res.statusCode, 422, res.body);
      assert.equal(res.json().code, 'document_invalid');
      const nested = await t.call('POST', '/v1/collections/tags/documents', { token, body: { constructor: { blob: random } } });
      assert.equal(nested.statusCode, 422, nested.body);
      assert.equal(await count(t, 'tags'), before);
    });

    it('a field named like an Object.prototype member is an ordinary data field', async () => {
      const res = await t.call('POST', '/v1/collections/tags/documents', { token, body: { constructor: 'x' } });
      assert.equal(res.statusCode, 201, res.body);
      const list = await t.call('GET', '/v1/collections/tags/documents?constructor=x');
      assert.equal(list.statusCode, 200, list.body);
      assert.equal(list.json().items.length, 1);
    });

    it('pages through long sort values (the cursor a page returns is accepted back)', async () => {
      for (let i = 0; i < 3; i++) {
        const label = `${String.fromCharCode(97 + i)}${'é'.repeat(500)}`;
        assert.equal((await t.call('POST', '/v1/collections/tags/documents', { token, body: { label } })).statusCode, 201);
      }
      const first = await t.call('GET', '/v1/collections/tags/documents?sort=label&limit=1');
      assert.equal(first.statusCode, 200);
      const second = await t.call('GET', `/v1/collections/tags/documents?sort=label&limit=1&cursor=${first.json().nextCursor}`);
      assert.equal(second.statusCode, 200, second.body);
      assert.notEqual(second.json().items[0].id, first.json().items[0].id);
    });

    it('accepts the bearer scheme in any case', async () => {
      const res = await t.call('GET', '/v1/auth/me', { headers: { authorization: `bearer ${token}` } });
      assert.equal(res.statusCode, 200);
    });
  });
}

describe('declared index names', () => {
  it('do not collide across collections and stay within 63 bytes', async () => {
    const { indexName } = await import('../../src/data/fields.js');
    const { parseCollections } = await import('../../src/config/collections.js');
    const cs = parseCollections({ user: { indexes: ['profile_name'] }, user_profile: { indexes: ['name'] }, [`c${'x'.repeat(39)}`]: { indexes: [`f${'y'.repeat(39)}`] } });
    const names = [...cs.values()].flatMap((c) => c.indexes.map((f) => indexName(c, f)));
    assert.equal(new Set(names).size, names.length);
    assert.ok(names.every((n) => Buffer.byteLength(n) <= 63), names.join(', '));
  });
});
