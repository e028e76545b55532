import { generateKeyPairSync, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Socket } from 'node:net';
import { jwtVerify } from 'jose';
import { testCert } from './certs.js';

// A local FCM HTTP v1 with its own OAuth2 token endpoint, over TLS (HTTP/2, and HTTP/1.1 for the
// token endpoint as Google's also accepts): the jwt-bearer assertion is verified with the service
// account's public key and must name this endpoint as its audience; access tokens are opaque, expire
// and can be revoked; messages:send checks them, validates the message and records it per
// registration token. Errors come in FCM v1's shape (google.rpc.Status with an FcmError detail).

export interface ServiceAccountKey {
  type: 'service_account';
  project_id: string;
  private_key_id: string;
  private_key: string;
  client_email: string;
  token_uri: string;
}

/** A service-account key file like the one the Firebase console downloads, with a fresh RSA key. */
export function createServiceAccount(o: { projectId: string; tokenUri: string }): { account: ServiceAccountKey; publicKey: KeyObject } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    account: {
      type: 'service_account',
      project_id: o.projectId,
      private_key_id: randomBytes(20).toString('hex'),
      private_key: privateKey.export({ format: 'pem', type: 'pkcs8' }) as string,
      client_email: `firebase-adminsdk@${o.projectId}.iam.gserviceaccount.com`,
      token_uri: o.tokenUri,
    },
    publicKey,
  };
}

export interface MockFcmOptions {
  projectId?: string;
  /** Where the token endpoint lives on this server (default /token). */
  tokenPath?: string;
  /** expires_in of issued access tokens, seconds (default 3600). */
  tokenLifetimeSeconds?: number;
}

export interface FcmDelivery {
  count: number;
  last: Record<string, unknown>;
}

const SEND_PATH = /^\/v1\/projects\/([^/]+)\/messages:send$/;
const FCM_ERROR = 'type.googleapis.com/google.firebase.fcm.v1.FcmError';

export class MockFcm {
  readonly ca = testCert().cert;
  readonly projectId: string;
  url = '';
  tokenUrl = '';
  serviceAccount!: ServiceAccountKey;
  /** Successful token grants. */
  tokenFetches = 0;
  /** messages:send requests that reached the server, whatever the answer. */
  requests = 0;
  delivered = 0;
  readonly deliveries = new Map<string, FcmDelivery>();
  /** Registration tokens answered 404 UNREGISTERED. */
  readonly unregistered = new Set<string>();
  /** Registration tokens answered 400 INVALID_ARGUMENT (not a valid FCM registration token). */
  readonly invalidTokens = new Set<string>();
  /** Registration tokens answered 403 SENDER_ID_MISMATCH. */
  readonly otherSender = new Set<string>();
  /** When set, authenticated sends get this error (429 QUOTA_EXCEEDED, 503 UNAVAILABLE…). */
  failWith: { status: number; code: string; retryAfter?: string } | undefined;
  /** When true, sends are never answered. */
  hang = false;
  connections = 0;

