import { createHash } from 'node:crypto';
import https from 'node:https';
import webpush from 'web-push';
import { errorText, retryAfterMs } from './h2-pool.js';
import type { PushMessage, PushProvider, SendResult, WebPushSubscription } from './port.js';

// Web Push (RFC 8030) with VAPID (RFC 8292) and aes128gcm encryption (RFC 8291). web-push does the
// cryptography; the request is ours, on a kept-alive agent per provider, so that it trusts the
// configured CA, honours the AbortSignal and reuses one VAPID JWT per push service for an hour
// instead of signing one per notification.

export interface WebPushOptions {
  vapid: {
    /** A mailto: or https: URL the push service can reach the sender at. */
    subject: string;
    /** The application server key pair, base64url (as web-push's generateVAPIDKeys makes them). */
    publicKey: string;
    privateKey: string;
  };
  /** Extra trusted CA certificates (PEM); for local mocks. */
  ca?: string | string[];
  /** Per send (default 10 s). */
  requestTimeoutMs?: number;
  /** Connections per push service (default 64). */
  maxSockets?: number;
  /** Sends in flight at once; beyond it a send answers `retry` at once (default 1000). */
  maxInFlight?: number;
}

/** 4096 bytes of record minus aes128gcm's header (86), padding delimiter (1) and tag (16): RFC 8291 §4. */
export const WEB_PUSH_MAX_PLAINTEXT = 3993;
const DEFAULT_TTL = 28 * 24 * 3600; // web-push's own default: four weeks
const VAPID_LIFETIME_S = 12 * 3600; // RFC 8292 allows up to 24 h
const VAPID_REUSE_MS = 3600_000;

export function createWebPushProvider(opts: WebPushOptions): PushProvider {
  const timeoutMs = opts.requestTimeoutMs ?? 10_000;
  const maxInFlight = opts.maxInFlight ?? 1000;
  const agent = new https.Agent({ keepAlive: true, maxSockets: opts.maxSockets ?? 64, ...(opts.ca !== undefined ? { ca: opts.ca } : {}) });
  const vapid = new Map<string, { header: string; until: number }>(); // by push service origin
  let inFlight = 0;

  const vapidHeader = (origin: string): string => {
    const cached = vapid.get(origin);
    if (cached && Date.now() < cached.until) return cached.header;
    const exp = Math.floor(Date.now() / 1000) + VAPID_LIFETIME_S;
    const { Authorization } = webpush.getVapidHeaders(origin, opts.vapid.subject, opts.vapid.publicKey, opts.vapid.privateKey, 'aes128gcm', exp);
    if (vapid.size >= 256) vapid.clear(); // there are only a handful of push services
    vapid.set(origin, { header: Authorization, until: Date.now() + VAPID_REUSE_MS });
    return Authorization;
  };
  // A wrong VAPID key or subject fails at start-up rather than on the first notification.
  webpush.getVapidHeaders('https://push.example', opts.vapid.subject, opts.vapid.publicKey, opts.vapid.privateKey, 'aes128gcm');

  return {
    platform: 'webpush',
    async send(target, message, signal) {
      if (target.platform !== 'webpush') return { outcome: 'rejected', reason: `not a Web Push target: ${target.platform}` };
      const sub = target.subscription;
      let endpoint: URL;
      try {
        endpoint = new URL(sub.endpoint);
        if (endpoint.protocol !== 'https:') throw new Error('not https');
      } catch {
        return { outcome: 'invalid_token', reason: 'the subscription endpoint is not an https URL' };
      }
      const payload = JSON.stringify({ title: message.title, body: message.body, data: message.data });
      if (Buffer.byteLength(payload) > WEB_PUSH_MAX_PLAINTEXT) return { outcome: 'rejected', reason: `payload over ${WEB_PUSH_MAX_PLAINTEXT} bytes` };
      let body: Buffer;
      try {
        body = webpush.encrypt(sub.keys.p256dh, sub.keys.auth, payload, 'aes128gcm').cipherText;
      } catch (e) {
        return { outcome: 'invalid_token', reason: `unusable subscription keys: ${errorText(e)}` };
      }
      if (inFlight >= maxInFlight) return { outcome: 'retry', reason: `${maxInFlight} Web Push sends already in flight` };
      inFlight++;
      try {
        const res = await post(endpoint, { ...headersFor(message), Authorization: vapidHeader(endpoint.origin), 'Content-Length': String(body.length) }, body, { agent, timeoutMs, ...(signal ? { signal } : {}) });
        return mapResponse(res.status, res.headers, res.body, sub);
      } catch (e) {
        return { outcome: 'retry', reason: errorText(e) };
      } finally {
        inFlight--;
      }
    },
    async close() {
      agent.destroy();
    },
  };
}

function headersFor(m: PushMessage): Record<string, string> {
  const ttl = m.expiresAt ? Math.max(0, Math.ceil((m.expiresAt.getTime() - Date.now()) / 1000)) : DEFAULT_TTL;
  const h: Record<string, string> = {
    TTL: String(ttl),
    Urgency: m.priority === 'high' ? 'high' : 'normal',
    'Content-Encoding': 'aes128gcm',
    'Content-Type': 'application/octet-stream',
  };
  if (m.collapseId !== undefined) h.Topic = topicOf(m.collapseId);
  return h;
}

/** RFC 8030 topics are at most 32 characters of the URL-safe base64 alphabet; other ids are hashed to fit. */
export function topicOf(collapseId: string): string {
  if (/^[A-Za-z0-9_-]{1,32}$/.test(collapseId)) return collapseId;
  return createHash('sha256').update(collapseId).digest().subarray(0, 24).toString('base64url');
}

function mapResponse(status: number, headers: Record<string, string | string[] | undefined>, body: string, sub: WebPushSubscription): SendResult {
  if (status === 201 || status === 202 || status === 200) {
    const location = headers.location;
    return typeof location === 'string' ? { outcome: 'sent', id: location } : { outcome: 'sent' };
  }
  const reason = `HTTP ${status}${body ? `: ${body.slice(0, 200)}` : ''}`;
  if (status === 404 || status === 410) return { outcome: 'invalid_token', reason: `subscription gone (${new URL(sub.endpoint).origin}): ${reason}` };
  if (status === 429 || status >= 500) {
    const ms = retryAfterMs(headers['retry-after']);
    return ms === undefined ? { outcome: 'retry', reason } : { outcome: 'retry', reason, retryAfterMs: ms };
  }
  return { outcome: 'rejected', reason };
}

interface PostOptions {
  agent: https.Agent;
  timeoutMs: number;
  signal?: AbortSignal;
}

function post(url: URL, headers: Record<string, string>, body: Buffer, o: PostOptions): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    if (o.signal?.aborted) return reject(new Error('send aborted'));
    const req = https.request(url, { method: 'POST', agent: o.agent, headers });
    const fail = (e: Error) => {
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      reject(e); // a no-op once resolved
    };
    const onAbort = () => req.destroy(new Error('send aborted'));
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${o.timeoutMs} ms`)), o.timeoutMs);
    o.signal?.addEventListener('abort', onAbort, { once: true });
    req.on('error', fail);
    req.on('close', () => fail(new Error('connection closed before the answer')));
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        if (text.length < 4096) text += c; // push services answer with short bodies; keep no more
      });
      res.on('error', fail);
      res.on('end', () => {
        clearTimeout(timer);
        o.signal?.removeEventListener('abort', onAbort);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text });
      });
    });
    req.end(body);
  });
}
