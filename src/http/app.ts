import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { AccessTokens } from '../auth/access-tokens.js';
import type { KeyRing } from '../auth/keys.js';
import type { AuthService } from '../auth/service.js';
import type { DocumentService } from '../data/service.js';
import type { Db } from '../db/port.js';
import type { Clock } from '../lib/clock.js';
import { LeveeError } from '../lib/errors.js';
import type { Metrics } from '../observability/metrics.js';
import type { RateLimits } from '../protection/rate-limits.js';
import type { Ops, OpsResponse } from '../roles/ops.js';
import { authRoutes } from './api/auth.js';
import { documentRoutes } from './api/documents.js';
import { adminQueueRoutes } from './api/admin-queues.js';
import { deviceRoutes } from './api/devices.js';
import { pushRoutes } from './api/push.js';
import { syncRoutes } from './api/sync.js';
import { realtimeRoutes } from './api/realtime.js';
import { fileRoutes } from './api/files.js';
import type { Files } from '../files/index.js';
import type { Realtime } from '../realtime/index.js';
import type { SyncService } from '../sync/service.js';
import type { DeviceService } from '../push/devices.js';
import type { PushService } from '../push/service.js';
import type { JobQueues } from '../jobs/port.js';
import { checkBody } from './body-guard.js';
import { authenticate } from './principal.js';
import { createAdmissionGate } from './admission-gate.js';
import { installProtection, type ProtectionOptions } from './protection.js';
import { requestIdOf } from './request-id.js';
import { sendProblem } from './problem.js';
import { limitByIp, limitByUserAndRoute } from './rate-limit.js';
import { Problem } from './schemas.js';

