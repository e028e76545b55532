import type { Principal } from '../auth/access-tokens.js';
import { canRead, checkChange } from '../data/access.js';
import type { DocumentService } from '../data/service.js';
import { documents } from '../data/store.js';
import type { Db, Queryable } from '../db/port.js';
import type { Clock } from '../lib/clock.js';
import { LeveeError } from '../lib/errors.js';
import { sha256, UUID } from '../lib/ids.js';
import { SEQ_MAX, START, type Position } from './cursor.js';
import type { SyncCore } from './service.js';
import { changeLog, mutationLog, type ChangeRow } from './store.js';

// WatermelonDB's sync protocol (https://watermelondb.dev/docs/Sync/Backend) over the change log.
//
// Its `timestamp`/`lastPulledAt` must be a positive number, so it is the pull's horizon: every
// transaction below it had ended and was read. A push is checked against it: a document whose
// latest write comes from a transaction at or above lastPulledAt changed after the client's pull.
// Records are flat (columns); they map to a document's `data`, with Watermelon's `id` as its id —
// so the app must make UUIDs (`setGenerator` in the README's glue).

export type WatermelonRecord = { id: string } & Record<string, unknown>;
export interface WatermelonTableChanges {
  created: WatermelonRecord[];
  updated: WatermelonRecord[];
  deleted: string[];
}
export type WatermelonChanges = Record<string, WatermelonTableChanges>;

/** Watermelon's bookkeeping columns: never stored, never sent back (its client refuses them). */
const LOCAL_COLUMNS = new Set(['id', '_status', '_changed']);

const toRecord = (r: ChangeRow): WatermelonRecord => {
  const out: WatermelonRecord = { id: r.doc_id };
  for (const [k, v] of Object.entries(r.data ?? {})) if (!LOCAL_COLUMNS.has(k)) out[k] = v;
  return out;
};

