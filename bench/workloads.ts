import type { Client, Options } from 'autocannon';
import { requestJson } from './support.js';

// The five core workloads. Each builds autocannon options for one run; state that must survive
// from the warm-up into the measured run (the refresh-token pool) lives in the BenchContext.

export interface BenchContext {
  /** Base URL of the server under test. */
  url: string;
  /** Access tokens of distinct signed-in users; connection i uses tokens[i % n]. */
  accessTokens: string[];
  /** Unused refresh tokens, one per live session (W4 takes one per request and puts the successor back). */
  refreshPool: string[];
  /** Refresh requests sent while the pool was empty (would be a bench bug). */
  refreshUnderflow: number;
  hotPostId: string;
  connections: number;
}

export type WorkloadId = 'W1' | 'W2' | 'W3' | 'W4' | 'W5';

export interface Workload {
  id: WorkloadId;
  name: string;
  /** What one request does, for the report. */
  describe: string;
  /** Tables it writes to: vacuumed after the run on PostgreSQL so that autovacuum does not land in the next workload's window. */
  writes?: string[];
  options(ctx: BenchContext): Options;
  /** One request by hand before the load, to prove the workload is what we think it is. */
  check(ctx: BenchContext): Promise<void>;
}

export const FEED_PATH = '/v1/collections/posts/documents?sort=-createdAt&limit=20';

/** A ~400-byte post, the shape a mobile client would send. */
export const POST_BODY = (() => {
  const base = {
    title: 'Sunset over the harbour',
    body: '',
    tags: ['travel', 'photo', 'evening'],
    lang: 'en',
    location: { lat: 43.2965, lon: 5.3698, name: 'Marseille' },
    clientCreatedAt: '2026-11-23T18:04:05.123Z',
    visibility: 'public',
  };
  const filler = 'Walked down to the old port after work; the light on the water was unreal and the boats kept coming in. ';
  while (JSON.stringify(base).length < 400) base.body += filler[base.body.length % filler.length];
  return JSON.stringify(base);
})();

/** Gives connection i the bearer token of user i (mod the number of users signed in). */
function perConnectionToken(ctx: BenchContext, extra: Record<string, string> = {}) {
  let next = 0;
  return (client: Client) => {
    const token = ctx.accessTokens[next++ % ctx.accessTokens.length]!;
    client.setHeaders({ ...extra, authorization: `Bearer ${token}` });
  };
}

const expect = (what: string, ok: boolean, res: { status: number; body: unknown }) => {
  if (!ok) throw new Error(`${what}: unexpected answer ${res.status} ${JSON.stringify(res.body).slice(0, 500)}`);
};

export const WORKLOADS: Workload[] = [
  {
    id: 'W1',
    name: 'feed (newest 20 posts)',
    describe: `GET ${FEED_PATH} with a bearer token`,
    options: (ctx) => ({ url: ctx.url + FEED_PATH, setupClient: perConnectionToken(ctx) }),
    async check(ctx) {
      const r = await requestJson<{ items: unknown[] }>('GET', ctx.url + FEED_PATH, { token: ctx.accessTokens[0] });
      expect('W1 feed', r.status === 200 && r.body.items.length === 20, r);
    },
  },
  {
    id: 'W2',
    name: 'create a post',
    writes: ['documents'],
    describe: `POST /v1/collections/posts/documents, ${POST_BODY.length}-byte JSON body, bearer token (no Idempotency-Key)`,
    options: (ctx) => ({
      url: `${ctx.url}/v1/collections/posts/documents`,
      method: 'POST',
      body: POST_BODY,
      setupClient: perConnectionToken(ctx, { 'content-type': 'application/json' }),
    }),
    async check(ctx) {
      const r = await requestJson<{ id?: string }>('POST', `${ctx.url}/v1/collections/posts/documents`, { token: ctx.accessTokens[0], body: JSON.parse(POST_BODY) });
      expect('W2 create', r.status === 201 && typeof r.body.id === 'string', r);
    },
  },
  {
    id: 'W3',
    name: 'who am I',
    describe: 'GET /v1/auth/me with a bearer token',
    options: (ctx) => ({ url: `${ctx.url}/v1/auth/me`, setupClient: perConnectionToken(ctx) }),
    async check(ctx) {
      const r = await requestJson<{ id?: string }>('GET', `${ctx.url}/v1/auth/me`, { token: ctx.accessTokens[0] });
      expect('W3 me', r.status === 200 && typeof r.body.id === 'string', r);
    },
  },
  {
    id: 'W4',
    name: 'refresh-token rotation',
    writes: ['refresh_tokens', 'sessions'],
    describe: 'POST /v1/auth/refresh; every request presents a never-used refresh token taken from a pool of live sessions, and the token it gets back goes into the pool',
    options(ctx) {
      return {
        url: ctx.url,
        requests: [
          {
            method: 'POST',
            path: '/v1/auth/refresh',
            headers: { 'content-type': 'application/json' },
            setupRequest(req) {
              const token = ctx.refreshPool.shift();
              if (token === undefined) ctx.refreshUnderflow++;
              // An empty pool would be a bench bug: send a token that cannot exist so it shows as an error.
              return { ...req, body: JSON.stringify({ refreshToken: token ?? 'rt_pool_empty' }) };
            },
            onResponse(status, body) {
              if (status !== 200) return;
              const m = /"refreshToken":"([^"]+)"/.exec(body);
              if (m) ctx.refreshPool.push(m[1]!);
            },
          },
        ],
      };
    },
    async check(ctx) {
      const token = ctx.refreshPool.shift()!;
      const r = await requestJson<{ refreshToken?: string }>('POST', `${ctx.url}/v1/auth/refresh`, { body: { refreshToken: token } });
      expect('W4 refresh', r.status === 200 && typeof r.body.refreshToken === 'string', r);
      ctx.refreshPool.push(r.body.refreshToken!);
    },
  },
  {
    id: 'W5',
    name: 'one hot document',
    describe: 'GET /v1/collections/posts/documents/{id}, the same post on every connection, bearer token',
    options: (ctx) => ({ url: `${ctx.url}/v1/collections/posts/documents/${ctx.hotPostId}`, setupClient: perConnectionToken(ctx) }),
    async check(ctx) {
      const r = await requestJson<{ id?: string }>('GET', `${ctx.url}/v1/collections/posts/documents/${ctx.hotPostId}`, { token: ctx.accessTokens[0] });
      expect('W5 hot document', r.status === 200 && r.body.id === ctx.hotPostId, r);
    },
  },
];
