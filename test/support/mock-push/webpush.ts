import { createDecipheriv, createECDH, createPublicKey, hkdfSync, randomBytes, randomUUID, type ECDH, type KeyObject } from 'node:crypto';
import https from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { jwtVerify } from 'jose';
import { testCert } from './certs.js';

// A local Web Push service (RFC 8030) over HTTPS/1.1: it checks the VAPID authorisation (RFC 8292:
// an ES256 JWT for this origin, expiring within 24 h, signed by the key in `k`), the aes128gcm
// content coding and the TTL header, and records each message per subscription. Subscriptions made
// with `subscribe()` keep their private keys here, so a test can decrypt what arrived (RFC 8291),
// which proves the payload really was encrypted for that browser.

export interface MockWebPushOptions {
  /** When given, only this application server key (base64url) is accepted. */
  vapidPublicKey?: string;
}

export interface WebPushDelivery {
  count: number;
  last: { headers: IncomingHttpHeaders; body: Buffer };
}

interface BrowserKeys {
  ecdh: ECDH;
  auth: Buffer;
}

export class MockWebPush {
  readonly ca = testCert().cert;
  url = '';
  requests = 0;
  delivered = 0;
  readonly deliveries = new Map<string, WebPushDelivery>();
  /** Subscription ids answered 404 / 410. */
  readonly notFound = new Set<string>();
  readonly gone = new Set<string>();
  failWith: { status: number; retryAfter?: string } | undefined;
  hang = false;

  private readonly server: https.Server;
  private readonly sockets = new Set<Socket>();
  private readonly browsers = new Map<string, BrowserKeys>();
  private readonly verified = new Map<string, Promise<boolean>>();

