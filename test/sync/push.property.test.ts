import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { v7 } from 'uuid';
import { createTestApp, signUp, type TestApp } from '../support/app.js';
import { engines } from '../support/engines.js';

// Property: any batch of offline mutations — valid or not, on documents that exist or not, yours or
// someone else's, with stale or absent versions and arbitrary JSON — is answered without a 5xx; each
// mutation gets exactly one answer; rejected creates leave nothing behind; and sending the same batch
// again replays every answer and changes nothing.

const SEED = process.env.FC_SEED !== undefined ? Number(process.env.FC_SEED) : 0x5c;
const RUNS = process.env.FC_RUNS !== undefined ? Number(process.env.FC_RUNS) : 60;

for (const engine of await engines()) {
  describe(`sync push property on ${engine.name}`, { skip: engine.skip }, () => {
    let t: TestApp;
    let alice: Awaited<ReturnType<typeof signUp>>;
    const known: string[] = [];
    before(async () => {
      t = await createTestApp(engine, {
        collections: {
          posts: { read: 'public', write: 'owner', schema: { type: 'object', properties: { title: { type: 'string', maxLength: 20 } } } },
          notes: { read: 'owner', write: 'owner', conflict: 'last-write-wins' },
        },
      });
      alice = await signUp(t);
      const bob = await signUp(t);
      for (const [who, col] of [[alice, 'posts'], [bob, 'posts'], [bob, 'notes'], [alice, 'notes']] as const) {
        known.push((await t.call('POST', `/v1/collections/${col}/documents`, { token: who.accessToken, body: { title: 'seed' } })).json().id);
      }
    });
    after(() => t.close());

    const snapshot = async () => (await t.database.db.query<{ id: string; version: number; data: unknown }>('SELECT id, version, data FROM documents ORDER BY id')).rows;

    it('answers every batch mutation by mutation, writes nothing half-way and replays exactly', { timeout: 300_000 }, async () => {
      const json = fc.jsonValue({ maxDepth: 2 });
      const mutation = fc.record({
        id: fc.oneof(fc.uuid(), fc.string({ minLength: 1, maxLength: 8 })),
        collection: fc.constantFrom('posts', 'notes', 'nope', 'Posts', ''),
        op: fc.constantFrom('create', 'update', 'delete'),
        docId: fc.oneof(fc.constantFrom(...known), fc.constant('').map(() => v7()), fc.constantFrom('not-a-uuid', '', '00000000-0000-0000-0000-000000000000')),
        baseVersion: fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined }),
        data: fc.option(fc.oneof(fc.dictionary(fc.constantFrom('title', 'body', 'n', '__proto__'), json, { maxKeys: 3 }), fc.record({ title: fc.string({ maxLength: 30 }) })), { nil: undefined }),
      }, { requiredKeys: ['id', 'collection', 'op', 'docId'] });
      await fc.assert(
        fc.asyncProperty(fc.array(mutation, { maxLength: 12 }), async (mutations) => {
          const res = await t.call('POST', '/v1/sync/push', { token: alice.accessToken, body: { mutations } });
          assert.ok(res.statusCode < 500, res.body);
          if (res.statusCode !== 200) {
            assert.equal(res.headers['content-type'], 'application/problem+json; charset=utf-8');
            return;
          }
          const results = res.json().results as { id: string; status: string; replayed?: boolean }[];
          assert.equal(results.length, mutations.length);
          results.forEach((r, i) => assert.equal(r.id, mutations[i]!.id));
          for (const [i, r] of results.entries()) {
            const m = mutations[i]!;
            if (m.op === 'create' && r.status === 'rejected' && !r.replayed && !known.includes(m.docId) && /^[0-9a-f-]{36}$/.test(m.docId)) {
              const exists = (await t.database.db.query('SELECT 1 FROM documents WHERE id = $1', [m.docId])).rowCount;
              const createdLater = mutations.some((o, j) => j !== i && o.docId === m.docId && results[j]!.status === 'applied');
              if (!createdLater) assert.equal(exists, 0, 'a rejected create left a document');
            }
          }
          const before = await snapshot();
          const again = await t.call('POST', '/v1/sync/push', { token: alice.accessToken, body: { mutations } });
          assert.equal(again.statusCode, 200);
          assert.ok((again.json().results as { replayed?: boolean }[]).every((r) => r.replayed === true), 'a retried batch replays every answer');
          assert.deepEqual(await snapshot(), before, 'a retried batch changed something');
        }),
        { seed: SEED, numRuns: RUNS },
      );
    });
  });
}
