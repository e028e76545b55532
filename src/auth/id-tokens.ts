import { createRemoteJWKSet, jwtVerify } from 'jose';
import { LeveeError } from '../lib/errors.js';

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

export function createIdTokenVerifier(provider: 'apple' | 'google', cfg: ProviderConfig): IdTokenVerifier {
  // jose caches the key set, refetches on an unknown kid (at most every 30 s) and bounds each fetch.
  const jwks = createRemoteJWKSet(new URL(cfg.jwksUrl), { timeoutDuration: 3_000, cooldownDuration: 30_000, cacheMaxAge: 3_600_000 });
  return async (idToken, nonce) => {
    if (cfg.audiences.length === 0) throw new LeveeError('provider_not_configured', `Sign in with ${provider} is not configured on this server`);
    let payload;
    try {
      ({ payload } = await jwtVerify(idToken, jwks, { issuer: cfg.issuers, audience: cfg.audiences, algorithms: ['RS256', 'ES256'], requiredClaims: ['sub', 'exp'] }));
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'ERR_JWKS_TIMEOUT' || code === 'ERR_JOSE_GENERIC') {
        throw new LeveeError('unavailable', `Could not fetch ${provider}'s signing keys`, { cause: e, retryAfter: 5 });
      }
      throw new LeveeError('invalid_id_token', `The ${provider} ID token could not be verified (${code ?? 'invalid'})`);
    }
    if (nonce !== undefined && payload.nonce !== nonce) throw new LeveeError('invalid_id_token', `The ${provider} ID token nonce does not match`);
    const verified = payload.email_verified === true || payload.email_verified === 'true';
    return { subject: String(payload.sub), email: typeof payload.email === 'string' && verified ? payload.email : null };
  };
}