  constructor(private readonly opts: MockWebPushOptions = {}) {
    const { key, cert } = testCert();
    this.server = https.createServer({ key, cert }, (req, res) => {
      req.on('error', () => {});
      res.on('error', () => {});
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.handle(req.method ?? '', req.url ?? '', req.headers, Buffer.concat(chunks)).then(
          (r) => {
            if (r && !res.destroyed) res.writeHead(r.status, r.headers ?? {}).end(r.body ?? '');
          },
          () => res.writeHead(500).end(),
        );
      });
    });
    this.server.on('secureConnection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `https://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** A browser's subscription to this service: fresh P-256 keys and auth secret, kept for decrypt(). */
  subscribe(id: string = randomUUID()): { id: string; subscription: { endpoint: string; keys: { p256dh: string; auth: string } } } {
    const ecdh = createECDH('prime256v1');
    ecdh.generateKeys();
    const auth = randomBytes(16);
    this.browsers.set(id, { ecdh, auth });
    return { id, subscription: { endpoint: `${this.url}/push/${id}`, keys: { p256dh: ecdh.getPublicKey().toString('base64url'), auth: auth.toString('base64url') } } };
  }

  /** The plaintext of the last message for a subscription made with subscribe(). */
  decrypt(id: string): string {
    const keys = this.browsers.get(id);
    const d = this.deliveries.get(id);
    if (!keys || !d) throw new Error(`nothing to decrypt for ${id}`);
    return decryptAes128gcm(d.last.body, keys).toString('utf8');
  }

  async close(): Promise<void> {
    const done = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    await done;
  }

  private async handle(method: string, url: string, h: IncomingHttpHeaders, body: Buffer): Promise<{ status: number; headers?: Record<string, string>; body?: string } | undefined> {
    const id = /^\/push\/([A-Za-z0-9_-]+)$/.exec(url)?.[1];
    if (method !== 'POST' || !id) return { status: 404 };
    this.requests++;
    const auth = /^vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)$/.exec(h.authorization ?? '');
    if (!auth) return { status: 401, body: 'missing VAPID authorization' };
    if (this.opts.vapidPublicKey && auth[2] !== this.opts.vapidPublicKey) return { status: 403, body: 'unknown application server key' };
    if (!(await this.verify(auth[1]!, auth[2]!))) return { status: 403, body: 'invalid VAPID JWT' };
    if (this.hang) return undefined;
    if (this.notFound.has(id)) return { status: 404, body: 'no such subscription' };
    if (this.gone.has(id)) return { status: 410, body: 'subscription expired' };
    if (this.failWith) return { status: this.failWith.status, headers: this.failWith.retryAfter ? { 'retry-after': this.failWith.retryAfter } : {} };
    if (!/^\d+$/.test(String(h.ttl ?? ''))) return { status: 400, body: 'TTL header required' };
    if (h.urgency !== undefined && !['very-low', 'low', 'normal', 'high'].includes(h.urgency as string)) return { status: 400, body: 'bad Urgency' };
    if (h.topic !== undefined && !/^[A-Za-z0-9_-]{1,32}$/.test(h.topic as string)) return { status: 400, body: 'bad Topic' };
    if (body.length > 4096) return { status: 413, body: 'payload too large' };
    if (body.length > 0) {
      if (h['content-encoding'] !== 'aes128gcm') return { status: 415, body: 'aes128gcm only' };
      // salt(16) rs(4) idlen(1) keyid(65: the sender's ephemeral P-256 key) and at least a tag
      if (body.length < 21 + 65 + 17 || body[20] !== 65 || body[21] !== 0x04) return { status: 400, body: 'bad aes128gcm header' };
    }
    const d = this.deliveries.get(id);
    if (d) {
      d.count++;
      d.last = { headers: h, body };
    } else {
      this.deliveries.set(id, { count: 1, last: { headers: h, body } });
    }
    this.delivered++;
    return { status: 201, headers: { location: `${this.url}/message/${randomUUID()}` } };
  }

  private verify(jwt: string, k: string): Promise<boolean> {
    const cacheKey = `${k} ${jwt}`;
    let v = this.verified.get(cacheKey);
    if (!v) {
      if (this.verified.size > 10_000) this.verified.clear();
      v = (async () => {
        const raw = Buffer.from(k, 'base64url');
        if (raw.length !== 65 || raw[0] !== 0x04) return false;
        const key: KeyObject = createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: raw.subarray(1, 33).toString('base64url'), y: raw.subarray(33).toString('base64url') }, format: 'jwk' });
        const { payload } = await jwtVerify(jwt, key, { algorithms: ['ES256'], audience: this.url, requiredClaims: ['exp', 'sub'] });
        return payload.exp! <= Date.now() / 1000 + 24 * 3600 && /^(mailto:|https:)/.test(String(payload.sub));
      })().catch(() => false);
      this.verified.set(cacheKey, v);
    }
    return v;
  }
}

/** RFC 8291 §3.4 + RFC 8188: one record, as every Web Push message is. */
export function decryptAes128gcm(body: Buffer, keys: BrowserKeys): Buffer {
  const salt = body.subarray(0, 16);
  const idlen = body[20]!;
  const senderPublic = body.subarray(21, 21 + idlen);
  const record = body.subarray(21 + idlen);
  const shared = keys.ecdh.computeSecret(senderPublic);
  const keyInfo = Buffer.concat([Buffer.from('WebPush: info\0'), keys.ecdh.getPublicKey(), senderPublic]);
  const ikm = Buffer.from(hkdfSync('sha256', shared, keys.auth, keyInfo, 32));
  const cek = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: aes128gcm\0'), 16));
  const nonce = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: nonce\0'), 12));
  const decipher = createDecipheriv('aes-128-gcm', cek, nonce);
  decipher.setAuthTag(record.subarray(record.length - 16));
  const padded = Buffer.concat([decipher.update(record.subarray(0, record.length - 16)), decipher.final()]);
  // The plaintext ends with a 0x02 delimiter (last record), then zero padding.
  let end = padded.length - 1;
  while (end >= 0 && padded[end] === 0) end--;
  if (padded[end] !== 2) throw new Error('bad aes128gcm padding delimiter');
  return padded.subarray(0, end);
}

export function startMockWebPush(opts: MockWebPushOptions = {}): Promise<MockWebPush> {
  return new MockWebPush(opts).listen();
}
