import type { Queryable } from '../db/port.js';

// SQL for accounts. Every function takes the connection or transaction to run on.

export interface UserRow {
  id: string;
  email: string | null;
  password_hash: string | null;
  is_anonymous: boolean;
  role: 'user' | 'admin';
  created_at: Date;
}

export interface SessionRow {
  id: string;
  user_id: string;
  device_name: string | null;
  user_agent: string | null;
  ip: string | null;
  created_at: Date;
  last_used_at: Date;
  expires_at: Date;
}

const USER_COLS = 'id, email, password_hash, is_anonymous, role, created_at';
const SESSION_COLS = 'id, user_id, device_name, user_agent, ip, created_at, last_used_at, expires_at';

export const users = {
  /** The user with the providers it can sign in with, in one round trip (GET /me is a hot path). */
  async withProviders(q: Queryable, id: string) {
    return (
      await q.query<UserRow & { providers: string[] }>(
        `SELECT ${USER_COLS},
                ARRAY(SELECT provider FROM identities WHERE user_id = $1 ORDER BY created_at) AS providers
           FROM users WHERE id = $1`,
        [id],
      )
    ).rows[0];
  },
  async byId(q: Queryable, id: string) {
    return (await q.query<UserRow>(`SELECT ${USER_COLS} FROM users WHERE id = $1`, [id])).rows[0];
  },
  async byEmail(q: Queryable, email: string) {
    return (await q.query<UserRow>(`SELECT ${USER_COLS} FROM users WHERE lower(email) = lower($1)`, [email])).rows[0];
  },
  async insert(q: Queryable, u: { id: string; email: string | null; passwordHash: string | null; anonymous: boolean; role: 'user' | 'admin'; now: Date }) {
    return (
      await q.query<UserRow>(
        `INSERT INTO users (id, email, password_hash, is_anonymous, role, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING ${USER_COLS}`,
        [u.id, u.email, u.passwordHash, u.anonymous, u.role, u.now],
      )
    ).rows[0]!;
  },
  /** Gives an anonymous account an email and password; the id (and so all its data) stays. */
  async upgrade(q: Queryable, id: string, email: string, passwordHash: string) {
    return (
      await q.query<UserRow>(
        `UPDATE users SET email = $2, password_hash = $3, is_anonymous = false, updated_at = now()
          WHERE id = $1 AND is_anonymous RETURNING ${USER_COLS}`,
        [id, email, passwordHash],
      )
    ).rows[0];
  },
  /** Sets the role of the account with this email; false if there is none. Takes effect at its next sign-in or refresh. */
  async setRole(q: Queryable, email: string, role: 'user' | 'admin') {
    return (await q.query('UPDATE users SET role = $2, updated_at = now() WHERE lower(email) = lower($1)', [email, role])).rowCount > 0;
  },
  async markNotAnonymous(q: Queryable, id: string) {
    await q.query('UPDATE users SET is_anonymous = false, updated_at = now() WHERE id = $1', [id]);
  },
  async setPassword(q: Queryable, id: string, passwordHash: string) {
    await q.query('UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1', [id, passwordHash]);
  },
};

export const identities = {
  async userFor(q: Queryable, provider: string, subject: string) {
    return (await q.query<{ user_id: string }>('SELECT user_id FROM identities WHERE provider = $1 AND subject = $2', [provider, subject])).rows[0]?.user_id;
  },
  async link(q: Queryable, provider: string, subject: string, userId: string, email: string | null) {
    await q.query('INSERT INTO identities (provider, subject, user_id, email) VALUES ($1, $2, $3, $4)', [provider, subject, userId, email]);
  },
};

export const sessions = {
  async insert(q: Queryable, s: { id: string; userId: string; deviceName: string | null; userAgent: string | null; ip: string | null; now: Date; expiresAt: Date }) {
    await q.query(
      `INSERT INTO sessions (id, user_id, device_name, user_agent, ip, created_at, last_used_at, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $6, $7)`,
      [s.id, s.userId, s.deviceName, s.userAgent, s.ip, s.now, s.expiresAt],
    );
  },
  async activeForUser(q: Queryable, userId: string, now: Date) {
    return (
      await q.query<SessionRow>(
        `SELECT ${SESSION_COLS} FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 ORDER BY last_used_at DESC`,
        [userId, now],
      )
    ).rows;
  },
  async isActive(q: Queryable, id: string, now: Date) {
    return (await q.query('SELECT 1 FROM sessions WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2', [id, now])).rowCount > 0;
  },
  /** Revokes one session of `userId`; false if there is no such active session. */
  async revoke(q: Queryable, id: string, userId: string, reason: string) {
    const r = await q.query('UPDATE sessions SET revoked_at = now(), revoked_reason = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL', [id, userId, reason]);
    return r.rowCount > 0;
  },
  async revokeAllExcept(q: Queryable, userId: string, keepId: string, reason: string) {
    const r = await q.query('UPDATE sessions SET revoked_at = now(), revoked_reason = $3 WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL', [userId, keepId, reason]);
    return r.rowCount;
  },
  async touch(q: Queryable, id: string, now: Date, expiresAt: Date) {
    await q.query('UPDATE sessions SET last_used_at = $2, expires_at = $3 WHERE id = $1', [id, now, expiresAt]);
  },
};

export interface RefreshLookup {
  session_id: string;
  user_id: string;
  used: boolean;
  session_active: boolean;
}

/** Housekeeping: what no longer serves any purpose. Returns the number of rows removed. */
export async function purgeEndedSessions(q: Queryable, now: Date): Promise<number> {
  const day = 86_400_000;
  // Ended sessions stay 30 days (so "signed out / revoked" still shows why), then go with their tokens.
  const ended = await q.query('DELETE FROM sessions WHERE revoked_at < $1 OR expires_at < $1', [new Date(now.getTime() - 30 * day)]);
  // Used refresh tokens are what detects a replay; after 7 days a replay is simply unknown (401).
  const used = await q.query('DELETE FROM refresh_tokens WHERE used_at < $1', [new Date(now.getTime() - 7 * day)]);
  return ended.rowCount + used.rowCount;
}

export const refreshTokens = {
  async insert(q: Queryable, hash: string, sessionId: string) {
    await q.query('INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($1, $2)', [hash, sessionId]);
  },
  /**
   * Marks the token used, atomically: of two concurrent presentations only one gets `used: false`.
   * Returns undefined for a token that was never issued.
   */
  async consume(q: Queryable, hash: string, now: Date): Promise<RefreshLookup | undefined> {
    const fresh = await q.query<RefreshLookup>(
      `UPDATE refresh_tokens rt SET used_at = $2
         FROM sessions s
        WHERE rt.token_hash = $1 AND rt.used_at IS NULL AND s.id = rt.session_id
        RETURNING rt.session_id, s.user_id, false AS used, (s.revoked_at IS NULL AND s.expires_at > $2) AS session_active`,
      [hash, now],
    );
    if (fresh.rows[0]) return fresh.rows[0];
    return (
      await q.query<RefreshLookup>(
        `SELECT rt.session_id, s.user_id, true AS used, (s.revoked_at IS NULL AND s.expires_at > $2) AS session_active
           FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id WHERE rt.token_hash = $1`,
        [hash, now],
      )
    ).rows[0];
  },
};
