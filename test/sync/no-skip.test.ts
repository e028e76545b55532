import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { signUp, createTestApp, type TestApp } from '../support/app.js';
import pg from 'pg';
import { createPostgresDatabase, engines } from '../support/engines.js';
import type { Principal } from '../../src/auth/access-tokens.js';

// Item 2's proof: concurrent transactions take their change-log sequence numbers in one order and
// commit in another (each sleeps inside its transaction for a random time). Readers pulling in small
// pages all the while must still end up with every write exactly once.

const WRITERS = 12;
const WRITES_PER_WRITER = 25;
const READERS = 4;

for (const engine of (await engines()).filter((e) => e.name === 'postgres')) {
  describe('sync pull under concurrent writers on PostgreSQL', { skip: engine.skip }, () => {
    let t: TestApp;
    before(async () => {
      t = await createTestApp(engine, { collections: { items: { read: 'authenticated', write: 'authenticated' } }, overrides: { dbPoolSize: WRITERS + READERS + 4 } });
    });
    after(() => t.close());

    it('pulls every write exactly once although commits land out of sequence order', { timeout: 120_000 }, async (ctx) => {
      const user = await signUp(t);
      const p: Principal = (await t.services.tokens.verify(user.accessToken));
      const { docs, sync, db } = t.services;
      const start = (await sync.pull(p, {})).cursor;

      // Every write's (doc, version): creates, and an update of every third document.
      const written = new Set<string>();
      let writing = true;
      const writers = Array.from({ length: WRITERS }, async (_, w) => {
        for (let i = 0; i < WRITES_PER_WRITER; i++) {
          await db.transaction(async (tx) => {
            const d = await docs.create('items', p, { w, i }, { tx });
            written.add(`${d.id}@1`);
            await tx.query('SELECT pg_sleep($1)', [Math.random() * 0.02]);
            if (i % 3 === 0) {
              const u = await docs.patch('items', d.id, p, { updated: true }, { tx });
              written.delete(`${d.id}@1`); // the same transaction: only its last state is a change
              written.add(`${u.id}@${u.version}`);
            }
          });
        }
      });

      // The design it replaces, side by side: a reader that trusts sequence order alone.
      const naive = (async () => {
        const seen = new Set<string>();
        let last = 0;
        const step = async () => {
          const { rows } = await db.query<{ doc_id: string; seq: string }>("SELECT doc_id, seq::text AS seq FROM changes WHERE collection = 'items' AND seq > $1 ORDER BY seq LIMIT 7", [last]);
          for (const r of rows) {
            seen.add(r.doc_id);
            last = Number(r.seq);
          }
          return rows.length === 7;
        };
        while (writing) await step();
        while (await step());
        return seen;
      })();
      const readers = Array.from({ length: READERS }, async () => {
        const seen = new Map<string, number>();
        let cursor = start;
        const step = async () => {
          const page = await sync.pull(p, { cursor, collections: ['items'], limit: 7 });
          for (const c of page.changes) {
            const key = `${c.id}@${c.version}`;
            seen.set(key, (seen.get(key) ?? 0) + 1);
          }
          cursor = page.cursor;
          return page.hasMore;
        };
        while (writing) await step();
        while (await step());
        return seen;
      });

      await Promise.all(writers);
      writing = false;
      const results = await Promise.all(readers);
      assert.equal(written.size, WRITERS * WRITES_PER_WRITER);
      for (const seen of results) {
        const missing = [...written].filter((k) => !seen.has(k));
        assert.deepEqual(missing, [], 'a reader missed writes');
        const twice = [...seen].filter(([, n]) => n > 1);
        assert.deepEqual(twice, [], 'a reader got a write twice');
        assert.equal([...seen.keys()].filter((k) => !written.has(k)).length, 0);
      }
      // The race was real: reading by sequence number alone lost writes in this same run.
      const naiveSeen = await naive;
      const lost = [...written].filter((k) => !naiveSeen.has(k.split('@')[0]!)).length;
      ctx.diagnostic(`reading by sequence number alone lost ${lost} of ${written.size} writes`);
      assert.ok(lost > 0, 'commits never landed behind a reader: the run did not exercise the race');
    });

    it('is held back by a transaction open in its own database, not by one in another database of the cluster', async () => {
      const user = await signUp(t);
      const p: Principal = await t.services.tokens.verify(user.accessToken);
      const { docs, sync } = t.services;
      const start = (await sync.pull(p, {})).cursor;
      const pulledIds = async () => (await sync.pull(p, { cursor: start, collections: ['items'] })).changes.map((c) => c.id);
      const openTransaction = async (url: string) => {
        const c = new pg.Client({ connectionString: url });
        await c.connect();
        await c.query('BEGIN');
        await c.query('SELECT pg_current_xact_id()'); // it now has a transaction id: it is "running"
        return c;
      };
      const elsewhere = await createPostgresDatabase();
      const foreign = await openTransaction(elsewhere.url);
      const own = await openTransaction(t.database.url!);
      try {
        const a = await docs.create('items', p, { n: 'a' });
        // A transaction of this database that began before the write might still write below it.
        assert.deepEqual(await pulledIds(), [], 'a change above a running transaction of this database is held back');
        await own.query('COMMIT');
        assert.deepEqual(await pulledIds(), [a.id], 'visible once that transaction ended');
        // One in another database cannot write this log: it holds nothing back.
        const b = await docs.create('items', p, { n: 'b' });
        assert.deepEqual(await pulledIds(), [a.id, b.id]);
      } finally {
        await own.end().catch(() => {});
        await foreign.query('ROLLBACK').catch(() => {});
        await foreign.end().catch(() => {});
        await elsewhere.drop();
      }
    });
  });
}