export function createWatermelonSync(deps: { db: Db; clock: Clock; docs: DocumentService; sync: SyncCore; onWrite?: () => void }) {
  const { db, clock, docs, sync } = deps;

  /** The columns a pushed record changed, as a merge patch (all of them for a new record). */
  function columnsOf(raw: Record<string, unknown>, onlyChanged: boolean): Record<string, unknown> {
    const changed = typeof raw._changed === 'string' && raw._changed !== '' ? new Set(raw._changed.split(',')) : undefined;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(raw)) {
      if (LOCAL_COLUMNS.has(k) || (onlyChanged && changed && !changed.has(k))) continue;
      out[k] = v;
    }
    return out;
  }

  function recordId(raw: unknown, table: string): string {
    const id = (raw as { id?: unknown } | null)?.id;
    if (typeof id !== 'string' || !UUID.test(id)) {
      throw new LeveeError('document_invalid', `${table}: record ids must be UUIDs (use setGenerator in the WatermelonDB glue), got ${JSON.stringify(id)?.slice(0, 64)}`);
    }
    return id;
  }

  /** Applies one pushed record (created or updated) or deletion, inside the push's transaction. */
  async function applyRecord(tx: Queryable, p: Principal, table: string, id: string, raw: Record<string, unknown> | undefined, since: number | null) {
    const c = docs.collection(table);
    const row = await documents.get(tx, c.name, id, true);
    const latest = await changeLog.ofDocument(tx, c.name, id);
    const changedSincePull = latest !== undefined && (since === null || latest.tx >= since);
    const conflict = () => {
      throw new LeveeError('sync_conflict', `${table} ${id} changed on the server after your last pull`, { extra: { collection: table, id } });
    };
    if (!row) {
      if (raw === undefined) return; // deleting what is gone: done
      // Deleted on the server after the pull: with server-wins the delete stands and the client
      // hears of it on its next pull; with last-write-wins this later edit brings the document back.
      if (latest?.deleted && changedSincePull && c.conflict === 'server-wins') conflict();
      await docs.create(c.name, p, columnsOf(raw, false), { tx, id });
      return;
    }
    if (!canRead(c.read, p, row.owner_id)) throw new LeveeError('document_exists', `${table} ${id} belongs to someone else`);
    checkChange(c.write, p, row.owner_id);
    if (changedSincePull && c.conflict === 'server-wins') conflict();
    if (raw === undefined) await docs.remove(c.name, id, p, { tx, ifMatch: row.version });
    // Only the columns this client changed: a concurrent change to another column survives.
    else await docs.patch(c.name, id, p, columnsOf(raw, true), { tx, ifMatch: row.version });
  }

  return {
    /** pullChanges: `{changes, timestamp}`; `hasMore` when a very large backlog was cut short. */
    async pull(p: Principal | undefined, q: { lastPulledAt: number | null; collections?: string[] | undefined }) {
      const scopes = sync.scopesFor(p, q.collections);
      const from: Position = q.lastPulledAt === null ? START : { tx: q.lastPulledAt - 1, seq: SEQ_MAX };
      const cap = sync.limits.pullMax;
      const page = await sync.readPage(scopes, from, cap + 1);
      if (q.lastPulledAt !== null && q.lastPulledAt > page.horizon) throw new LeveeError('invalid_cursor', 'lastPulledAt is ahead of the server: pass back the timestamp a pull returned');
      let rows = page.rows;
      let timestamp = page.horizon;
      if (rows.length > cap) {
        // Cut at a transaction boundary, so the timestamp still means "everything before it".
        timestamp = rows[cap]!.tx;
        rows = rows.filter((r) => r.tx < timestamp);
        if (rows.length === 0) throw new LeveeError('payload_too_large', `One transaction wrote more than ${cap} changes: raise LEVEE_SYNC_PULL_LIMIT`);
      }
      const changes: WatermelonChanges = {};
      for (const s of scopes) changes[s.collection] = { created: [], updated: [], deleted: [] };
      for (const r of rows) {
        const t = changes[r.collection]!;
        if (r.deleted) t.deleted.push(r.doc_id);
        // After the first sync everything is "updated" (the glue sets sendCreatedAsUpdated): a
        // device's own pushes come back to it, and as "created" they would resurrect records it
        // deleted locally since.
        else if (q.lastPulledAt === null) t.created.push(toRecord(r));
        else t.updated.push(toRecord(r));
      }
      return { changes, timestamp, hasMore: timestamp !== page.horizon };
    },

    /**
     * pushChanges: all of it in one transaction, or nothing (409 sync_conflict, 4xx for bad
     * records). The same push retried (its response was lost) is answered without applying twice.
     */
    async push(p: Principal | undefined, body: { changes: WatermelonChanges; lastPulledAt: number | null }) {
      if (!p) throw new LeveeError('unauthenticated');
      const pushId = `wm:${sha256(JSON.stringify(body))}`;
      let records = 0;
      for (const [table, set] of Object.entries(body.changes)) {
        docs.collection(table); // an unknown table is an error even when it carries no change
        records += set.created.length + set.updated.length + set.deleted.length;
      }
      if (records > sync.limits.pushMax) throw new LeveeError('payload_too_large', `A push carries at most ${sync.limits.pushMax} records (this one has ${records})`);
      const applied = await db.transaction(async (tx) => {
        if (await mutationLog.get(tx, p.userId, pushId)) return false;
        for (const [table, set] of Object.entries(body.changes)) {
          for (const raw of [...set.created, ...set.updated]) await applyRecord(tx, p, table, recordId(raw, table), raw, body.lastPulledAt);
          for (const id of set.deleted) await applyRecord(tx, p, table, recordId({ id }, table), undefined, body.lastPulledAt);
        }
        await mutationLog.record(tx, p.userId, pushId, { records }, clock.now());
        return records > 0;
      });
      if (applied) deps.onWrite?.();
    },
  };
}

export type WatermelonSync = ReturnType<typeof createWatermelonSync>;
