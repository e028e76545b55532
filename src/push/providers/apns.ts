import { createPrivateKey, type KeyObject } from 'node:crypto';
import http2 from 'node:http2';
import { SignJWT } from 'jose';
import { createHttp2Pool, errorText, retryResult, type H2Response } from './h2-pool.js';
import type { PushMessage, PushProvider, SendResult } from './port.js';

// APNs provider API with token auth: an ES256 JWT from the team's .p8 key rides on every request,
// over a few long-lived HTTP/2 connections that each carry many concurrent streams. Apple wants the
// JWT reused (refreshing it more than once every 20 minutes earns TooManyProviderTokenUpdates) but
// younger than an hour, and it raises a connection's stream limit only after the first request with
// a valid token, which is why the pool reads the server's SETTINGS instead of assuming a number.

export interface ApnsOptions {
  teamId: string;
  keyId: string;
  /** The .p8 signing key: a PEM PKCS#8 EC P-256 private key. */
  privateKey: string;
  /** The app's bundle id, sent as apns-topic. */
  bundleId: string;
  /** Default https://api.push.apple.com (the sandbox is https://api.sandbox.push.apple.com). */
  baseUrl?: string;
  /** HTTP/2 connections to keep (default 2). */
  connections?: number;
  /** Sends waiting for a free stream on every connection; beyond it a send answers `retry` at once (default 1000). */
  maxPending?: number;
  /** Per send, queueing included (default 10 s). */
  requestTimeoutMs?: number;
  /** Extra trusted CA certificates (PEM), added to the system ones; for local mocks. */
  ca?: string | string[];
  /** Milliseconds since the epoch; a test seam for the token's age. */
  now?: () => number;
}

const MAX_PAYLOAD = 4096;
const MAX_COLLAPSE_ID = 64;
const TOKEN_MAX_AGE_MS = 50 * 60_000;

export function createApnsProvider(opts: ApnsOptions): PushProvider {
  const now = opts.now ?? Date.now;
  const timeoutMs = opts.requestTimeoutMs ?? 10_000;
  // Parsed now so a wrong key fails at start-up rather than on the first notification.
  const key = createPrivateKey(opts.privateKey);
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new Error('APNs signing key must be an EC P-256 (.p8) private key');
  }
  const tokens = createProviderTokens(key, opts, now);
  const pool = createHttp2Pool({
    origin: opts.baseUrl ?? 'https://api.push.apple.com',
    connections: opts.connections ?? 2,
    maxPending: opts.maxPending ?? 1000,
    connectTimeoutMs: timeoutMs,
    ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
  });

  return {
    platform: 'apns',
    async send(target, message, signal) {
      if (target.platform !== 'apns') return { outcome: 'rejected', reason: `not an APNs target: ${target.platform}` };
      // Checked here because the token becomes part of the request path.
      if (!/^[0-9a-fA-F]{16,400}$/.test(target.token)) return { outcome: 'invalid_token', reason: 'BadDeviceToken (not a hex device token)' };
      const built = buildRequest(target, message, opts.bundleId, now());
      if ('outcome' in built) return built;
      for (let renewed = false; ; renewed = true) {
        let jwt: string;
        try {
          jwt = await tokens.current();
        } catch (e) {
          return { outcome: 'rejected', reason: `cannot sign the provider token: ${errorText(e)}` };
        }
        let res: H2Response;
        try {
          res = await pool.request({ ...built.headers, authorization: `bearer ${jwt}` }, built.body, { timeoutMs, ...(signal ? { signal } : {}) });
        } catch (e) {
          return { outcome: 'retry', reason: errorText(e) };
        }
        const result = mapApnsResponse(res);
        if (result !== 'expired') return result;
        if (renewed) return { outcome: 'retry', reason: 'ExpiredProviderToken after renewing the token' };
        tokens.renew(jwt);
      }
    },
    close: () => pool.close(),
  };
}

