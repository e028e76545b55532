import type { Db, Queryable } from '../db/port.js';
import { sqlState, SQLSTATE } from '../db/port.js';
import type { Clock } from '../lib/clock.js';
import { LeveeError } from '../lib/errors.js';
import { newId, newSecret, sha256 } from '../lib/ids.js';
import type { SignInThrottle } from '../protection/brute-force.js';
import type { AccessTokens, Principal } from './access-tokens.js';
import type { IdTokenVerifier } from './id-tokens.js';
import type { PasswordHasher } from './passwords.js';
import { identities, refreshTokens, sessions, users, type SessionRow, type UserRow } from './store.js';

export interface AuthConfig {
  sessionTtlDays: number;
  adminEmails: string[];
}

export interface Device {
  deviceName?: string | undefined;
  userAgent?: string | undefined;
  ip?: string | undefined;
}

export interface PublicUser {
  id: string;
  email: string | null;
  isAnonymous: boolean;
  role: 'user' | 'admin';
  createdAt: string;
}

export interface SignedIn {
  user: PublicUser;
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
}

export interface PublicSession {
  id: string;
  deviceName: string | null;
  userAgent: string | null;
  ip: string | null;
  createdAt: string;
  lastUsedAt: string;
  current: boolean;
}

const toUser = (u: UserRow): PublicUser => ({ id: u.id, email: u.email, isAnonymous: u.is_anonymous, role: u.role, createdAt: u.created_at.toISOString() });
const toSession = (s: SessionRow, currentId: string): PublicSession => ({
  id: s.id,
  deviceName: s.device_name,
  userAgent: s.user_agent,
  ip: s.ip,
  createdAt: s.created_at.toISOString(),
  lastUsedAt: s.last_used_at.toISOString(),
  current: s.id === currentId,
});

const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,185}\.[^\s@]{1,63}$/;
export const PASSWORD_MIN = 8;
export const PASSWORD_MAX = 256;

export function checkPasswordStrength(password: string): void {
  if (password.length < PASSWORD_MIN) throw new LeveeError('weak_password', `A password has at least ${PASSWORD_MIN} characters`);
  if (new Set(password).size < 4) throw new LeveeError('weak_password', 'A password needs at least 4 different characters');
}

