import type { Queryable } from '../db/port.js';
import type { ListQuery } from './list-query.js';

// SQL for documents. `collection` names reaching the list query are validated config names
// (COLLECTION_NAME); they are inlined there so per-collection partial indexes can match.

export interface DocumentRow {
  id: string;
  owner_id: string | null;
  data: Record<string, unknown>;
  version: number;
  created_at: Date;
  updated_at: Date;
}

const COLS = 'id, owner_id, data, version, created_at, updated_at';

export const documents = {
  async get(q: Queryable, collection: string, id: string, forUpdate = false) {
    return (await q.query<DocumentRow>(`SELECT ${COLS} FROM documents WHERE collection = $1 AND id = $2${forUpdate ? ' FOR UPDATE' : ''}`, [collection, id])).rows[0];
  },
  async insert(q: Queryable, collection: string, d: { id: string; ownerId: string | null; data: unknown; now: Date }) {
    return (
      await q.query<DocumentRow>(
        `INSERT INTO documents (collection, id, owner_id, data, version, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 1, $5, $5) ON CONFLICT (collection, id) DO NOTHING RETURNING ${COLS}`,
        [collection, d.id, d.ownerId, d.data, d.now],
      )
    ).rows[0];
  },
  async update(q: Queryable, collection: string, id: string, data: unknown, now: Date) {
    return (
      await q.query<DocumentRow>(
        `UPDATE documents SET data = $3, version = version + 1, updated_at = $4
          WHERE collection = $1 AND id = $2 RETURNING ${COLS}`,
        [collection, id, data, now],
      )
    ).rows[0]!;
  },
  async delete(q: Queryable, collection: string, id: string) {
    await q.query('DELETE FROM documents WHERE collection = $1 AND id = $2', [collection, id]);
  },
  /** One page of `lq`, plus one extra row to tell whether there is a next page. */
  async list(q: Queryable, collection: string, lq: ListQuery, ownerId?: string) {
    const { sql, params } = listSql(collection, lq, ownerId);
    return (await q.query<DocumentRow & { sort_value: unknown }>(sql, params)).rows;
  },
};

/** The list statement (exported so a test can EXPLAIN exactly what the API runs). */
export function listSql(collection: string, lq: ListQuery, ownerId?: string): { sql: string; params: unknown[] } {
  const where = [`collection = '${collection}'`, ...lq.where];
  const params = [...lq.params];
  if (ownerId !== undefined) {
    params.push(ownerId);
    where.push(`owner_id = $${params.length}::uuid`);
  }
  params.push(lq.limit + 1);
  const sql = `SELECT ${COLS}, ${lq.sort.field.sql} AS sort_value FROM documents
                WHERE ${where.join(' AND ')} ORDER BY ${lq.orderBy} LIMIT $${params.length}`;
  return { sql, params };
}
