import { exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import type { Db, Queryable } from '../db/port.js';
import type { Clock } from '../lib/clock.js';
import { newSecret } from '../lib/ids.js';

// Access-token signing keys live in the database so every instance signs and verifies with the
// same set. Rotation inserts a new key and retires the old one; a retired key still verifies (and
// stays in the JWKS) until every token it signed has expired, so rotating signs nobody out.

export const ACCESS_TOKEN_ALG = 'ES256';

interface KeyRow {
  kid: string;
  private_jwk: JWK;
  public_jwk: JWK;
  created_at: Date;
  retired_at: Date | null;
}

export interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
}

export interface KeyRing {
  /** The key that signs new tokens. */
  current(): SigningKey;
  /** A verification key by kid; reloads from the database (throttled) when the kid is unknown. */
  verificationKey(kid: string): Promise<CryptoKey | undefined>;
  jwks(): { keys: JWK[] };
  rotate(): Promise<string>;
  reload(): Promise<void>;
  stop(): void;
}

/** Arbitrary, fixed: serialises making the first signing key among processes starting together. */
export const FIRST_KEY_LOCK_KEY = 7_426_002;

export async function createSigningKey(db: Queryable): Promise<string> {
  const { privateKey, publicKey } = await generateKeyPair(ACCESS_TOKEN_ALG, { extractable: true });
  const kid = newSecret(12);
  const pub = { ...(await exportJWK(publicKey)), kid, alg: ACCESS_TOKEN_ALG, use: 'sig' };
  const priv = { ...(await exportJWK(privateKey)), kid, alg: ACCESS_TOKEN_ALG };
  await db.query('INSERT INTO signing_keys (kid, alg, private_jwk, public_jwk) VALUES ($1, $2, $3, $4)', [kid, ACCESS_TOKEN_ALG, priv, pub]);
  return kid;
}

export async function rotateSigningKey(db: Db): Promise<string> {
  const kid = await createSigningKey(db);
  await db.query('UPDATE signing_keys SET retired_at = now() WHERE retired_at IS NULL AND kid <> $1', [kid]);
  return kid;
}

export async function createKeyRing(opts: { db: Db; clock: Clock; accessTokenTtlSeconds: number; reloadEveryMs?: number }): Promise<KeyRing> {
  const { db, clock } = opts;
  let signing: SigningKey | undefined;
  let verifying = new Map<string, CryptoKey>();
  let published: JWK[] = [];
  let lastReload = 0;
  let inflight: Promise<void> | undefined;

  async function reload(): Promise<void> {
    lastReload = Date.now();
    // Keys retired longer ago than a token lives can no longer have valid tokens: drop them.
    const { rows } = await db.query<KeyRow>(
      `SELECT kid, private_jwk, public_jwk, created_at, retired_at FROM signing_keys
        WHERE retired_at IS NULL OR retired_at > $1 ORDER BY created_at DESC`,
      [new Date(clock.now().getTime() - (opts.accessTokenTtlSeconds + 60) * 1000)],
    );
    if (rows.length === 0 || rows.every((r) => r.retired_at)) {
      // Under a lock, checked again: instances starting together on one database must agree on
      // one key, or each signs with a key the others have not loaded yet (their tokens get 401).
      await db.transaction(async (tx) => {
        await tx.query('SELECT pg_advisory_xact_lock($1)', [FIRST_KEY_LOCK_KEY]);
        const active = await tx.query('SELECT 1 FROM signing_keys WHERE retired_at IS NULL LIMIT 1');
        if (active.rows.length === 0) await createSigningKey(tx);
      });
      return reload();
    }
    const next = new Map<string, CryptoKey>();
    for (const r of rows) next.set(r.kid, (await importJWK(r.public_jwk, ACCESS_TOKEN_ALG)) as CryptoKey);
    const active = rows.find((r) => !r.retired_at)!;
    signing = { kid: active.kid, privateKey: (await importJWK(active.private_jwk, ACCESS_TOKEN_ALG)) as CryptoKey };
    verifying = next;
    published = rows.map((r) => r.public_jwk);
  }

  await reload();
  const timer = setInterval(() => void reload().catch(() => {}), opts.reloadEveryMs ?? 60_000);
  timer.unref();

  return {
    current: () => signing!,
    async verificationKey(kid) {
      const known = verifying.get(kid);
      if (known) return known;
      // Another instance may have rotated: reload, single-flight and at most once a second, so
      // tokens with forged kids cannot hammer the database.
      if (!inflight && Date.now() - lastReload > 1_000) inflight = reload().finally(() => (inflight = undefined));
      await inflight;
      return verifying.get(kid);
    },
    jwks: () => ({ keys: published }),
    async rotate() {
      const kid = await rotateSigningKey(db);
      await reload();
      return kid;
    },
    reload,
    stop: () => clearInterval(timer),
  };
}