export interface AppDeps {
  db: Db;
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
  ops: Ops;
  keys: KeyRing;
  tokens: AccessTokens;
  auth: AuthService;
  docs: DocumentService;
  sync: SyncService;
  protection: ProtectionOptions;
  bodyLimitBytes: number;
  /** Per-IP, per-user and per-route rate limits; undefined when LEVEE_PROTECTION is off. */
  rateLimits?: RateLimits | undefined;
  devices: DeviceService;
  /** Sending pushes (needs the job queues). */
  push?: PushService | undefined;
  serverKey?: string | undefined;
  /** The job queues: their admin routes are served when present. */
  queues?: JobQueues | undefined;
  /** Fastify's trustProxy (LEVEE_TRUST_PROXY): where the client IP comes from behind a proxy. */
  trustProxy?: boolean | number | string[];
  /** Realtime (WebSocket and SSE at /v1/realtime), served when present (the api role). */
  realtime?: Realtime | undefined;
  /** Poked after every committed document write (wakes the realtime tailers). */
  signal?: { poke(): void } | undefined;
  /** Media (uploads, file metadata, delivery at /v1/files), served when present. */
  files?: Files | undefined;
  /** LEVEE_SHUTDOWN_GRACE_MS: how long uploads still streaming may go on once closing starts. */
  shutdownGraceMs?: number | undefined;
}

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const gate = createAdmissionGate(deps.protection);
  const app = Fastify({
    // Admission control runs in front of Fastify, on the bare request (see admission-gate.ts).
    serverFactory: (handler, options) => gate.serverFactory(handler, options),
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: deps.bodyLimitBytes,
    // A number of hops becomes the function Fastify would make of it (its typings refuse the union).
    trustProxy: typeof deps.trustProxy === 'number' ? ((hops: number) => (_addr: string, i: number) => i < hops)(deps.trustProxy) : (deps.trustProxy ?? false),
    // A client that trickles its request (headers and body) cannot hold a connection forever.
    requestTimeout: 30_000,
    // A well-formed incoming X-Request-Id is kept (so a client or proxy can correlate), else a new one.
    genReqId: requestIdOf,
    // One log line per request, written by the onResponse hook below (with route and status).
    logController: new LogController({ requestIdLogLabel: 'requestId', disableRequestLogging: true }),
    // Closing is answered by the onRequest hook below (problem+json `draining`), not Fastify's bare 503.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 },
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    // Errors raised before routing (a malformed %-escape, an over-long path parameter) are problems too.
    frameworkErrors: (err, req, reply) => {
      reply.header('x-request-id', req.id);
      sendProblem(err, req, reply);
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.decorateRequest('principal', undefined);
  app.addSchema(Problem);
  app.setErrorHandler((err, req, reply) => sendProblem(err, req, reply));
  app.setNotFoundHandler((req, reply) => sendProblem(new LeveeError('not_found', `No route for ${req.method} ${req.url.split('?')[0]}`), req, reply));
  app.addContentTypeParser('application/merge-patch+json', { parseAs: 'string' }, app.getDefaultJsonParser('error', 'error'));

  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id);
    // Draining (SIGTERM): a request that still arrives on an open keep-alive connection gets a
    // retryable 503 `draining` (problem+json, Retry-After) and its connection closes; the probes
    // still answer (readyz: 503, not ready). Requests already in flight are not affected.
    if (deps.ops.draining()) {
      reply.header('connection', 'close');
      const path = req.url.split('?')[0];
      if (path !== '/healthz' && path !== '/readyz' && path !== '/metrics') return sendProblem(new LeveeError('draining'), req, reply);
    }
  });
  // Deadlines, admission control and the event-loop guard; before any route is registered.
  await installProtection(app, gate, deps.protection);
  app.addHook('preValidation', async (req) => {
    if (req.body !== undefined) checkBody(req.body);
  });
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    deps.metrics.httpDuration.observe({ method: req.method, route, status: `${Math.floor(reply.statusCode / 100)}xx` }, reply.elapsedTime / 1000);
    req.log.info({ method: req.method, route, status: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10 }, 'request');
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Levee API', version: '0.1.0', description: 'Accounts and documents for mobile apps. Errors are RFC 9457 problem+json with a stable `code`.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' }, serverKey: { type: 'apiKey', in: 'header', name: 'X-Server-Key' } } },
    },
    refResolver: { buildLocalReference: (json, _base, _frag, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true }, config: { unprotected: true } }, async () => app.swagger());

  const opsRoute = (get: () => Promise<OpsResponse>) => async (_req: FastifyRequest, reply: FastifyReply) => {
    const r = await get();
    return reply.code(r.status).type(r.contentType).send(r.body);
  };
  // Probes answer even when the API sheds load: an overloaded instance is alive, and its
  // readiness says whether it can serve.
  const probe = { schema: { hide: true }, config: { unprotected: true } };
  app.get('/healthz', probe, opsRoute(deps.ops.healthz));
  app.get('/readyz', probe, opsRoute(deps.ops.readyz));
  app.get('/metrics', probe, opsRoute(deps.ops.metrics));
  app.get('/.well-known/jwks.json', { schema: { tags: ['auth'], summary: 'Public keys that verify Levee access tokens' } }, async (_req, reply) => {
    reply.header('cache-control', 'public, max-age=300');
    return deps.keys.jwks();
  });

  await app.register(
    async (v1) => {
      if (deps.rateLimits) v1.addHook('onRequest', limitByIp(deps.rateLimits)); // rate limit per IP: before authentication
      v1.addHook('onRequest', authenticate(deps.tokens));
      if (deps.rateLimits) v1.addHook('onRequest', limitByUserAndRoute(deps.rateLimits)); // per user and per route: after it
      await v1.register(authRoutes(deps.auth), { prefix: '/auth' });
      const signal = deps.signal;
      await v1.register(documentRoutes({ docs: deps.docs, db: deps.db, clock: deps.clock, onWrite: signal && (() => signal.poke()) }), { prefix: '/collections' });
      if (deps.queues) await v1.register(adminQueueRoutes(deps.queues), { prefix: '/admin/queues' });
      await v1.register(syncRoutes(deps.sync), { prefix: '/sync' });
      await v1.register(deviceRoutes(deps.devices), { prefix: '/devices' });
      if (deps.push) await v1.register(pushRoutes(deps.push, deps.serverKey), { prefix: '/push' });
      if (deps.files) await v1.register(fileRoutes({ files: deps.files, shutdownGraceMs: deps.shutdownGraceMs }), { prefix: '/files' });
    },
    { prefix: '/v1' },
  );
  // Outside the /v1 scope: its own hook order (connection admission before rate limits and tokens).
  if (deps.realtime) {
    await app.register(realtimeRoutes({ realtime: deps.realtime, tokens: deps.tokens, rateLimits: deps.rateLimits, metrics: deps.metrics.realtime, maxFrameBytes: deps.realtime.settings.maxFrameBytes }), { prefix: '/v1/realtime' });
  }
  return app;
}
