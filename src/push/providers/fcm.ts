import { createPrivateKey, type KeyObject } from 'node:crypto';
import https from 'node:https';
import { SignJWT } from 'jose';
import { createHttp2Pool, errorText, retryResult, type H2Response } from './h2-pool.js';
import type { PushMessage, PushProvider, SendResult } from './port.js';

// FCM HTTP v1: messages:send over one reused HTTP/2 connection, authorised by an OAuth2 access token
// that the service account obtains with a signed JWT (the jwt-bearer grant) from its own token_uri.
// The token lives an hour: it is cached, fetched once for all concurrent sends, and renewed once
// when FCM answers 401 (it was revoked, or the clock lied).

/** The fields of a service-account key file that Levee uses. */
export interface FcmServiceAccount {
  client_email: string;
  private_key: string;
  project_id: string;
  token_uri: string;
}

export interface FcmOptions {
  serviceAccount: FcmServiceAccount;
  /** Default https://fcm.googleapis.com */
  baseUrl?: string;
  /** HTTP/2 connections to keep (default 1: FCM allows many streams on one). */
  connections?: number;
  /** Sends waiting for a free stream; beyond it a send answers `retry` at once (default 1000). */
  maxPending?: number;
  /** Per send and per token fetch (default 10 s). */
  requestTimeoutMs?: number;
  /** Extra trusted CA certificates (PEM), for both FCM and the token endpoint; for local mocks. */
  ca?: string | string[];
  now?: () => number;
}

const SCOPE = 'https://www.googleapis.com/auth/firebase.messaging';
const MAX_PAYLOAD = 4096;
const RENEW_BEFORE_MS = 5 * 60_000;

export function createFcmProvider(opts: FcmOptions): PushProvider {
  const sa = opts.serviceAccount;
  const now = opts.now ?? Date.now;
  const timeoutMs = opts.requestTimeoutMs ?? 10_000;
  const key = createPrivateKey(sa.private_key); // a broken key file fails at start-up
  const tokens = createAccessTokens(sa, key, { timeoutMs, now, ...(opts.ca !== undefined ? { ca: opts.ca } : {}) });
  const path = `/v1/projects/${encodeURIComponent(sa.project_id)}/messages:send`;
  const pool = createHttp2Pool({
    origin: opts.baseUrl ?? 'https://fcm.googleapis.com',
    connections: opts.connections ?? 1,
    maxPending: opts.maxPending ?? 1000,
    connectTimeoutMs: timeoutMs,
    ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
  });

  return {
    platform: 'fcm',
    async send(target, message, signal) {
      if (target.platform !== 'fcm') return { outcome: 'rejected', reason: `not an FCM target: ${target.platform}` };
      if (target.token === '') return { outcome: 'invalid_token', reason: 'empty registration token' };
      const built = buildMessage(target.token, message, now());
      if (typeof built !== 'string') return built;
      for (let renewed = false; ; renewed = true) {
        let accessToken: string;
        try {
          accessToken = await untilAborted(tokens.current(), signal);
        } catch (e) {
          return e instanceof TokenError && e.permanent ? { outcome: 'rejected', reason: e.message } : { outcome: 'retry', reason: `OAuth token: ${errorText(e)}` };
        }
        let res: H2Response;
        try {
          res = await pool.request(
            { ':method': 'POST', ':path': path, authorization: `Bearer ${accessToken}`, 'content-type': 'application/json; charset=utf-8' },
            built,
            { timeoutMs, ...(signal ? { signal } : {}) },
          );
        } catch (e) {
          return { outcome: 'retry', reason: errorText(e) };
        }
        const result = mapFcmResponse(res);
        if (result !== 'unauthorized') return result;
        if (renewed) return { outcome: 'retry', reason: 'UNAUTHENTICATED after renewing the access token' };
        tokens.renew(accessToken);
      }
    },
    close: () => pool.close(),
  };
}

function buildMessage(token: string, m: PushMessage, nowMs: number): string | SendResult {
  const notification = m.title !== undefined || m.body !== undefined ? { title: m.title, body: m.body } : undefined;
  if (Buffer.byteLength(JSON.stringify({ notification, data: m.data })) > MAX_PAYLOAD) {
    return { outcome: 'rejected', reason: `message payload over ${MAX_PAYLOAD} bytes` };
  }
  const ttlSeconds = m.expiresAt ? Math.max(0, Math.ceil((m.expiresAt.getTime() - nowMs) / 1000)) : undefined;
  // iOS devices behind FCM get the same treatment as through APNs directly: data-only is a
  // background push, which Apple requires at priority 5.
  const visible = notification !== undefined || m.badge !== undefined || m.sound !== undefined;
  const aps: Record<string, unknown> = {};
  if (m.badge !== undefined) aps.badge = m.badge;
  if (m.sound !== undefined) aps.sound = m.sound;
  if (!visible) aps['content-available'] = 1;
  const apnsHeaders: Record<string, string> = { 'apns-priority': visible && m.priority === 'high' ? '10' : '5', 'apns-push-type': visible ? 'alert' : 'background' };
  if (m.expiresAt) apnsHeaders['apns-expiration'] = String(ttlSeconds === 0 ? 0 : Math.floor(m.expiresAt.getTime() / 1000));
  if (m.collapseId !== undefined) apnsHeaders['apns-collapse-id'] = m.collapseId;
  return JSON.stringify({
    message: {
      token,
      ...(notification ? { notification } : {}),
      ...(m.data ? { data: m.data } : {}),
      android: {
        priority: m.priority === 'high' ? 'HIGH' : 'NORMAL',
        ...(ttlSeconds !== undefined ? { ttl: `${ttlSeconds}s` } : {}),
        ...(m.collapseId !== undefined ? { collapse_key: m.collapseId } : {}),
        ...(m.sound !== undefined ? { notification: { sound: m.sound } } : {}),
      },
      apns: { headers: apnsHeaders, payload: { aps } },
    },
  });
}

