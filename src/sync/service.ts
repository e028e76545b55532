import type { Principal } from '../auth/access-tokens.js';
import type { CollectionConfig } from '../config/collections.js';
import { canRead, readScope } from '../data/access.js';
import { toDocument, type DocumentService, type PublicDocument } from '../data/service.js';
import { documents } from '../data/store.js';
import type { Db, Queryable } from '../db/port.js';
import type { Clock } from '../lib/clock.js';
import { LeveeError } from '../lib/errors.js';
import { UUID } from '../lib/ids.js';
import { after, SEQ_MAX, START, type CursorCodec, type Position } from './cursor.js';
import { createWatermelonSync } from './watermelon.js';
import { changeLog, mutationLog, type ChangePage, type ChangeRow, type PullScope } from './store.js';

// Offline sync: pull what changed since a cursor, push a batch of offline mutations.

export interface Change {
  collection: string;
  id: string;
  op: 'create' | 'update' | 'delete';
  version: number;
  ownerId: string | null;
  updatedAt: string;
  /** The document body (absent for deletes). */
  data?: Record<string, unknown>;
}

export const toChange = (r: ChangeRow): Change => ({
  collection: r.collection,
  id: r.doc_id,
  op: r.deleted ? 'delete' : r.created ? 'create' : 'update',
  version: r.version,
  ownerId: r.owner_id,
  updatedAt: r.changed_at.toISOString(),
  ...(r.deleted || r.data === null ? {} : { data: r.data }),
});

export interface Mutation {
  /** The client's id for this mutation: a retried batch applies it at most once. */
  id: string;
  collection: string;
  op: 'create' | 'update' | 'delete';
  docId: string;
  /** The version the client's change was based on (update and delete). */
  baseVersion?: number | undefined;
  /** create: the document; update: the changed fields (JSON Merge Patch). */
  data?: Record<string, unknown> | undefined;
}

export type MutationResult =
  | { id: string; status: 'applied'; version: number | null; merged?: boolean; replayed?: boolean }
  | { id: string; status: 'conflict'; current: PublicDocument | null; replayed?: boolean }
  | { id: string; status: 'rejected'; code: string; detail: string; replayed?: boolean };

export interface SyncLimits {
  /** Largest page a pull returns. */
  pullMax: number;
  /** Most mutations in one push. */
  pushMax: number;
}

/** The reads every sync protocol builds on (this API's and WatermelonDB's). */
export interface SyncCore {
  limits: SyncLimits;
  scopesFor(p: Principal | undefined, names: string[] | undefined): PullScope[];
  readPage(scopes: PullScope[], from: Position, limit: number): Promise<ChangePage>;
}

/** The position after a page: its last change when full, else the horizon (all below it is read). */
export function positionAfter(page: ChangePage, from: Position, full: boolean): Position {
  const last = page.rows.at(-1);
  if (full && last) return { tx: last.tx, seq: last.seq };
  // Every row of a page is below its horizon, so this is at or after the page's last change.
  const caughtUp = { tx: page.horizon - 1, seq: SEQ_MAX };
  return after(caughtUp, from) ? caughtUp : from;
}

/** Errors that say "try again later", not "this mutation is wrong": they fail the whole batch. */
const TRANSIENT = new Set(['database_unavailable', 'timeout', 'overloaded', 'unavailable']);

