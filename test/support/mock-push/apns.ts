import { createPublicKey, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { jwtVerify } from 'jose';
import { testCert } from './certs.js';

// A local APNs provider API: HTTP/2 over TLS, token auth checked for real (ES256 against the team's
// public key, `kid`, `iss`, an `iat` younger than an hour), the request headers and payload validated
// as APNs does, and every accepted notification recorded per device token so a test can tell a lost
// notification from a duplicated one. Verified JWTs are cached (a provider reuses one for ~an hour)
// so that a request costs a map lookup and a JSON.parse: the benchmark drives tens of thousands a second.

export interface MockApnsOptions {
  teamId: string;
  keyId: string;
  /** The team key's public half (PEM SPKI or a KeyObject). */
  publicKey: string | KeyObject;
  bundleId: string;
  maxConcurrentStreams?: number;
}

export interface ApnsDelivery {
  count: number;
  last: { headers: http2.IncomingHttpHeaders; payload: Record<string, unknown> };
}

type Verdict = 'ok' | 'InvalidProviderToken' | { iat: number };

const DEVICE_PATH = /^\/3\/device\/([0-9a-fA-F]+)$/;
const PUSH_TYPES = new Set(['alert', 'background', 'voip', 'complication', 'fileprovider', 'mdm', 'location', 'liveactivity', 'pushtotalk']);

export class MockApns {
  readonly ca = testCert().cert;
  url = '';
  /** Accepted notifications per device token. */
  readonly deliveries = new Map<string, ApnsDelivery>();
  delivered = 0;
  /** Every request that reached the server, whatever the answer. */
  requests = 0;
  /** TLS connections accepted so far. */
  connections = 0;
  activeStreams = 0;
  peakStreams = 0;
  /** Distinct provider tokens (JWTs) that passed verification. */
  readonly jwtsSeen = new Set<string>();
  /** Device token → the time (ms) it became invalid: answered 410 Unregistered. */
  readonly unregistered = new Map<string, number>();
  /** Answered 400 BadDeviceToken. */
  readonly badTokens = new Set<string>();
  /** When set, every authenticated request gets this answer (429 TooManyRequests, 503 ServiceUnavailable…). */
  failWith: { status: number; reason: string; retryAfter?: string } | undefined;
  /** When true, requests are read and never answered (until the client gives up or the mock closes). */
  hang = false;

  private readonly server: http2.Http2SecureServer;
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly verified = new Map<string, Promise<Verdict>>();
  private readonly expiredJwts = new Set<string>();
  private expireNext = 0;
  private readonly publicKey: KeyObject;

  constructor(private readonly opts: MockApnsOptions) {
    this.publicKey = typeof opts.publicKey === 'string' ? createPublicKey(opts.publicKey) : opts.publicKey;
    const { key, cert } = testCert();
    this.server = http2.createSecureServer({ key, cert, settings: { maxConcurrentStreams: opts.maxConcurrentStreams ?? 1000 } });
    this.server.on('session', (s) => {
      this.connections++;
      this.sessions.add(s);
      s.on('error', () => {});
      s.on('close', () => this.sessions.delete(s));
    });
    this.server.on('stream', (stream, headers) => this.onStream(stream, headers));
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `https://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** The next `n` authenticated requests are answered 403 ExpiredProviderToken, and their JWTs stay expired. */
  expireTokens(n = 1): void {
    this.expireNext = n;
  }

  /** Cuts every open connection, as a load balancer or a crashed APNs host would. */
  dropConnections(): void {
    for (const s of this.sessions) s.destroy();
  }

  /** Applies to open connections (a SETTINGS frame) and to new ones. */
  setMaxConcurrentStreams(n: number): void {
    this.server.updateSettings({ maxConcurrentStreams: n });
    for (const s of this.sessions) if (!s.destroyed) s.settings({ maxConcurrentStreams: n });
  }

  openConnections(): number {
    return this.sessions.size;
  }

  async close(): Promise<void> {
    const done = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sessions) s.destroy();
    await done;
  }

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) {
    this.requests++;
    this.activeStreams++;
    if (this.activeStreams > this.peakStreams) this.peakStreams = this.activeStreams;
    stream.on('close', () => this.activeStreams--);
    stream.on('error', () => {});
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      if (this.hang) return; // the stream stays open until the client resets it or the mock closes
      this.handle(stream, headers, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)).catch(() => answer(stream, 500, 'InternalServerError'));
    });
  }

  private async handle(stream: http2.ServerHttp2Stream, h: http2.IncomingHttpHeaders, body: Buffer) {
    if (h[':method'] !== 'POST') return answer(stream, 405, 'MethodNotAllowed');
    const device = DEVICE_PATH.exec(h[':path'] ?? '')?.[1];
    if (!device) return answer(stream, 404, 'BadPath');
    const auth = h.authorization;
    if (typeof auth !== 'string' || !auth.startsWith('bearer ')) return answer(stream, 403, 'MissingProviderToken');
    const jwt = auth.slice(7);
    const verdict = await this.verify(jwt);
    if (verdict === 'InvalidProviderToken') return answer(stream, 403, 'InvalidProviderToken');
    if (this.expireNext > 0 && !this.expiredJwts.has(jwt)) {
      this.expireNext--;
      this.expiredJwts.add(jwt);
    }
    if (this.expiredJwts.has(jwt) || (typeof verdict === 'object' && verdict.iat * 1000 < Date.now() - 3_600_000)) {
      return answer(stream, 403, 'ExpiredProviderToken');
    }
    this.jwtsSeen.add(jwt);
    if (this.failWith) return answer(stream, this.failWith.status, this.failWith.reason, this.failWith.retryAfter ? { 'retry-after': this.failWith.retryAfter } : {});

    const topic = h['apns-topic'];
    if (topic === undefined) return answer(stream, 400, 'MissingTopic');
    if (topic !== this.opts.bundleId) return answer(stream, 400, 'TopicDisallowed');
    const pushType = h['apns-push-type'];
    if (typeof pushType !== 'string' || !PUSH_TYPES.has(pushType)) return answer(stream, 400, 'InvalidPushType');
    const priority = h['apns-priority'] ?? '10';
    if (priority !== '10' && priority !== '5' && priority !== '1') return answer(stream, 400, 'BadPriority');
    if (pushType === 'background' && priority !== '5') return answer(stream, 400, 'BadPriority');
    const expiration = h['apns-expiration'];
    if (expiration !== undefined && !/^\d+$/.test(String(expiration))) return answer(stream, 400, 'BadExpirationDate');
    const collapse = h['apns-collapse-id'];
    if (collapse !== undefined && Buffer.byteLength(String(collapse)) > 64) return answer(stream, 400, 'BadCollapseId');
    if (body.length === 0) return answer(stream, 400, 'PayloadEmpty');
    if (body.length > 4096) return answer(stream, 413, 'PayloadTooLarge');
    let payload: Record<string, unknown>;
    try {
      payload = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
    } catch {
      return answer(stream, 400, 'BadPayload');
    }
    const aps = payload.aps as Record<string, unknown> | undefined;
    if (typeof aps !== 'object' || aps === null) return answer(stream, 400, 'BadPayload');
    if (pushType === 'background' && aps['content-available'] !== 1) return answer(stream, 400, 'BadPayload');

    if (this.badTokens.has(device)) return answer(stream, 400, 'BadDeviceToken');
    const goneAt = this.unregistered.get(device);
    if (goneAt !== undefined) return answer(stream, 410, 'Unregistered', {}, goneAt);

    const d = this.deliveries.get(device);
    if (d) {
      d.count++;
      d.last = { headers: h, payload };
    } else {
      this.deliveries.set(device, { count: 1, last: { headers: h, payload } });
    }
    this.delivered++;
    if (!stream.destroyed) {
      stream.respond({ ':status': 200, 'apns-id': randomUUID() });
      stream.end();
    }
  }

  private verify(jwt: string): Promise<Verdict> {
    let v = this.verified.get(jwt);
    if (!v) {
      if (this.verified.size > 10_000) this.verified.clear();
      v = jwtVerify(jwt, this.publicKey, { algorithms: ['ES256'], issuer: this.opts.teamId, requiredClaims: ['iat'] }).then(
        ({ payload, protectedHeader }): Verdict => (protectedHeader.kid === this.opts.keyId ? { iat: payload.iat! } : 'InvalidProviderToken'),
        (): Verdict => 'InvalidProviderToken',
      );
      this.verified.set(jwt, v);
    }
    return v;
  }
}

function answer(stream: http2.ServerHttp2Stream, status: number, reason: string, extra: http2.OutgoingHttpHeaders = {}, timestamp?: number) {
  if (stream.destroyed || stream.headersSent) return;
  stream.respond({ ':status': status, 'apns-id': randomUUID(), 'content-type': 'application/json', ...extra });
  stream.end(JSON.stringify(timestamp === undefined ? { reason } : { reason, timestamp }));
}

export function startMockApns(opts: MockApnsOptions): Promise<MockApns> {
  return new MockApns(opts).listen();
}

/**
 * A mock APNs with a fresh team key, and the settings that point a Levee process at it: the .p8 key
 * and the mock's CA are written to `dir`.
 */
export async function mockApnsForLevee(dir: string, bundleId: string): Promise<{ apns: MockApns; env: Record<string, string> }> {
  const team = { teamId: 'TEAM123456', keyId: 'KEY1234567', bundleId };
  const teamKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const apns = await startMockApns({ ...team, publicKey: teamKey.publicKey });
  const files = { key: join(dir, 'apns.p8'), ca: join(dir, 'ca.pem') };
  writeFileSync(files.key, teamKey.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string);
  writeFileSync(files.ca, apns.ca);
  return {
    apns,
    env: {
      LEVEE_APNS_KEY_FILE: files.key,
      LEVEE_APNS_KEY_ID: team.keyId,
      LEVEE_APNS_TEAM_ID: team.teamId,
      LEVEE_APNS_BUNDLE_ID: bundleId,
      LEVEE_APNS_URL: apns.url,
      LEVEE_PUSH_CA_FILE: files.ca,
    },
  };
}
