import type { Queryable } from '../db/port.js';
import { newSecret } from '../lib/ids.js';
import type { Position } from './cursor.js';

// SQL for the change log (see migrations/0003_sync.sql for why positions are (tx, seq) read below
// the snapshot's xmin). Collection names reaching these statements are validated config names
// (COLLECTION_NAME); they are inlined so each branch uses its collection's index.

/** What one branch of a pull reads: a collection, optionally only one owner's documents. */
export interface PullScope {
  collection: string;
  ownerId?: string | undefined;
}

export interface ChangeRow {
  collection: string;
  doc_id: string;
  owner_id: string | null;
  tx: number;
  seq: number;
  /** Created after the cursor the rows were read from. */
  created: boolean;
  deleted: boolean;
  version: number;
  changed_at: Date;
  data: Record<string, unknown> | null;
  created_at: Date | null;
}

export interface ChangePage {
  rows: ChangeRow[];
  /** Transactions below this had all ended when the page was read: every change before it is visible. */
  horizon: number;
  /** Positions at or below this lost their tombstones to pruning. */
  pruned: Position;
}

/**
 * The horizon: every transaction below it has ended, so every change below it is visible. It is the
 * snapshot's xmin, except that transactions of *other databases* on the same PostgreSQL cluster are
 * ignored (they cannot write this log): xmin is cluster-wide, and a long transaction elsewhere would
 * otherwise hold back every pull and realtime event here. A transaction is only ignored when
 * pg_stat_activity positively shows it in another database; one that ended meanwhile, or that the
 * role may not see, still counts — conservative, so a change is delayed at worst, never skipped.
 */
const HORIZON_CTE = `
  s AS (SELECT pg_current_snapshot() AS snap),
  elsewhere AS MATERIALIZED (SELECT backend_xid FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND datname <> current_database()),
  h AS (SELECT LEAST(pg_snapshot_xmax(snap)::text::bigint,
                     (SELECT min(x::text::bigint) FROM pg_snapshot_xip(snap) x WHERE xid(x) NOT IN (SELECT backend_xid FROM elsewhere))) AS horizon
          FROM s)`;

function pullSql(scopes: PullScope[], from: Position, limit: number) {
  const params: unknown[] = [from.tx, from.seq, limit];
  const branches = scopes.map((s) => {
    let owner = '';
    if (s.ownerId !== undefined) {
      params.push(s.ownerId);
      owner = ` AND owner_id = $${params.length}::uuid`;
    }
    return `(SELECT * FROM changes WHERE collection = '${s.collection}'${owner}
               AND (tx, seq) > ($1::bigint, $2::bigint) AND tx < h.horizon ORDER BY tx, seq LIMIT $3)`;
  });
  // LEFT JOIN LATERAL: the horizon comes back even when no change does. The horizon and the rows
  // come from one statement, hence one snapshot; reading it separately could skip a change.
  const sql = `
    WITH ${HORIZON_CTE}
    SELECT h.horizon::float8 AS horizon, sh.tx::float8 AS pruned_tx, sh.seq::float8 AS pruned_seq,
           c.collection, c.doc_id, c.owner_id, c.tx::float8 AS tx, c.seq::float8 AS seq,
           (c.created_tx, c.created_seq) > ($1::bigint, $2::bigint) AS created, c.deleted, c.version, c.changed_at,
           d.data, d.created_at
      FROM h CROSS JOIN sync_horizon sh
      LEFT JOIN LATERAL (${branches.length > 0 ? branches.join(' UNION ALL ') : 'SELECT * FROM changes WHERE false'}) c ON true
      LEFT JOIN documents d ON NOT c.deleted AND d.collection = c.collection AND d.id = c.doc_id
     ORDER BY c.tx, c.seq
     LIMIT $3`;
  return { sql, params };
}

type PullRow = Omit<ChangeRow, 'collection'> & { collection: string | null; horizon: number; pruned_tx: number; pruned_seq: number };

