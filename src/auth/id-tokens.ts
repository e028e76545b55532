import { createRemoteJWKSet, errors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import { LeveeError } from '../lib/errors.js';
import type { Dependency } from '../protection/dependency.js';

// Sign in with Apple / Google: the app obtains an ID token from the provider's SDK and sends it
// to us; we verify it against the provider's published keys, issuer and our audiences.

export interface ProviderConfig {
  jwksUrl: string;
  issuers: string[];
  /** Accepted `aud` values; empty means the provider is not configured. */
  audiences: string[];
}

export interface ExternalIdentity {
  subject: string;
  email: string | null;
}

export type IdTokenVerifier = (idToken: string, nonce?: string) => Promise<ExternalIdentity>;

export function createIdTokenVerifier(provider: 'apple' | 'google', cfg: ProviderConfig, keyFetch: Dependency): IdTokenVerifier {
  // jose caches the key set, refetches on an unknown kid (at most every 30 s) and bounds each fetch.
  const remote = createRemoteJWKSet(new URL(cfg.jwksUrl), { timeoutDuration: 3_000, cooldownDuration: 30_000, cacheMaxAge: 3_600_000 });
  // Only "no key matches this token" is the token's fault. Anything else from the key set — a
  // refused connection (a plain TypeError from fetch), a timeout, a non-200, an unparsable or
  // malformed set — is the provider being unreachable: a retryable 503, never a 401.
  // The lookup runs behind `keyFetch` (breaker, bulkhead, the request's deadline): a provider that
  // is down costs each sign-in nothing once the circuit opens.
  const jwks: JWTVerifyGetKey = (header, token) =>
    keyFetch.run(async () => {
      try {
        return await remote(header, token);
      } catch (e) {
        if (e instanceof errors.JWKSNoMatchingKey || e instanceof errors.JWKSMultipleMatchingKeys) throw e;
        throw new LeveeError('unavailable', `Could not fetch ${provider}'s signing keys`, { cause: e, retryAfter: 5 });
      }
    });
  return async (idToken, nonce) => {
    if (cfg.audiences.length === 0) throw new LeveeError('provider_not_configured', `Sign in with ${provider} is not configured on this server`);
    let payload;
    try {
      ({ payload } = await jwtVerify(idToken, jwks, { issuer: cfg.issuers, audience: cfg.audiences, algorithms: ['RS256', 'ES256'], requiredClaims: ['sub', 'exp'] }));
    } catch (e) {
      if (e instanceof LeveeError) throw e;
      const code = (e as { code?: string }).code;
      throw new LeveeError('invalid_id_token', `The ${provider} ID token could not be verified (${code ?? 'invalid'})`);
    }
    // A token bound to a nonce is only accepted with that nonce: otherwise a stolen token could be
    // replayed by simply leaving the nonce out.
    if ((nonce !== undefined || payload.nonce !== undefined) && payload.nonce !== nonce) throw new LeveeError('invalid_id_token', `The ${provider} ID token nonce does not match`);
    const verified = payload.email_verified === true || payload.email_verified === 'true';
    return { subject: String(payload.sub), email: typeof payload.email === 'string' && verified ? payload.email : null };
  };
}