interface FcmErrorBody {
  error?: { code?: number; message?: string; status?: string; details?: { '@type'?: string; errorCode?: string; fieldViolations?: { field?: string }[] }[] };
}

/** `unauthorized` means: renew the access token and send again. */
function mapFcmResponse(res: H2Response): SendResult | 'unauthorized' {
  let body: FcmErrorBody & { name?: string } = {};
  try {
    body = JSON.parse(res.body) as typeof body;
  } catch {
    // an error page from a proxy: the status decides
  }
  if (res.status === 200) return typeof body.name === 'string' ? { outcome: 'sent', id: body.name } : { outcome: 'sent' };
  const err = body.error ?? {};
  const details = err.details ?? [];
  // FCM's own error code (UNREGISTERED, QUOTA_EXCEEDED…) is more precise than the gRPC status.
  const code = details.find((d) => d['@type']?.endsWith('FcmError'))?.errorCode ?? err.status ?? `HTTP_${res.status}`;
  const reason = err.message ? `${code}: ${err.message}` : code;
  if (res.status === 404 || code === 'UNREGISTERED') return { outcome: 'invalid_token', reason };
  if (res.status === 401 && code !== 'THIRD_PARTY_AUTH_ERROR') return 'unauthorized';
  if (res.status === 429 || res.status >= 500) return retryResult(reason, res.headers);
  if (code === 'INVALID_ARGUMENT') {
    const aboutToken = details.some((d) => d.fieldViolations?.some((v) => v.field === 'message.token')) || /registration token/i.test(err.message ?? '');
    return aboutToken ? { outcome: 'invalid_token', reason } : { outcome: 'rejected', reason };
  }
  return { outcome: 'rejected', reason };
}

class TokenError extends Error {
  constructor(
    message: string,
    /** The token endpoint refused the grant itself (a revoked key, a wrong account): retrying cannot help. */
    readonly permanent: boolean,
  ) {
    super(message);
  }
}

function createAccessTokens(sa: FcmServiceAccount, key: KeyObject, o: { ca?: string | string[]; timeoutMs: number; now: () => number }) {
  let cached: { token: string; renewAt: number } | undefined;
  let fetching: Promise<string> | undefined;

  const fetchToken = async (): Promise<string> => {
    const iat = Math.floor(o.now() / 1000);
    const assertion = await new SignJWT({ scope: SCOPE })
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT' })
      .setIssuer(sa.client_email)
      .setAudience(sa.token_uri)
      .setIssuedAt(iat)
      .setExpirationTime(iat + 3600)
      .sign(key);
    const form = new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion }).toString();
    const res = await postForm(sa.token_uri, form, o);
    let parsed: { access_token?: unknown; expires_in?: unknown; error?: unknown; error_description?: unknown } = {};
    try {
      parsed = JSON.parse(res.body) as typeof parsed;
    } catch {
      // judged by the status below
    }
    if (res.status !== 200 || typeof parsed.access_token !== 'string') {
      const what = `token endpoint answered ${res.status}${parsed.error ? ` ${String(parsed.error)}` : ''}${parsed.error_description ? `: ${String(parsed.error_description)}` : ''}`;
      throw new TokenError(what, res.status >= 400 && res.status < 500 && res.status !== 429 && res.status !== 408);
    }
    const lifetimeMs = (typeof parsed.expires_in === 'number' ? parsed.expires_in : 3600) * 1000;
    // Renew a little early; a short-lived token is renewed at half its life instead.
    cached = { token: parsed.access_token, renewAt: o.now() + (lifetimeMs > 2 * RENEW_BEFORE_MS ? lifetimeMs - RENEW_BEFORE_MS : lifetimeMs / 2) };
    return parsed.access_token;
  };

  return {
    current(): Promise<string> {
      if (cached && o.now() < cached.renewAt) return Promise.resolve(cached.token);
      fetching ??= fetchToken().finally(() => {
        fetching = undefined;
      });
      return fetching;
    },
    renew(refused: string) {
      if (cached?.token === refused) cached = undefined;
    },
  };
}

/** Token fetches are rare (hourly): a plain HTTPS request with no kept-alive agent to close. */
function postForm(url: string, form: string, o: { ca?: string | string[]; timeoutMs: number }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, {
      method: 'POST',
      agent: false,
      ...(o.ca !== undefined ? { ca: o.ca } : {}),
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(form), accept: 'application/json' },
    });
    const fail = (e: Error) => {
      clearTimeout(timer);
      reject(e); // a no-op once resolved
    };
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${o.timeoutMs} ms`)), o.timeoutMs);
    req.on('error', fail);
    req.on('close', () => fail(new Error('token endpoint closed the connection')));
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
        if (body.length > 65_536) req.destroy(new Error('token response too large'));
      });
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, body });
      });
      res.on('error', fail);
    });
    req.end(form);
  });
}

/** The shared token fetch keeps running for the other sends; this one stops waiting when aborted. */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(new Error('send aborted'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Error('send aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