export function createSyncService(deps: { db: Db; clock: Clock; collections: Map<string, CollectionConfig>; docs: DocumentService; cursors: CursorCodec; limits: SyncLimits; onWrite?: () => void }) {
  const { db, clock, docs, cursors, limits } = deps;

  /**
   * What `p` may read in the named collections (all readable collections when none are named).
   * Naming a collection the caller may not read is an error; the default quietly leaves it out.
   */
  function scopesFor(p: Principal | undefined, names: string[] | undefined): PullScope[] {
    if (names && names.length > 0) {
      return [...new Set(names)].map((n) => {
        const c = docs.collection(n);
        return { collection: c.name, ownerId: readScope(c.read, p).ownerOnly };
      });
    }
    const out: PullScope[] = [];
    for (const c of deps.collections.values()) {
      try {
        out.push({ collection: c.name, ownerId: readScope(c.read, p).ownerOnly });
      } catch {
        // not readable by this caller: left out of the default set
      }
    }
    return out;
  }

  /** Reads a page and checks the cursor has not outlived the tombstones it depends on. */
  async function readPage(scopes: PullScope[], from: Position, limit: number): Promise<ChangePage> {
    const page = await changeLog.pull(db, scopes, from, limit);
    if (from.tx !== START.tx && !after(from, page.pruned)) {
      throw new LeveeError('cursor_expired', 'Deleted documents since this cursor have been forgotten: sync again from scratch (no cursor)');
    }
    return page;
  }

  /** The server's current document, for a conflict answer (null when it was deleted). */
  async function current(tx: Queryable, c: CollectionConfig, p: Principal, id: string): Promise<PublicDocument | null> {
    const row = await documents.get(tx, c.name, id);
    if (row && !canRead(c.read, p, row.owner_id)) throw new LeveeError('document_not_found');
    return row ? toDocument(row) : null;
  }

  /**
   * One mutation. The common path is one statement for a create and two for an update or delete
   * (the locked read and the write, inside the document service); conflicts and deleted documents
   * cost a read more.
   */
  async function applyOne(tx: Queryable, p: Principal, m: Mutation): Promise<MutationResult> {
    const c = docs.collection(m.collection);
    if (!UUID.test(m.docId)) throw new LeveeError('document_invalid', 'docId is a UUID');
    if (m.op === 'create') {
      try {
        const d = await docs.create(c.name, p, m.data, { tx, id: m.docId });
        return { id: m.id, status: 'applied', version: d.version };
      } catch (e) {
        if (!(e instanceof LeveeError && e.code === 'document_exists')) throw e;
        const row = await documents.get(tx, c.name, m.docId);
        if (!row || !canRead(c.read, p, row.owner_id)) throw e;
        return { id: m.id, status: 'conflict', current: toDocument(row) };
      }
    }
    if (m.baseVersion === undefined) throw new LeveeError('bad_request', `baseVersion is required to ${m.op} a document`);
    // server-wins: only the version the client saw may be changed. last-write-wins: this write is
    // the later one, so it applies to whatever version is current — its fields replace the
    // server's, and fields it did not touch keep the server's values (a concurrent change to another
    // field survives).
    const ifMatch = c.conflict === 'server-wins' ? m.baseVersion : undefined;
    try {
      const before = m.op === 'delete' ? await docs.remove(c.name, m.docId, p, { tx, ifMatch }) : undefined;
      const d = m.op === 'update' ? await docs.patch(c.name, m.docId, p, m.data ?? {}, { tx, ifMatch }) : undefined;
      const merged = (d ? d.version - 1 : before!) !== m.baseVersion;
      return { id: m.id, status: 'applied', version: d ? d.version : null, ...(merged ? { merged: true } : {}) };
    } catch (e) {
      if (!(e instanceof LeveeError)) throw e;
      if (e.code === 'version_conflict') return { id: m.id, status: 'conflict', current: await current(tx, c, p, m.docId) };
      if (e.code !== 'document_not_found') throw e;
      const tomb = await changeLog.ofDocument(tx, c.name, m.docId);
      if (!tomb?.deleted || !canRead(c.read, p, tomb.owner_id)) throw e;
      // Deleting what is already deleted is done; changing it is a conflict the client must see.
      return m.op === 'delete' ? { id: m.id, status: 'applied', version: null } : { id: m.id, status: 'conflict', current: null };
    }
  }

  const core: SyncCore = { limits, scopesFor, readPage };
  return {
    ...core,
    /** WatermelonDB's sync protocol over the same change log and rules. */
    watermelon: createWatermelonSync({ db, clock, docs, sync: core, onWrite: deps.onWrite }),

    async pull(p: Principal | undefined, q: { cursor?: string | undefined; collections?: string[] | undefined; limit?: number | undefined }) {
      const from = cursors.decode(q.cursor);
      const scopes = scopesFor(p, q.collections);
      const limit = Math.min(q.limit ?? limits.pullMax, limits.pullMax);
      const page = await readPage(scopes, from, limit);
      const full = page.rows.length === limit;
      return { changes: page.rows.map(toChange), cursor: cursors.encode(positionAfter(page, from, full)), hasMore: full };
    },

    /**
     * Applies offline mutations in order, in one transaction, each at most once per mutation id.
     * Each is answered applied, conflict or rejected; only a transient failure (database down,
     * deadline) fails the batch, and then nothing of it is kept, so the retry starts clean.
     */
    async push(p: Principal | undefined, mutations: Mutation[]): Promise<{ results: MutationResult[] }> {
      if (!p) throw new LeveeError('unauthenticated');
      if (mutations.length > limits.pushMax) throw new LeveeError('payload_too_large', `A push carries at most ${limits.pushMax} mutations (this one has ${mutations.length})`);
      const results = await db.transaction(async (tx) => {
        // Answers already given (a retried batch) in one read; this batch's answers in one write.
        const answered = await mutationLog.getMany(tx, p.userId, [...new Set(mutations.map((m) => m.id))]);
        const fresh = new Map<string, MutationResult>();
        const out: MutationResult[] = [];
        for (const m of mutations) {
          const prior = answered.get(m.id) ?? fresh.get(m.id);
          if (prior) {
            out.push({ ...(prior as MutationResult), replayed: true });
            continue;
          }
          let r: MutationResult;
          try {
            r = await applyOne(tx, p, m);
          } catch (e) {
            if (!(e instanceof LeveeError) || TRANSIENT.has(e.code)) throw e;
            r = { id: m.id, status: 'rejected', code: e.code, detail: e.message };
          }
          fresh.set(m.id, r);
          out.push(r);
        }
        await mutationLog.recordMany(tx, p.userId, [...fresh.values()], clock.now());
        return out;
      });
      if (results.some((r) => r.status === 'applied' && !r.replayed)) deps.onWrite?.();
      return { results };
    },
  };
}

export type SyncService = ReturnType<typeof createSyncService>;