export const changeLog = {
  /** Up to `limit` changes after `from` in the scopes, in position order, below the horizon. */
  async pull(q: Queryable, scopes: PullScope[], from: Position, limit: number): Promise<ChangePage> {
    const { sql, params } = pullSql(scopes, from, limit);
    const res = await q.query<PullRow>(sql, params);
    const first = res.rows[0]!;
    return {
      rows: res.rows.filter((r) => r.collection !== null) as ChangeRow[],
      horizon: first.horizon,
      pruned: { tx: first.pruned_tx, seq: first.pruned_seq },
    };
  },

  /** The change of one document (its position and whether it is deleted), locked for a write. */
  async ofDocument(q: Queryable, collection: string, id: string) {
    return (await q.query<{ tx: number; seq: number; deleted: boolean; owner_id: string | null; version: number }>(
      'SELECT tx::float8 AS tx, seq::float8 AS seq, deleted, owner_id, version FROM changes WHERE collection = $1 AND doc_id = $2',
      [collection, id],
    )).rows[0];
  },

  /**
   * Prunes tombstones older than `before` and moves the pruned horizon past them, in one
   * transaction's statement. Returns how many were pruned.
   */
  async pruneTombstones(q: Queryable, before: Date): Promise<number> {
    const res = await q.query<{ n: number }>(
      `WITH gone AS (DELETE FROM changes WHERE deleted AND changed_at < $1 RETURNING tx, seq),
            top AS (SELECT tx, seq FROM gone ORDER BY tx DESC, seq DESC LIMIT 1),
            moved AS (UPDATE sync_horizon sh SET tx = top.tx, seq = top.seq FROM top WHERE (top.tx, top.seq) > (sh.tx, sh.seq))
       SELECT count(*)::int AS n FROM gone`,
      [before],
    );
    return res.rows[0]!.n;
  },
};

/** The per-database secret named `name`, made on first use (every instance reads the same one). */
export async function serverSecret(q: Queryable, name: string): Promise<string> {
  await q.query('INSERT INTO server_secrets (name, secret) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [name, newSecret(32)]);
  return (await q.query<{ secret: string }>('SELECT secret FROM server_secrets WHERE name = $1', [name])).rows[0]!.secret;
}

export interface StoredMutation {
  result: Record<string, unknown>;
}

export const mutationLog = {
  async get(q: Queryable, userId: string, mutationId: string) {
    return (await q.query<StoredMutation>('SELECT result FROM sync_mutations WHERE user_id = $1 AND mutation_id = $2', [userId, mutationId])).rows[0]?.result;
  },
  /** The stored answers among `mutationIds`, by id. */
  async getMany(q: Queryable, userId: string, mutationIds: string[]): Promise<Map<string, Record<string, unknown>>> {
    if (mutationIds.length === 0) return new Map();
    const { rows } = await q.query<{ mutation_id: string; result: Record<string, unknown> }>(
      'SELECT mutation_id, result FROM sync_mutations WHERE user_id = $1 AND mutation_id = ANY($2::text[])',
      [userId, mutationIds],
    );
    return new Map(rows.map((r) => [r.mutation_id, r.result]));
  },
  async record(q: Queryable, userId: string, mutationId: string, result: unknown, now: Date) {
    await q.query('INSERT INTO sync_mutations (user_id, mutation_id, result, created_at) VALUES ($1, $2, $3, $4)', [userId, mutationId, result, now]);
  },
  /** Stores answers, each under its own `id`, in one statement. */
  async recordMany(q: Queryable, userId: string, results: { id: string }[], now: Date) {
    if (results.length === 0) return;
    await q.query(
      `INSERT INTO sync_mutations (user_id, mutation_id, result, created_at)
       SELECT $1, r->>'id', r, $3 FROM jsonb_array_elements($2::jsonb) AS r`,
      [userId, JSON.stringify(results), now],
    );
  },
  async purgeBefore(q: Queryable, before: Date): Promise<number> {
    return (await q.query('DELETE FROM sync_mutations WHERE created_at < $1', [before])).rowCount;
  },
};
