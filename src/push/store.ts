import type { Queryable } from '../db/port.js';
import type { Platform, PushMessage, WebPushSubscription } from './providers/port.js';

// The push pipeline's SQL: devices, pushes and their per-device deliveries.

export interface DeviceRow {
  id: string;
  user_id: string;
  platform: Platform;
  token: string;
  webpush_keys: WebPushSubscription['keys'] | null;
  app_version: string | null;
  locale: string | null;
  topics: string[];
  created_at: Date;
  updated_at: Date;
}

export const deviceStore = {
  async upsert(db: Queryable, d: { id: string; userId: string; platform: Platform; token: string; keys: WebPushSubscription['keys'] | null; appVersion: string | null; locale: string | null; topics: string[]; now: Date }) {
    const { rows } = await db.query<DeviceRow & { inserted: boolean }>(
      `INSERT INTO devices (id, user_id, platform, token, webpush_keys, app_version, locale, topics, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
       ON CONFLICT (platform, token) DO UPDATE SET user_id = EXCLUDED.user_id, webpush_keys = EXCLUDED.webpush_keys,
         app_version = EXCLUDED.app_version, locale = EXCLUDED.locale, topics = EXCLUDED.topics, updated_at = EXCLUDED.updated_at
       RETURNING *, (xmax = 0) AS inserted`,
      [d.id, d.userId, d.platform, d.token, d.keys, d.appVersion, d.locale, d.topics, d.now],
    );
    return rows[0]!;
  },
  byUser: async (db: Queryable, userId: string) => (await db.query<DeviceRow>('SELECT * FROM devices WHERE user_id = $1 ORDER BY created_at, id', [userId])).rows,
  remove: async (db: Queryable, userId: string, id: string) => (await db.query('DELETE FROM devices WHERE id = $1 AND user_id = $2', [id, userId])).rowCount > 0,
};

export type Audience = { userIds: string[] } | { topics: string[] } | { all: true };

export interface PushRow {
  id: string;
  created_by: string;
  audience: Audience;
  message: Omit<PushMessage, 'expiresAt'>;
  send_at: Date;
  expires_at: Date | null;
  state: 'scheduled' | 'fanning_out' | 'sending' | 'done';
  fanout_cursor: string | null;
  targeted: number;
  sent: number;
  failed: number;
  pruned: number;
  created_at: Date;
}

/** The audience as a WHERE clause on `devices`, its parameters from $3 on. */
function audienceFilter(a: Audience): { where: string; params: unknown[] } {
  if ('userIds' in a) return { where: 'user_id = ANY($3::uuid[])', params: [a.userIds] };
  if ('topics' in a) return { where: 'topics && $3::text[]', params: [a.topics] };
  return { where: 'true', params: [] };
}

const NO_ID = '00000000-0000-0000-0000-000000000000';

export const pushStore = {
  async insert(db: Queryable, p: { id: string; createdBy: string; audience: Audience; message: Omit<PushMessage, 'expiresAt'>; sendAt: Date; expiresAt: Date | null; now: Date }): Promise<PushRow> {
    const { rows } = await db.query<PushRow>(
      `INSERT INTO pushes (id, created_by, audience, message, send_at, expires_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING *`,
      [p.id, p.createdBy, p.audience, p.message, p.sendAt, p.expiresAt, p.now],
    );
    return rows[0]!;
  },
  byId: async (db: Queryable, id: string) => (await db.query<PushRow>('SELECT * FROM pushes WHERE id = $1', [id])).rows[0],
  remove: async (db: Queryable, id: string) => void (await db.query('DELETE FROM pushes WHERE id = $1', [id])),

  /**
   * The next `limit` devices of the audience after the fan-out cursor get a pending delivery, and
   * the cursor and `targeted` move past them — one statement, so a crash leaves them both or neither.
   * Returns the last device id of the batch (undefined: the audience is exhausted).
   */
  async extendAudience(db: Queryable, push: Pick<PushRow, 'id' | 'audience'>, limit: number, now: Date): Promise<string | undefined> {
    const f = audienceFilter(push.audience);
    const { rows } = await db.query<{ last: string | null }>(
      // The cursor as a scalar subquery (not a joined row), so the index scan on devices starts at
      // it instead of at the first device: each batch costs its own size, not the audience's.
      `WITH batch AS (
         SELECT d.id, d.platform FROM devices d
         WHERE ${f.where} AND d.id > (SELECT coalesce(fanout_cursor, '${NO_ID}'::uuid) FROM pushes WHERE id = $1)
         ORDER BY d.id LIMIT $2
       ),
       ins AS (
         INSERT INTO push_deliveries (push_id, device_id, platform) SELECT $1, id, platform FROM batch
         ON CONFLICT DO NOTHING RETURNING device_id
       ),
       moved AS (
         UPDATE pushes SET fanout_cursor = (SELECT id FROM batch ORDER BY id DESC LIMIT 1), targeted = targeted + (SELECT count(*) FROM ins)::int,
           state = 'fanning_out', updated_at = $${3 + f.params.length}
         WHERE id = $1 AND EXISTS (SELECT 1 FROM batch) RETURNING fanout_cursor
       )
       SELECT (SELECT fanout_cursor FROM moved)::text AS last`,
      [push.id, limit, ...f.params, now],
    );
    return rows[0]?.last ?? undefined;
  },

  /** Up to `limit` pending deliveries after `after`, in device order: what the fan-out hands to the send queue. */
  pendingAfter: async (db: Queryable, pushId: string, after: string | null, limit: number) =>
    (await db.query<{ device_id: string; platform: Platform }>(
      `SELECT device_id, platform FROM push_deliveries WHERE push_id = $1 AND device_id > $2 AND state = 'pending' ORDER BY device_id LIMIT $3`,
      [pushId, after ?? NO_ID, limit],
    )).rows,

  /** The fan-out reached the end of the audience: from now on the push is done when nothing is pending. */
  async fanoutDone(db: Queryable, pushId: string, now: Date) {
    await db.query(`UPDATE pushes SET state = CASE WHEN sent + failed + pruned >= targeted THEN 'done' ELSE 'sending' END, updated_at = $2 WHERE id = $1 AND state IN ('scheduled', 'fanning_out')`, [pushId, now]);
  },
};

