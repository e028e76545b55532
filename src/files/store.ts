import type { Queryable } from '../db/port.js';

// The files table's SQL. Sizes are bigint in the table and read as float8, exact up to 2^53.

export type FileState = 'uploading' | 'processing' | 'ready' | 'failed';

export interface StoredVariant {
  key: string;
  contentType: string;
  size: number;
  sha256: string;
  width: number;
  height: number;
}

export interface FileRow {
  id: string;
  owner_id: string;
  bucket: string;
  key: string | null;
  content_type: string;
  size: number;
  sha256: string | null;
  state: FileState;
  failure_reason: string | null;
  visibility: 'public' | 'private';
  variants: Record<string, StoredVariant>;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS = `id, owner_id, bucket, key, content_type, size::float8 AS size, sha256, state, failure_reason, visibility, variants, created_at, updated_at`;

export const fileStore = {
  /**
   * Inserts an `uploading` row if the owner's stored bytes plus `size` stay within `quotaBytes`
   * (0: no quota). Run inside a transaction: the owner's row is locked first, so two uploads by
   * the same user cannot both pass the check. Returns the bytes in use when refused.
   */
  async insertWithinQuota(
    tx: Queryable,
    f: { id: string; ownerId: string; bucket: string; contentType: string; size: number; visibility: 'public' | 'private'; now: Date },
    quotaBytes: number,
  ): Promise<{ row: FileRow } | { usedBytes: number }> {
    await tx.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [f.ownerId]);
    const used = await fileStore.usedBytes(tx, f.ownerId);
    if (quotaBytes > 0 && used + f.size > quotaBytes) return { usedBytes: used };
    const { rows } = await tx.query<FileRow>(
      `INSERT INTO files (id, owner_id, bucket, content_type, size, visibility, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING ${COLUMNS}`,
      [f.id, f.ownerId, f.bucket, f.contentType, f.size, f.visibility, f.now],
    );
    return { row: rows[0]! };
  },

  async usedBytes(db: Queryable, ownerId: string): Promise<number> {
    const { rows } = await db.query<{ used: number }>(`SELECT coalesce(sum(size), 0)::float8 AS used FROM files WHERE owner_id = $1 AND state <> 'failed'`, [ownerId]);
    return rows[0]!.used;
  },

  byId: async (db: Queryable, id: string) => (await db.query<FileRow>(`SELECT ${COLUMNS} FROM files WHERE id = $1`, [id])).rows[0],

  /** The row locked for the rest of the transaction (completion and processing change it once). */
  lock: async (tx: Queryable, id: string) => (await tx.query<FileRow>(`SELECT ${COLUMNS} FROM files WHERE id = $1 FOR UPDATE`, [id])).rows[0],

  /** Moves a file from `from` to its next state; undefined when it was no longer in `from` (another worker won). */
  async transition(
    db: Queryable,
    id: string,
    from: FileState,
    to: { state: FileState; now: Date; key?: string; size?: number; sha256?: string; failureReason?: string; variants?: Record<string, StoredVariant> },
  ): Promise<FileRow | undefined> {
    const { rows } = await db.query<FileRow>(
      `UPDATE files SET state = $3, updated_at = $4,
         key = coalesce($5, key), size = coalesce($6, size), sha256 = coalesce($7, sha256),
         failure_reason = $8, variants = coalesce($9, variants)
       WHERE id = $1 AND state = $2 RETURNING ${COLUMNS}`,
      [id, from, to.state, to.now, to.key ?? null, to.size ?? null, to.sha256 ?? null, to.failureReason ?? null, to.variants ?? null],
    );
    return rows[0];
  },

  remove: async (db: Queryable, id: string) => (await db.query<FileRow>(`DELETE FROM files WHERE id = $1 RETURNING ${COLUMNS}`, [id])).rows[0],

  /** A user's files, newest first, by keyset (`before`: the last id of the previous page). */
  async byOwner(db: Queryable, ownerId: string, limit: number, before?: string): Promise<FileRow[]> {
    const { rows } = await db.query<FileRow>(
      `SELECT ${COLUMNS} FROM files WHERE owner_id = $1 AND state <> 'failed' AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3`,
      [ownerId, before ?? null, limit],
    );
    return rows;
  },

  /** Uploads not finished within `olderThan` (the client gave up): for housekeeping to discard. */
  async staleUploads(db: Queryable, olderThan: Date, limit: number): Promise<FileRow[]> {
    return (await db.query<FileRow>(`SELECT ${COLUMNS} FROM files WHERE state = 'uploading' AND updated_at < $1 ORDER BY updated_at LIMIT $2`, [olderThan, limit])).rows;
  },

  /** Files left `processing` since before `olderThan` (their job was lost or dead-lettered): housekeeping re-enqueues them. */
  async stuckProcessing(db: Queryable, olderThan: Date, limit: number): Promise<string[]> {
    return (await db.query<{ id: string }>(`SELECT id FROM files WHERE state = 'processing' AND updated_at < $1 ORDER BY updated_at LIMIT $2`, [olderThan, limit])).rows.map((r) => r.id);
  },
};