  private publicKey!: KeyObject;
  private readonly accessTokens = new Map<string, number>(); // token → expiry (ms)
  private readonly server: http2.Http2SecureServer;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly opts: MockFcmOptions = {}) {
    this.projectId = opts.projectId ?? 'levee-test';
    const { key, cert } = testCert();
    this.server = http2.createSecureServer({ key, cert, allowHTTP1: true }, (req, res) => this.onRequest(req, res));
    this.server.on('secureConnection', (s: Socket) => {
      this.connections++;
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.server.on('session', (s) => s.on('error', () => {}));
  }

  async listen(account?: { account: ServiceAccountKey; publicKey: KeyObject }): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `https://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    this.tokenUrl = `${this.url}${this.opts.tokenPath ?? '/token'}`;
    const sa = account ?? createServiceAccount({ projectId: this.projectId, tokenUri: this.tokenUrl });
    this.serviceAccount = sa.account;
    this.publicKey = sa.publicKey;
    return this;
  }

  /** Every access token issued so far stops working: the next send gets 401. */
  revokeAccessTokens(): void {
    this.accessTokens.clear();
  }

  async close(): Promise<void> {
    const done = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    await done;
  }

  private onRequest(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) {
    req.on('error', () => {});
    res.on('error', () => {});
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const url = req.url.split('?')[0];
      const work = url === new URL(this.tokenUrl).pathname ? this.token(req, body) : this.send(req, body);
      work.then(
        (r) => {
          if (!r || res.destroyed || res.headersSent) return;
          res.writeHead(r.status, { 'content-type': 'application/json; charset=UTF-8', ...r.headers });
          res.end(JSON.stringify(r.body));
        },
        () => {
          if (!res.headersSent && !res.destroyed) res.writeHead(500).end();
        },
      );
    });
  }

  private async token(req: http2.Http2ServerRequest, body: string): Promise<Reply> {
    if (req.method !== 'POST' || !String(req.headers['content-type']).startsWith('application/x-www-form-urlencoded')) {
      return { status: 400, body: { error: 'invalid_request', error_description: 'POST a form' } };
    }
    const form = new URLSearchParams(body);
    if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
      return { status: 400, body: { error: 'unsupported_grant_type', error_description: 'Invalid grant_type' } };
    }
    try {
      const { payload } = await jwtVerify(form.get('assertion') ?? '', this.publicKey, {
        algorithms: ['RS256'],
        issuer: this.serviceAccount.client_email,
        audience: this.tokenUrl,
        requiredClaims: ['iat', 'exp'],
      });
      if (payload.exp! - payload.iat! > 3600) throw new Error('lifetime over an hour');
      if (!String(payload.scope).split(' ').includes('https://www.googleapis.com/auth/firebase.messaging')) throw new Error('scope');
    } catch (e) {
      return { status: 400, body: { error: 'invalid_grant', error_description: `Invalid JWT: ${(e as Error).message}` } };
    }
    const lifetime = this.opts.tokenLifetimeSeconds ?? 3600;
    const accessToken = `ya29.mock-${randomBytes(24).toString('base64url')}`;
    this.accessTokens.set(accessToken, Date.now() + lifetime * 1000);
    this.tokenFetches++;
    return { status: 200, body: { access_token: accessToken, expires_in: lifetime, token_type: 'Bearer' } };
  }

  private async send(req: http2.Http2ServerRequest, body: string): Promise<Reply | undefined> {
    const project = SEND_PATH.exec(req.url)?.[1];
    if (!project || req.method !== 'POST') return rpcError(404, 'NOT_FOUND', 'Not found');
    this.requests++;
    const auth = req.headers.authorization;
    const expiry = typeof auth === 'string' && auth.startsWith('Bearer ') ? this.accessTokens.get(auth.slice(7)) : undefined;
    if (expiry === undefined || expiry < Date.now()) return rpcError(401, 'UNAUTHENTICATED', 'Request had invalid authentication credentials.');
    if (project !== this.projectId) return rpcError(403, 'PERMISSION_DENIED', 'Permission denied on the project');
    if (this.hang) return undefined;
    if (this.failWith) {
      const f = this.failWith;
      return { ...rpcError(f.status, f.status === 429 ? 'RESOURCE_EXHAUSTED' : 'UNAVAILABLE', 'Try again later', f.code), headers: f.retryAfter ? { 'retry-after': f.retryAfter } : {} };
    }
    let message: Record<string, unknown>;
    try {
      message = (JSON.parse(body) as { message: Record<string, unknown> }).message;
      if (typeof message !== 'object' || message === null) throw new Error();
    } catch {
      return rpcError(400, 'INVALID_ARGUMENT', 'Invalid JSON payload received.', 'INVALID_ARGUMENT');
    }
    const invalid = validateMessage(message);
    if (invalid) return rpcError(400, 'INVALID_ARGUMENT', invalid.message, 'INVALID_ARGUMENT', invalid.field);
    const token = message.token as string;
    if (this.invalidTokens.has(token)) {
      return rpcError(400, 'INVALID_ARGUMENT', 'The registration token is not a valid FCM registration token', 'INVALID_ARGUMENT', 'message.token');
    }
    if (this.unregistered.has(token)) return rpcError(404, 'NOT_FOUND', 'Requested entity was not found.', 'UNREGISTERED');
    if (this.otherSender.has(token)) return rpcError(403, 'PERMISSION_DENIED', 'SenderId mismatch', 'SENDER_ID_MISMATCH');
    const d = this.deliveries.get(token);
    if (d) {
      d.count++;
      d.last = message;
    } else {
      this.deliveries.set(token, { count: 1, last: message });
    }
    this.delivered++;
    return { status: 200, body: { name: `projects/${project}/messages/${randomUUID()}` } };
  }
}

interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

function rpcError(status: number, rpcStatus: string, message: string, fcmCode?: string, field?: string): Reply {
  const details: unknown[] = [];
  if (fcmCode) details.push({ '@type': FCM_ERROR, errorCode: fcmCode });
  if (field) details.push({ '@type': 'type.googleapis.com/google.rpc.BadRequest', fieldViolations: [{ field, description: message }] });
  return { status, body: { error: { code: status, message, status: rpcStatus, ...(details.length ? { details } : {}) } } };
}

/** The checks FCM makes that a provider could get wrong. */
function validateMessage(m: Record<string, unknown>): { field: string; message: string } | undefined {
  if (typeof m.token !== 'string' || m.token === '') return { field: 'message.token', message: 'token is required' };
  const n = m.notification as Record<string, unknown> | undefined;
  if (n !== undefined) {
    for (const k of Object.keys(n)) if (!['title', 'body', 'image'].includes(k) || typeof n[k] !== 'string') return { field: `message.notification.${k}`, message: 'Invalid value' };
  }
  const data = m.data as Record<string, unknown> | undefined;
  if (data !== undefined) {
    for (const [k, v] of Object.entries(data)) {
      if (typeof v !== 'string') return { field: `message.data[${k}]`, message: 'Invalid value: data values must be strings' };
      if (['from', 'message_type', 'collapse_key'].includes(k) || k.startsWith('google.') || k.startsWith('gcm.')) return { field: `message.data[${k}]`, message: `Invalid data key: ${k} is reserved` };
    }
  }
  if (Buffer.byteLength(JSON.stringify({ notification: n, data })) > 4096) return { field: 'message', message: 'Message is too big' };
  const android = m.android as Record<string, unknown> | undefined;
  if (android !== undefined) {
    if (android.priority !== undefined && android.priority !== 'HIGH' && android.priority !== 'NORMAL') return { field: 'message.android.priority', message: 'Invalid value' };
    if (android.ttl !== undefined && !/^\d+(\.\d{1,9})?s$/.test(String(android.ttl))) return { field: 'message.android.ttl', message: 'Invalid duration' };
    if (android.collapse_key !== undefined && typeof android.collapse_key !== 'string') return { field: 'message.android.collapse_key', message: 'Invalid value' };
  }
  return undefined;
}

export function startMockFcm(opts: MockFcmOptions = {}, account?: { account: ServiceAccountKey; publicKey: KeyObject }): Promise<MockFcm> {
  return new MockFcm(opts).listen(account);
}