export interface ClaimedDelivery {
  device_id: string;
  token: string;
  webpush_keys: WebPushSubscription['keys'] | null;
  attempts: number;
}

/** A delivery claimed this long ago and never recorded was being sent when its worker stopped. */
export const STUCK_SENDING_MS = 10 * 60_000;

export const deliveryStore = {
  /**
   * Deliveries whose worker stopped between claiming and recording them: whether the provider got
   * them is unknown, and sending again could deliver twice, so they are failed (at most once) and
   * counted, and their push can finish.
   */
  async settleStuck(db: Queryable, now: Date): Promise<number> {
    const { rows } = await db.query<{ push_id: string; n: number }>(
      `WITH stuck AS (
         UPDATE push_deliveries SET state = 'failed', reason = 'outcome unknown: the push worker stopped while sending', updated_at = $1
         WHERE state = 'sending' AND updated_at < $2 RETURNING push_id
       ) SELECT push_id, count(*)::int AS n FROM stuck GROUP BY push_id`,
      [now, new Date(now.getTime() - STUCK_SENDING_MS)],
    );
    for (const r of rows) {
      await db.query(
        `UPDATE pushes SET failed = failed + $2, updated_at = $3, state = CASE WHEN state = 'sending' AND sent + failed + $2 + pruned >= targeted THEN 'done' ELSE state END WHERE id = $1`,
        [r.push_id, r.n, now],
      );
    }
    return rows.reduce((n, r) => n + r.n, 0);
  },

  /**
   * Claims the deliveries of `deviceIds` still to send (pending, or waiting for a retry): they become
   * `sending` before any provider is called, so no other run can send them again. Deliveries whose
   * device is gone are failed on the spot.
   */
  async claim(db: Queryable, pushId: string, deviceIds: string[], now: Date): Promise<{ claimed: ClaimedDelivery[]; gone: number }> {
    const { rows } = await db.query<ClaimedDelivery>(
      `UPDATE push_deliveries d SET state = 'sending', attempts = d.attempts + 1, updated_at = $3
       FROM devices v WHERE d.push_id = $1 AND d.device_id = ANY($2::uuid[]) AND d.state IN ('pending', 'retry') AND v.id = d.device_id
       RETURNING d.device_id, v.token, v.webpush_keys, d.attempts`,
      [pushId, deviceIds, now],
    );
    const gone = await db.query(
      `UPDATE push_deliveries SET state = 'failed', reason = 'device unregistered', updated_at = $3
       WHERE push_id = $1 AND device_id = ANY($2::uuid[]) AND state IN ('pending', 'retry') AND NOT EXISTS (SELECT 1 FROM devices v WHERE v.id = device_id)`,
      [pushId, deviceIds, now],
    );
    if (gone.rowCount) await db.query('UPDATE pushes SET failed = failed + $2 WHERE id = $1', [pushId, gone.rowCount]);
    return { claimed: rows, gone: gone.rowCount };
  },

  /**
   * Records what the providers said, and the push's counters with it. Pruned devices are deleted.
   * The push is done once nothing is left to send and the fan-out has finished.
   */
  async record(db: Queryable, pushId: string, r: { sent: string[]; failed: { id: string; reason: string }[]; pruned: { id: string; reason: string }[]; retry: string[] }, now: Date) {
    const mark = (ids: string[], state: string, reasons?: string[]) =>
      ids.length === 0
        ? Promise.resolve()
        : db.query(
            `UPDATE push_deliveries d SET state = $3, reason = r.reason, updated_at = $5
             FROM unnest($2::uuid[], $4::text[]) AS r(id, reason) WHERE d.push_id = $1 AND d.device_id = r.id`,
            [pushId, ids, state, reasons ?? ids.map(() => null), now],
          );
    await mark(r.sent, 'sent');
    await mark(r.failed.map((f) => f.id), 'failed', r.failed.map((f) => f.reason));
    await mark(r.pruned.map((f) => f.id), 'pruned', r.pruned.map((f) => f.reason));
    await mark(r.retry, 'retry');
    if (r.pruned.length) await db.query('DELETE FROM devices WHERE id = ANY($1::uuid[])', [r.pruned.map((p) => p.id)]);
    await db.query(
      `UPDATE pushes SET sent = sent + $2, failed = failed + $3, pruned = pruned + $4, updated_at = $5,
         state = CASE WHEN state = 'sending' AND sent + $2 + failed + $3 + pruned + $4 >= targeted THEN 'done' ELSE state END
       WHERE id = $1`,
      [pushId, r.sent.length, r.failed.length, r.pruned.length, now],
    );
  },
};