/** The JWT, signed at most once at a time; renewed on age or when APNs calls the one in use expired. */
function createProviderTokens(key: KeyObject, opts: ApnsOptions, now: () => number) {
  let token: { jwt: string; issuedAt: number } | undefined;
  let signing: Promise<string> | undefined;
  return {
    current(): Promise<string> {
      if (token && now() - token.issuedAt < TOKEN_MAX_AGE_MS) return Promise.resolve(token.jwt);
      signing ??= (async () => {
        try {
          const issuedAt = now();
          const jwt = await new SignJWT({})
            .setProtectedHeader({ alg: 'ES256', kid: opts.keyId })
            .setIssuer(opts.teamId)
            .setIssuedAt(Math.floor(issuedAt / 1000))
            .sign(key);
          token = { jwt, issuedAt };
          return jwt;
        } finally {
          signing = undefined;
        }
      })();
      return signing;
    },
    /** Only the token that was refused is dropped, so a burst of 403s renews it once, not once per send. */
    renew(refused: string) {
      if (token?.jwt === refused) token = undefined;
    },
  };
}

function buildRequest(target: { token: string }, m: PushMessage, bundleId: string, nowMs: number): { headers: http2.OutgoingHttpHeaders; body: string } | SendResult {
  // Anything the user sees or hears is an alert push; only a pure data push may be a background one,
  // which Apple requires to go at priority 5.
  const visible = m.title !== undefined || m.body !== undefined || m.sound !== undefined || m.badge !== undefined;
  const aps: Record<string, unknown> = {};
  if (m.title !== undefined || m.body !== undefined) aps.alert = { title: m.title, body: m.body };
  if (m.badge !== undefined) aps.badge = m.badge;
  if (m.sound !== undefined) aps.sound = m.sound;
  if (!visible) aps['content-available'] = 1;
  const body = JSON.stringify({ ...m.data, aps });
  if (Buffer.byteLength(body) > MAX_PAYLOAD) return { outcome: 'rejected', reason: `PayloadTooLarge (over ${MAX_PAYLOAD} bytes)` };
  if (m.collapseId !== undefined && Buffer.byteLength(m.collapseId) > MAX_COLLAPSE_ID) {
    return { outcome: 'rejected', reason: `BadCollapseId (over ${MAX_COLLAPSE_ID} bytes)` };
  }
  // A past expiry becomes 0: APNs then tries once and stores nothing, the same as TTL 0 elsewhere.
  const expiration = m.expiresAt ? Math.max(0, Math.floor(m.expiresAt.getTime() / 1000)) : 0;
  const headers: http2.OutgoingHttpHeaders = {
    ':method': 'POST',
    ':path': `/3/device/${target.token}`,
    'apns-topic': bundleId,
    'apns-push-type': visible ? 'alert' : 'background',
    'apns-priority': visible && m.priority === 'high' ? '10' : '5',
    'apns-expiration': String(m.expiresAt && m.expiresAt.getTime() <= nowMs ? 0 : expiration),
    'content-type': 'application/json',
  };
  if (m.collapseId !== undefined) headers['apns-collapse-id'] = m.collapseId;
  return { headers, body };
}

/** `expired` means: renew the provider token and send again. */
function mapApnsResponse(res: H2Response): SendResult | 'expired' {
  if (res.status === 200) {
    const id = res.headers['apns-id'];
    return typeof id === 'string' ? { outcome: 'sent', id } : { outcome: 'sent' };
  }
  let reason = `HTTP ${res.status}`;
  try {
    const parsed = JSON.parse(res.body) as { reason?: unknown };
    if (typeof parsed.reason === 'string') reason = parsed.reason;
  } catch {
    // no JSON body: keep the status
  }
  if (res.status === 410 || reason === 'Unregistered' || reason === 'BadDeviceToken' || reason === 'DeviceTokenNotForTopic') {
    return { outcome: 'invalid_token', reason };
  }
  if (res.status === 429 || res.status >= 500) return retryResult(reason, res.headers);
  if (res.status === 403 && reason === 'ExpiredProviderToken') return 'expired';
  return { outcome: 'rejected', reason };
}
