import { createServer, type Server } from 'node:http';
import { resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../config/load.js';
import type { Role } from '../config/settings.js';
import { systemClock } from '../lib/clock.js';
import { createMetrics } from '../observability/metrics.js';
import { createPushService } from '../push/service.js';
import { composeProviders } from '../push/compose.js';
import { composeProtection, composeRealtime, composeServices, migrateDatabase, openDatabase, openQueues } from './compose.js';
import { composeFiles, composeStorage, composeWorkerMedia } from './compose-media.js';
import { createOps, type Lifecycle, type Ops } from './ops.js';
import { startPush } from './push.js';
import { startWorker } from './worker.js';

// One Levee process: opens the database, migrates, starts the requested roles, and drains on
// SIGTERM/SIGINT: readiness goes false, the listener closes (new connections are refused),
// in-flight requests get `shutdownGraceMs` to finish, then pools close and the process exits 0.

export interface Running {
  url: string;
  stop(reason?: string): Promise<void>;
}

/** A bare node:http server for /healthz, /readyz and /metrics when the api role is not here. */
function opsServer(ops: Ops): Server {
  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const handler = path === '/healthz' ? ops.healthz : path === '/readyz' ? ops.readyz : path === '/metrics' ? ops.metrics : undefined;
    if (!handler) {
      res.writeHead(404, { 'content-type': 'application/problem+json' }).end(JSON.stringify({ status: 404, code: 'not_found', title: 'Not found' }));
      return;
    }
    handler().then(
      (r) => res.writeHead(r.status, { 'content-type': r.contentType }).end(r.body),
      (err: Error) => res.writeHead(500, { 'content-type': 'application/problem+json' }).end(JSON.stringify({ status: 500, code: 'internal', title: err.message })),
    );
  });
}

export async function startLevee(config: Config, roles: Role[], logger: Logger): Promise<Running> {
  const clock = systemClock;
  const lifecycle: Lifecycle = { draining: false };
  const db = await openDatabase(config, logger);
  // What has been started so far, undone in reverse if a later step fails (e.g. the port is taken).
  const undo: (() => unknown)[] = [() => db.close()];
  try {
    const { applied } = await migrateDatabase(db, config);
    if (applied.length) logger.info({ applied }, 'migrations applied');
    const metrics = createMetrics(roles);
    const ops = createOps({ db, metrics, lifecycle, roles });
    const services = await composeServices(config, db, metrics, clock, logger);
    undo.push(() => services.keys.stop());
    undo.push(() => services.redis?.close());
    undo.push(() => services.passwords.close());
    const queues = await openQueues(config, db, metrics.registry);
    undo.push(() => queues.close());
    metrics.watchQueues(queues);
    // Provider credentials are read and checked before the process starts serving.
    const providers = roles.includes('push') ? composeProviders(config, services.dependency) : {};

    undo.push(() => services.signal.close());
    // Realtime follows the change log from its head, in API processes only.
    const realtime = roles.includes('api') ? composeRealtime(config, services, metrics, logger) : undefined;
    if (realtime) {
      await realtime.start();
      undo.push(() => realtime.stop());
    }

    // Media: one storage (behind its breaker and bulkhead) for the api role's uploads and downloads
    // and the worker role's image jobs. The push role alone never opens it.
    const storage = roles.includes('api') || roles.includes('worker') ? await composeStorage(config, services.dependency) : undefined;
    if (storage) undo.push(() => storage.close());
    const files = storage ? await composeFiles(config, services, { queues, storage, clock, logger }) : undefined;

    // Fastify and the API are loaded only by processes that serve it: a worker or push process
    // stays smaller (DESIGN: those roles never load Fastify).
    const http = roles.includes('api')
      ? await listenApi(await (await import('../http/app.js')).buildApp({ clock, logger, metrics, ops, ...services, queues, push: createPushService({ db: services.db, clock, queues, topics: config.pushTopics }), protection: composeProtection(config, metrics), bodyLimitBytes: config.bodyLimitBytes, trustProxy: config.trustProxy, realtime, files, shutdownGraceMs: config.shutdownGraceMs }), config, logger)
      : await listenOps(opsServer(ops), config);
    undo.push(() => http.close(0));
    const stoppers: (() => Promise<void>)[] = [];
    if (roles.includes('worker')) {
      const media = files && storage ? composeWorkerMedia(config, services.db, storage, files, queues, clock, services.signal) : undefined;
      stoppers.push((await startWorker({ db, clock, logger, queues, housekeeping: { tombstoneDays: config.syncTombstoneDays }, media })).stop);
    }
    if (roles.includes('push')) {
      // The push role's own database pool on PostgreSQL (PGlite is one session whatever we do).
      const pushDb = config.databaseUrl ? await openDatabase({ ...config, dbPoolSize: config.pushDbPoolSize }, logger) : db;
      if (pushDb !== db) undo.push(() => pushDb.close());
      const push = startPush({ db: pushDb, clock, logger, queues, registry: metrics.registry, providers });
      stoppers.push(async () => {
        await push.stop();
        if (pushDb !== db) await pushDb.close();
      });
    }

    let stopping: Promise<void> | undefined;
    const stop = (reason = 'stop') =>
      (stopping ??= (async () => {
        logger.info({ reason }, 'draining');
        lifecycle.draining = true;
        // Closing the server first tells realtime clients to reconnect elsewhere (1001).
        await http.close(config.shutdownGraceMs);
        await realtime?.stop();
        await services.signal.close();
        await Promise.all(stoppers.map((s) => s()));
        await queues.close();
        await storage?.close();
        services.keys.stop();
        await services.redis?.close();
        await services.passwords.close();
        await db.close();
        logger.info('stopped');
      })());
    return { url: http.url, stop };
  } catch (e) {
    for (const step of undo.reverse()) await Promise.resolve(step()).catch(() => {});
    throw e;
  }
}

interface Listening {
  url: string;
  /** Stops accepting, lets in-flight requests finish for `graceMs`, then closes what is left. */
  close(graceMs: number): Promise<void>;
}

async function listenApi(app: FastifyInstance, config: Config, logger: Logger): Promise<Listening> {
  const url = await app.listen({ port: config.port, host: config.host });
  return {
    url,
    async close(graceMs) {
      const force = setTimeout(() => {
        logger.warn({ graceMs }, 'grace period over: closing remaining connections');
        app.server.closeAllConnections();
      }, graceMs);
      await app.close();
      clearTimeout(force);
    },
  };
}

async function listenOps(server: Server, config: Config): Promise<Listening> {
  await new Promise<void>((ok, fail) => server.once('error', fail).listen(config.port, config.host, ok));
  const addr = server.address();
  return {
    url: `http://${config.host}:${typeof addr === 'object' && addr ? addr.port : config.port}`,
    async close(graceMs) {
      const force = setTimeout(() => server.closeAllConnections(), graceMs);
      server.closeIdleConnections();
      await new Promise((ok) => server.close(ok));
      clearTimeout(force);
    },
  };
}

export function describeStorage(config: Config): string {
  return config.databaseUrl ? `PostgreSQL (${new URL(config.databaseUrl).host})` : `embedded PostgreSQL in ${resolve(config.dataDir)}`;
}
