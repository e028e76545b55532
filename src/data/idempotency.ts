import { createHash } from 'node:crypto';
import type { Db, Queryable } from '../db/port.js';
import { LeveeError } from '../lib/errors.js';

// Idempotency-Key: the first response to (scope, key) is stored in the same transaction as the
// write it describes, so a retried request either replays that response or — if the first attempt
// failed and rolled back — runs again. It can never write twice. A concurrent duplicate waits on the
// unique key until the first commits, then replays. Records live 24 h (the worker purges them).

export const IDEMPOTENCY_TTL_MS = 24 * 3_600_000;
export const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

export interface StoredResponse {
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

export const fingerprint = (...parts: unknown[]): string => createHash('sha256').update(JSON.stringify(parts)).digest('base64url');

export async function idempotent(
  db: Db,
  rec: { scope: string; key: string; fingerprint: string; now: Date },
  run: (tx: Queryable) => Promise<StoredResponse>,
): Promise<StoredResponse & { replayed: boolean }> {
  return db.transaction(async (tx) => {
    await tx.query('DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND created_at < $3', [rec.scope, rec.key, new Date(rec.now.getTime() - IDEMPOTENCY_TTL_MS)]);
    const claimed = await tx.query(
      `INSERT INTO idempotency_keys (scope, key, fingerprint, status, created_at) VALUES ($1, $2, $3, 0, $4)
       ON CONFLICT (scope, key) DO NOTHING`,
      [rec.scope, rec.key, rec.fingerprint, rec.now],
    );
    if (claimed.rowCount === 0) {
      const prior = (await tx.query<{ fingerprint: string; status: number; headers: Record<string, string>; body: { v: unknown } | null }>(
        'SELECT fingerprint, status, headers, body FROM idempotency_keys WHERE scope = $1 AND key = $2',
        [rec.scope, rec.key],
      )).rows[0];
      if (!prior) throw new LeveeError('idempotency_in_progress');
      if (prior.fingerprint !== rec.fingerprint) throw new LeveeError('idempotency_key_reused');
      return { status: prior.status, headers: prior.headers, body: prior.body?.v ?? null, replayed: true };
    }
    const res = await run(tx);
    // The body is wrapped in an object: pg would send a top-level JS array as a PostgreSQL array.
    await tx.query('UPDATE idempotency_keys SET status = $3, headers = $4, body = $5 WHERE scope = $1 AND key = $2', [
      rec.scope,
      rec.key,
      res.status,
      res.headers,
      { v: res.body ?? null },
    ]);
    return { ...res, replayed: false };
  });
}

export async function purgeExpiredIdempotencyKeys(db: Db, now: Date): Promise<number> {
  return (await db.query('DELETE FROM idempotency_keys WHERE created_at < $1', [new Date(now.getTime() - IDEMPOTENCY_TTL_MS)])).rowCount;
}