export function createAuthService(deps: { db: Db; clock: Clock; tokens: AccessTokens; passwords: PasswordHasher; config: AuthConfig; apple: IdTokenVerifier; google: IdTokenVerifier; signInThrottle?: SignInThrottle }) {
  const { db, clock, tokens, config } = deps;
  const ttlMs = config.sessionTtlDays * 86_400_000;
  // Only an email an identity provider has verified can earn the admin role: a password sign-up
  // proves nothing about the mailbox. Operators grant admin with `levee admin grant <email>`.
  const roleForVerified = (email: string | null): 'user' | 'admin' => (email && config.adminEmails.includes(email.toLowerCase()) ? 'admin' : 'user');

  /** Opens a device session for `user` inside `q` and returns its first tokens. */
  async function openSession(q: Queryable, user: UserRow, device: Device): Promise<SignedIn> {
    const now = clock.now();
    const sessionId = newId();
    await sessions.insert(q, {
      id: sessionId,
      userId: user.id,
      deviceName: device.deviceName ?? null,
      userAgent: device.userAgent?.slice(0, 256) ?? null,
      ip: device.ip ?? null,
      now,
      expiresAt: new Date(now.getTime() + ttlMs),
    });
    const refreshToken = `rt_${newSecret()}`;
    await refreshTokens.insert(q, sha256(refreshToken), sessionId);
    const access = await tokens.issue({ userId: user.id, sessionId, role: user.role, anonymous: user.is_anonymous });
    return { user: toUser(user), accessToken: access.token, refreshToken, expiresIn: access.expiresIn };
  }

  const emailTaken = (e: unknown) => {
    if (sqlState(e) === SQLSTATE.uniqueViolation) throw new LeveeError('email_taken');
    throw e;
  };

  return {
    /** Whether a password sign-in, sign-up or change would be refused now (the HTTP gate asks before reading the body). */
    passwordHashing: { saturated: () => deps.passwords.saturated() },
    /** Email sign-up. Called by a signed-in anonymous user, it upgrades that account in place. */
    async signUp(input: { email: string; password: string } & Device, caller?: Principal): Promise<SignedIn> {
      const email = input.email.trim();
      if (!EMAIL.test(email)) throw new LeveeError('validation_failed', 'email is not a valid address');
      checkPasswordStrength(input.password);
      const passwordHash = await deps.passwords.hash(input.password);
      return db
        .transaction(async (tx) => {
          let user: UserRow | undefined;
          if (caller) {
            user = await users.upgrade(tx, caller.userId, email, passwordHash);
            if (!user) throw new LeveeError('already_upgraded');
          } else {
            user = await users.insert(tx, { id: newId(), email, passwordHash, anonymous: false, role: 'user', now: clock.now() });
          }
          return openSession(tx, user, input);
        })
        .catch(emailTaken);
    },

    async signIn(input: { email: string; password: string } & Device): Promise<SignedIn> {
      // Brute-force protection first: a blocked account or IP costs no database read and no hash.
      const throttle = deps.signInThrottle;
      await throttle?.check(input.email, input.ip);
      const rejected = async () => {
        await throttle?.failed(input.email, input.ip);
        return new LeveeError('invalid_credentials');
      };
      const user = await users.byEmail(db, input.email.trim());
      if (!user?.password_hash) {
        await deps.passwords.burn(input.password);
        throw await rejected();
      }
      if (!(await deps.passwords.verify(user.password_hash, input.password))) throw await rejected();
      await throttle?.succeeded(input.email);
      return db.transaction((tx) => openSession(tx, user, input));
    },

    async anonymous(device: Device): Promise<SignedIn> {
      return db.transaction(async (tx) => {
        const user = await users.insert(tx, { id: newId(), email: null, passwordHash: null, anonymous: true, role: 'user', now: clock.now() });
        return openSession(tx, user, device);
      });
    },

    /**
     * Rotates a refresh token. Each token works once; presenting a used one means it leaked (or a
     * client is broken), so the whole session — every token descended from the same sign-in — is revoked.
     */
    async refresh(refreshToken: string): Promise<SignedIn> {
      const now = clock.now();
      const outcome = await db.transaction(async (tx) => {
        const found = await refreshTokens.consume(tx, sha256(refreshToken), now);
        if (!found || !found.session_active) return { error: 'invalid_refresh_token' as const };
        if (found.used) {
          await sessions.revoke(tx, found.session_id, found.user_id, 'refresh_token_reused');
          return { error: 'refresh_token_reused' as const };
        }
        const user = await users.byId(tx, found.user_id);
        if (!user) return { error: 'invalid_refresh_token' as const };
        const next = `rt_${newSecret()}`;
        await refreshTokens.insert(tx, sha256(next), found.session_id);
        await sessions.touch(tx, found.session_id, now, new Date(now.getTime() + ttlMs));
        const access = await tokens.issue({ userId: user.id, sessionId: found.session_id, role: user.role, anonymous: user.is_anonymous });
        return { error: undefined, ok: { user: toUser(user), accessToken: access.token, refreshToken: next, expiresIn: access.expiresIn } };
      });
      if (outcome.error !== undefined) throw new LeveeError(outcome.error);
      return outcome.ok;
    },

    async signOut(caller: Principal): Promise<void> {
      await sessions.revoke(db, caller.sessionId, caller.userId, 'signed_out');
    },

    async me(caller: Principal) {
      const user = await users.withProviders(db, caller.userId);
      if (!user) throw new LeveeError('invalid_token', 'This account no longer exists');
      return { ...toUser(user), providers: [...(user.password_hash ? ['password'] : []), ...user.providers] };
    },

    async listSessions(caller: Principal): Promise<PublicSession[]> {
      return (await sessions.activeForUser(db, caller.userId, clock.now())).map((s) => toSession(s, caller.sessionId));
    },

    async revokeSession(caller: Principal, sessionId: string): Promise<void> {
      if (!(await sessions.revoke(db, sessionId, caller.userId, 'revoked_by_user'))) throw new LeveeError('session_not_found');
    },

    /** "Sign out my other devices". */
    async revokeOtherSessions(caller: Principal): Promise<number> {
      return sessions.revokeAllExcept(db, caller.userId, caller.sessionId, 'revoked_by_user');
    },

    /** Changes the password and signs out every other device. */
    async changePassword(caller: Principal, currentPassword: string, newPassword: string): Promise<void> {
      const user = await users.byId(db, caller.userId);
      if (!user?.password_hash || !(await deps.passwords.verify(user.password_hash, currentPassword))) throw new LeveeError('invalid_credentials', 'The current password is wrong');
      checkPasswordStrength(newPassword);
      const hash = await deps.passwords.hash(newPassword);
      await db.transaction(async (tx) => {
        await users.setPassword(tx, user.id, hash);
        await sessions.revokeAllExcept(tx, user.id, caller.sessionId, 'password_changed');
      });
    },

    /**
     * Sign in with Apple or Google. A known identity signs into its account; a signed-in anonymous
     * caller gets the identity linked (keeping its data); otherwise a new account is created.
     */
    async signInWithProvider(provider: 'apple' | 'google', input: { idToken: string; nonce?: string | undefined } & Device, caller?: Principal): Promise<SignedIn> {
      const identity = await deps[provider](input.idToken, input.nonce);
      const attempt = () => db.transaction(async (tx) => {
        const existing = await identities.userFor(tx, provider, identity.subject);
        let user: UserRow | undefined;
        if (existing) {
          user = await users.byId(tx, existing);
        } else if (caller?.anonymous) {
          await identities.link(tx, provider, identity.subject, caller.userId, identity.email);
          await users.markNotAnonymous(tx, caller.userId);
          user = await users.byId(tx, caller.userId);
        } else {
          // The verified email is recorded on the account only if no other account has it.
          const email = identity.email && !(await users.byEmail(tx, identity.email)) ? identity.email : null;
          user = await users.insert(tx, { id: newId(), email, passwordHash: null, anonymous: false, role: roleForVerified(email), now: clock.now() });
          await identities.link(tx, provider, identity.subject, user.id, identity.email);
        }
        if (!user) throw new LeveeError('invalid_id_token', 'The linked account no longer exists');
        return openSession(tx, user, input);
      });
      // Two first sign-ins with one identity (a client retrying a slow request) race to insert it;
      // the loser's second attempt finds the winner's identity (or its email taken) and signs in.
      return attempt().catch((e: unknown) => {
        if (sqlState(e) === SQLSTATE.uniqueViolation) return attempt();
        throw e;
      });
    },
  };
}

export type AuthService = ReturnType<typeof createAuthService>;
