import websocket from '@fastify/websocket';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { decodeJwt } from 'jose';
import { Type } from 'typebox';
import type { AccessTokens } from '../../auth/access-tokens.js';
import { LeveeError } from '../../lib/errors.js';
import type { RateLimits } from '../../protection/rate-limits.js';
import type { ConnectionSlot } from '../../realtime/admission.js';
import type { Realtime, RealtimeAuth, RealtimeMetrics } from '../../realtime/index.js';
import { limitByIp } from '../rate-limit.js';
import { problems } from '../schemas.js';

// Realtime over HTTP: the WebSocket endpoint and its Server-Sent Events fallback (docs/realtime.md).
// Registered outside the `/v1` scope so its hooks run in the order a connection storm needs:
// connection admission first (a refusal costs almost nothing), then the per-IP rate limit, then
// the token — from the Authorization header or, since browsers cannot set headers on a WebSocket
// or EventSource, the `access_token` query parameter. Both routes are `longLived`: they hold no
// admission slot (they have their own bound), and their work after set-up runs on budgets of its own.

const tags = ['realtime'];
const EventsQuery = Type.Object({
  collections: Type.Optional(Type.String({ maxLength: 4096, description: 'Comma-separated collection names' })),
  user: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')], { description: "The user's own channel: changes to documents they own, any collection" })),
  cursor: Type.Optional(Type.String({ maxLength: 200, description: 'Resume after this position (the `Last-Event-ID` header takes precedence)' })),
  access_token: Type.Optional(Type.String({ maxLength: 4096, description: 'The access token, for clients that cannot send an Authorization header' })),
});

export interface RealtimeRouteDeps {
  realtime: Realtime;
  tokens: AccessTokens;
  rateLimits?: RateLimits | undefined;
  metrics?: RealtimeMetrics | undefined;
  maxFrameBytes: number;
}

export const realtimeRoutes = (deps: RealtimeRouteDeps): FastifyPluginAsyncTypebox => async (app) => {
  const { realtime } = deps;
  const connecting = new WeakMap<FastifyRequest, { slot: ConnectionSlot; auth: RealtimeAuth }>();

  await app.register(websocket, {
    options: { maxPayload: deps.maxFrameBytes, perMessageDeflate: false },
    // Shutdown: every connection is told to reconnect elsewhere (1001) before the server closes.
    preClose: (done) => {
      realtime.closeConnections();
      app.websocketServer.close(() => done());
    },
  });

  app.addHook('onRequest', async (req, reply) => {
    const admitted = realtime.admission.admit();
    if ('refused' in admitted) {
      deps.metrics?.refused(admitted.refused);
      throw new LeveeError('overloaded', admitted.refused === 'rate' ? 'Too many clients are connecting at once: retry after the delay in Retry-After' : 'This server holds all the realtime connections it may: retry after the delay in Retry-After', { retryAfter: admitted.retryAfterSeconds });
    }
    // Held until the connection ends, whichever way it ends (refused below, closed, upgraded).
    reply.raw.once('close', () => admitted.slot.release());
    connecting.set(req, { slot: admitted.slot, auth: { principal: undefined } });
  });
  if (deps.rateLimits) app.addHook('onRequest', limitByIp(deps.rateLimits));
  app.addHook('onRequest', async (req) => {
    const header = req.headers.authorization;
    const query = (req.query as { access_token?: unknown }).access_token;
    let token: string | undefined;
    if (header !== undefined) {
      const m = /^Bearer ([A-Za-z0-9_.-]+)$/i.exec(header);
      if (!m) throw new LeveeError('invalid_token', 'Authorization must be "Bearer <access token>"');
      token = m[1]!;
    } else if (typeof query === 'string' && query !== '') {
      token = query;
    }
    if (token === undefined) return;
    req.principal = await deps.tokens.verify(token);
    const exp = decodeJwt(token).exp;
    connecting.get(req)!.auth = { principal: req.principal, expiresAt: exp === undefined ? undefined : exp * 1000 };
  });

  app.route({
    method: 'GET',
    url: '/',
    config: { longLived: true },
    schema: { tags, summary: 'Realtime over WebSocket (upgrade): subscribe to collections and your own channel, resume from a position', ...{ response: problems(400, 401, 503) } },
    handler: async () => {
      throw new LeveeError('bad_request', 'Connect with a WebSocket (Upgrade: websocket), or use /v1/realtime/events for Server-Sent Events');
    },
    wsHandler: (socket, req) => {
      const c = connecting.get(req)!;
      realtime.acceptWebSocket(socket, c.auth, c.slot);
    },
  });

  app.get('/events', {
    config: { longLived: true },
    schema: { tags, summary: 'Realtime over Server-Sent Events (text/event-stream): the same events; `id` is the position', querystring: EventsQuery, response: problems(400, 401, 403, 404, 503) },
  }, async (req, reply) => {
    const q = req.query;
    const lastEventId = req.headers['last-event-id'];
    const subscription = {
      collections: q.collections ? q.collections.split(',').map((s) => s.trim()).filter(Boolean) : [],
      user: q.user === 'true',
      cursor: typeof lastEventId === 'string' && lastEventId !== '' ? lastEventId : q.cursor,
    };
    // Refusals (unknown collection, read rules, bad cursor) are answered as problems before the stream starts.
    realtime.check(req.principal, subscription);
    const c = connecting.get(req)!;
    reply.hijack();
    realtime.acceptSse(reply.raw, c.auth, subscription, c.slot);
  });
};
