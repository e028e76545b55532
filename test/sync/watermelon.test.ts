import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Database, Model, Q, appSchema, tableSchema } from '@nozbe/watermelondb';
import { synchronize } from '@nozbe/watermelondb/sync/index.js';
import { logger } from '@nozbe/watermelondb/utils/common/index.js';
import { setGenerator } from '@nozbe/watermelondb/utils/common/randomId/index.js';
// Watermelon is CommonJS compiled by Babel: in ESM its default export sits at `.default`.
import LokiJSAdapterModule from '@nozbe/watermelondb/adapters/lokijs/index.js';
import { v7 } from 'uuid';
import { createTestApp, signUp, type TestApp } from '../support/app.js';
import { engines } from '../support/engines.js';

// The real WatermelonDB client (LokiJS adapter, in memory) syncing with Levee through the glue the
// README shows: two devices of one user, offline edits, conflicts and a lost push response.

const LokiJSAdapter = (LokiJSAdapterModule as unknown as { default: new (o: object) => never }).default;
logger.silence(); // Watermelon logs diagnostics (e.g. records it already has) through its own logger
setGenerator(() => v7()); // Levee document ids are UUIDs

const schema = appSchema({
  version: 1,
  tables: [tableSchema({ name: 'notes', columns: [{ name: 'title', type: 'string' }, { name: 'body', type: 'string' }] })],
});

class Note extends Model {
  static override table = 'notes';
  get title(): string {
    return this._getRaw('title') as string;
  }
  set title(v: string) {
    this._setRaw('title', v);
  }
  get body(): string {
    return this._getRaw('body') as string;
  }
  set body(v: string) {
    this._setRaw('body', v);
  }
}

const device = () =>
  new Database({
    // In Node there is no IndexedDB: Watermelon falls back to an in-memory Loki store per adapter.
    adapter: new LokiJSAdapter({ schema, useWebWorker: false, useIncrementalIndexedDB: true, extraLokiOptions: { autosave: false } }),
    modelClasses: [Note],
  });

for (const engine of await engines()) {
  describe(`WatermelonDB synchronize() against Levee on ${engine.name}`, { skip: engine.skip }, () => {
    let t: TestApp;
    before(async () => {
      t = await createTestApp(engine, { collections: { notes: { read: 'owner', write: 'owner', conflict: 'server-wins' } } });
    });
    after(() => t.close());

    /** The README's glue, over app.inject instead of fetch; `losePushResponse` drops one answer. */
    function glue(token: string, opts: { losePushResponse?: boolean } = {}) {
      let lose = opts.losePushResponse ?? false;
      return {
        async pullChanges({ lastPulledAt }: { lastPulledAt?: number | null }) {
          const res = await t.call('GET', `/v1/sync/watermelon${lastPulledAt ? `?lastPulledAt=${lastPulledAt}` : ''}`, { token });
          if (res.statusCode !== 200) throw new Error(`pull: ${res.statusCode} ${res.body}`);
          const { changes, timestamp } = res.json();
          return { changes, timestamp };
        },
        async pushChanges({ changes, lastPulledAt }: { changes: unknown; lastPulledAt: number }) {
          const res = await t.call('POST', '/v1/sync/watermelon', { token, body: { changes, lastPulledAt } });
          if (lose) {
            lose = false;
            throw new Error('network error: the response never arrived');
          }
          if (res.statusCode !== 204) throw new Error(`push: ${res.statusCode} ${res.body}`);
        },
        sendCreatedAsUpdated: true,
      };
    }
    const sync = (db: Database, token: string, opts?: { losePushResponse?: boolean }) => synchronize({ database: db, ...glue(token, opts) });
    const notes = async (db: Database) =>
      (await db.get<Note>('notes').query(Q.sortBy('title')).fetch()).map((n) => ({ id: n.id, title: n.title, body: n.body, status: n._raw._status }));
    const serverNotes = async (ownerId: string) =>
      (await t.database.db.query<{ id: string; data: { title: string; body: string } }>("SELECT id, data FROM documents WHERE collection = 'notes' AND owner_id = $1 ORDER BY data->>'title'", [ownerId])).rows;

    it('two devices edit offline, sync and converge; a push whose response was lost duplicates nothing', async () => {
      const user = await signUp(t);
      const phone = device();
      const tablet = device();
      const [a, b] = await phone.write(() =>
        Promise.all([
          phone.get<Note>('notes').create((n) => Object.assign(n, { title: 'A', body: 'a1' })),
          phone.get<Note>('notes').create((n) => Object.assign(n, { title: 'B', body: 'b1' })),
        ]),
      );
      // The push reaches the server, its answer does not: synchronize() fails, nothing is marked synced.
      await assert.rejects(sync(phone, user.accessToken, { losePushResponse: true }), /network error/);
      assert.equal((await phone.get<Note>('notes').find(a!.id))._raw._status, 'created');
      await sync(phone, user.accessToken); // retried: pulls its own records back, pushes again
      assert.equal((await serverNotes(user.user.id)).length, 2, 'the retried push duplicated nothing');

      await sync(tablet, user.accessToken);
      assert.deepEqual((await notes(tablet)).map((n) => n.title), ['A', 'B']);

      // Offline on both: the tablet edits A, the phone deletes B and writes C.
      const aOnTablet = await tablet.get<Note>('notes').find(a!.id);
      await tablet.write(() => aOnTablet.update((n) => void (n.body = 'a2')));
      await phone.write(async () => {
        await b!.markAsDeleted();
        await phone.get<Note>('notes').create((n) => Object.assign(n, { title: 'C', body: 'c1' }));
      });
      await sync(tablet, user.accessToken);
      await sync(phone, user.accessToken);
      await sync(tablet, user.accessToken);
      await sync(phone, user.accessToken); // only its own echo comes back

      const onPhone = await notes(phone);
      assert.deepEqual(onPhone, await notes(tablet));
      assert.deepEqual(onPhone.map((n) => [n.title, n.body, n.status]), [['A', 'a2', 'synced'], ['C', 'c1', 'synced']]);
      assert.deepEqual((await serverNotes(user.user.id)).map((r) => [r.data.title, r.data.body]), [['A', 'a2'], ['C', 'c1']]);
    });

    it('a conflicting push is refused whole (server-wins); after a pull the client merges and no edit is lost', async () => {
      const user = await signUp(t);
      const phone = device();
      const tablet = device();
      const note = await phone.write(() => phone.get<Note>('notes').create((n) => Object.assign(n, { title: 'T', body: 'B' })));
      await sync(phone, user.accessToken);
      await sync(tablet, user.accessToken);
      const onTablet = await tablet.get<Note>('notes').find(note.id);
      await phone.write(() => note.update((n) => void (n.title = 'T from the phone')));
      await tablet.write(() => onTablet.update((n) => void (n.body = 'B from the tablet')));

      await sync(phone, user.accessToken);
      // The tablet pushed against a stale pull: 409, nothing applied…
      const stale = await t.call('POST', '/v1/sync/watermelon', {
        token: user.accessToken,
        body: { changes: { notes: { created: [], updated: [{ id: note.id, title: 'T', body: 'B from the tablet', _status: 'updated', _changed: 'body' }], deleted: [] } }, lastPulledAt: 1 },
      });
      assert.equal(stale.statusCode, 409);
      assert.equal(stale.json().code, 'sync_conflict');
      // …and synchronize() pulls first, merges (its changed column wins locally), then pushes.
      await sync(tablet, user.accessToken);
      await sync(phone, user.accessToken);
      const [final] = await notes(phone);
      assert.deepEqual(await notes(phone), await notes(tablet));
      assert.equal(final!.title, 'T from the phone');
      assert.equal(final!.body, 'B from the tablet');
    });

    it('refuses bad pushes and pulls with clear errors, writing nothing', async () => {
      const user = await signUp(t);
      const other = await signUp(t);
      const mine = (await t.call('POST', '/v1/collections/notes/documents', { token: user.accessToken, body: { title: 'mine' } })).json();
      const pull = (await t.call('GET', '/v1/sync/watermelon', { token: other.accessToken })).json();
      const push = (changes: unknown, lastPulledAt: unknown = pull.timestamp) => t.call('POST', '/v1/sync/watermelon', { token: other.accessToken, body: { changes, lastPulledAt } });
      const cases: [unknown, number][] = [
        [{ notes: { created: [{ id: 'not-a-uuid', title: 'x' }], updated: [], deleted: [] } }, 422],
        [{ notes: { created: [], updated: [{ id: mine.id, title: 'hijack', _status: 'updated', _changed: 'title' }], deleted: [] } }, 409],
        [{ notes: { created: [], updated: [], deleted: [mine.id] } }, 409],
        [{ nope: { created: [], updated: [], deleted: [] } }, 404],
        [{ notes: { created: [] } }, 400],
      ];
      for (const [changes, status] of cases) assert.equal((await push(changes)).statusCode, status, JSON.stringify(changes));
      assert.equal((await push({}, 'soon')).statusCode, 400);
      assert.equal((await t.call('GET', `/v1/sync/watermelon?lastPulledAt=${pull.timestamp + 1_000_000}`, { token: other.accessToken })).json().code, 'invalid_cursor');
      assert.equal((await t.call('GET', '/v1/sync/watermelon?lastPulledAt=-1', { token: other.accessToken })).statusCode, 400);
      assert.equal((await t.call('GET', `/v1/collections/notes/documents/${mine.id}`, { token: user.accessToken })).json().data.title, 'mine');
    });
  });
}
