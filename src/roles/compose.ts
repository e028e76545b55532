import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { createAccessTokens } from '../auth/access-tokens.js';
import { createIdTokenVerifier } from '../auth/id-tokens.js';
import { createKeyRing } from '../auth/keys.js';
import { createAuthService } from '../auth/service.js';
import type { Config } from '../config/load.js';
import { indexDdl } from '../data/fields.js';
import { createDocumentService } from '../data/service.js';
import { createDeviceService } from '../push/devices.js';
import { createCursorCodec } from '../sync/cursor.js';
import { createSyncService } from '../sync/service.js';
import { serverSecret } from '../sync/store.js';
import type { PgliteDb } from '../db/adapters/pglite.js';
import { openJobQueues, type QueueEngineChoice } from '../jobs/engines.js';
import type { JobQueues } from '../jobs/port.js';
import { queueSpecs } from '../jobs/queues.js';
import { LeveeStartupError } from '../lib/startup-error.js';
import type { Registry } from 'prom-client';
import { createPostgresDb } from '../db/adapters/postgres.js';
import { migrate } from '../db/migrate.js';
import type { Db } from '../db/port.js';
import { availableParallelism } from 'node:os';
import { createPasswordHasher } from '../auth/passwords.js';
import { guardDb, isDatabaseOutage } from '../db/guarded.js';
import { systemClock, type Clock } from '../lib/clock.js';
import { LeveeError } from '../lib/errors.js';
import type { Metrics } from '../observability/metrics.js';
import { createDependencies } from '../protection/dependency.js';
import { AdmissionController } from '../protection/admission.js';
import type { ProtectionOptions } from '../http/protection.js';
import { createSignInThrottle } from '../protection/brute-force.js';
import { createBucketStore, createRateLimits } from '../protection/rate-limits.js';
import { createSharedRedis } from '../protection/redis.js';
import { createLogger } from '../observability/logger.js';
import { createLocalSignal, createRealtime, createRedisSignal, type Realtime } from '../realtime/index.js';

// The composition root: the one place that reads configuration and builds adapters and services.

export async function openDatabase(config: Config, logger?: Logger): Promise<Db> {
  if (config.databaseUrl) {
    return createPostgresDb({
      url: config.databaseUrl,
      poolSize: config.dbPoolSize,
      acquireTimeoutMs: config.dbAcquireTimeoutMs,
      statementTimeoutMs: config.dbStatementTimeoutMs,
      onError: (err) => logger?.warn({ err: err.message }, 'idle database connection lost'),
    });
  }
  // Loaded only when used: a process on PostgreSQL never pays for the embedded engine's module.
  const { createPgliteDb } = await import('../db/adapters/pglite.js');
  return createPgliteDb({ dataDir: resolve(config.dataDir) });
}

/**
 * The job queues, on Redis (QUEUE_REDIS_URL, else REDIS_URL) unless LEVEE_QUEUE_ENGINE=database,
 * else on the database Levee uses: PostgreSQL through a pool of their own, or the embedded PGlite.
 */
export function openQueues(config: Config, db: Db, registry: Registry): Promise<JobQueues> {
  const redisUrl = config.queueRedisUrl ?? config.redisUrl;
  if (config.queueEngine === 'redis' && !redisUrl) throw new LeveeStartupError('LEVEE_QUEUE_ENGINE=redis needs QUEUE_REDIS_URL or REDIS_URL');
  const choice: QueueEngineChoice =
    redisUrl && config.queueEngine !== 'database'
      ? { kind: 'redis', url: redisUrl, keyPrefix: config.redisKeyPrefix }
      : config.databaseUrl
        ? { kind: 'postgres', url: config.databaseUrl, poolSize: config.queueDbPoolSize }
        : { kind: 'pglite', session: (db as PgliteDb).session };
  return openJobQueues(choice, queueSpecs(), registry);
}

/** Schema migrations plus the indexes the configuration declares. */
export async function migrateDatabase(db: Db, config: Config) {
  return migrate(db, undefined, [...config.collections.values()].flatMap(indexDdl));
}

export async function composeServices(config: Config, rawDb: Db, metrics: Metrics, clock: Clock = systemClock, logger?: Logger) {
  // Every dependency behind its own breaker and, where it has no pool of its own, a bulkhead.
  const dependency = createDependencies(metrics.registry);
  const db = guardDb(
    rawDb,
    dependency({ name: 'database', failuresToOpen: 5, halfOpenAfterMs: 1000, isFailure: isDatabaseOutage, unavailable: () => new LeveeError('database_unavailable', 'The database is unreachable (circuit open); retry shortly') }),
  );
  const passwords = createPasswordHasher(
    dependency({
      name: 'password_hashing',
      concurrency: config.passwordHashConcurrency || Math.max(1, Math.floor(availableParallelism() / 2)),
      queue: config.passwordHashQueue,
      isFailure: () => false,
      unavailable: (why) => new LeveeError('overloaded', why === 'deadline' ? 'Sign-ins are queued longer than the request deadline; retry shortly' : 'Too many sign-ins at once; retry shortly', { retryAfter: 2 }),
    }),
    { threads: config.passwordHashConcurrency || Math.max(1, Math.floor(availableParallelism() / 2)), nice: config.passwordHashNice },
  );
  const jwksFetch = (provider: string) =>
    dependency({
      name: `${provider}_jwks`,
      concurrency: 16,
      queue: 64,
      failuresToOpen: 3,
      halfOpenAfterMs: 5000,
      isFailure: (e) => e instanceof LeveeError && e.code === 'unavailable',
      unavailable: () => new LeveeError('unavailable', `Sign in with ${provider} is unavailable: its signing keys cannot be fetched; retry shortly`, { retryAfter: 5 }),
    });
  const limits = composeLimits(config, dependency, metrics, logger ?? createLogger('silent'));
  const keys = await createKeyRing({ db, clock, accessTokenTtlSeconds: config.accessTokenTtlSeconds });
  const tokens = createAccessTokens({ keys, clock, issuer: config.jwtIssuer, ttlSeconds: config.accessTokenTtlSeconds });
  const auth = createAuthService({
    db,
    clock,
    tokens,
    passwords,
    signInThrottle: limits.signInThrottle,
    config: { sessionTtlDays: config.sessionTtlDays, adminEmails: config.adminEmails },
    apple: createIdTokenVerifier('apple', { jwksUrl: config.appleJwksUrl, issuers: [config.appleIssuer], audiences: config.appleAudiences }, jwksFetch('apple')),
    google: createIdTokenVerifier('google', { jwksUrl: config.googleJwksUrl, issuers: config.googleIssuers, audiences: config.googleAudiences }, jwksFetch('google')),
  });
  const docs = createDocumentService({ db, clock, collections: config.collections });
  // Every write pokes the realtime tailers: this process's, and with Redis every API process's.
  const signal = limits.redis && config.redisUrl
    ? createRedisSignal({ redis: limits.redis, url: config.redisUrl, channel: `${config.redisKeyPrefix}realtime:changes`, logger: logger ?? createLogger('silent'), onDropped: metrics.realtime.signalDropped })
    : createLocalSignal();
  const cursors = createCursorCodec(await serverSecret(db, 'sync_cursor'));
  const sync = createSyncService({
    db,
    clock,
    collections: config.collections,
    docs,
    cursors,
    limits: { pullMax: config.syncPullLimit, pushMax: config.syncPushMaxMutations },
    onWrite: () => signal.poke(),
  });
  const devices = createDeviceService({ db, clock, rules: { topics: config.pushTopics, webPushAllowedHosts: config.webPushAllowedHosts } });
  return { db, keys, tokens, auth, docs, sync, cursors, signal, devices, serverKey: config.serverKey, passwords, dependency, rateLimits: limits.rateLimits, redis: limits.redis };
}

/** Realtime for the api role: the change-log tailer, the hub and the connection bounds (start() it). */
export function composeRealtime(config: Config, services: Services, metrics: Metrics, logger: Logger): Realtime {
  return createRealtime({
    db: services.db,
    sync: services.sync,
    cursors: services.cursors,
    collections: config.collections,
    signal: services.signal,
    logger,
    metrics: metrics.realtime,
    settings: {
      pollMs: config.realtimePollMs,
      pingIntervalMs: config.realtimePingIntervalMs,
      maxBufferedBytes: config.realtimeMaxBufferedBytes,
      maxSubscriptions: config.realtimeMaxSubscriptions,
      maxFrameBytes: config.realtimeMaxFrameBytes,
      messagesPerSecond: config.realtimeMessagesPerSecond,
      maxConnections: config.realtimeMaxConnections,
      acceptPerSecond: config.realtimeAcceptPerSecond,
      acceptBurst: config.realtimeAcceptBurst,
      catchUpConcurrency: config.realtimeCatchUpConcurrency,
      catchUpQueue: config.realtimeCatchUpQueue,
      catchUpBudgetMs: config.requestDeadlineMs,
    },
  });
}

export type Services = Awaited<ReturnType<typeof composeServices>>;

/**
 * Rate limits and sign-in throttling, and the Redis they share when REDIS_URL is set (never waited
 * on: see protection/redis.ts). Rate limits are left out with LEVEE_PROTECTION=off; sign-in
 * throttling is a security control and always stays.
 */
function composeLimits(config: Config, dependency: ReturnType<typeof createDependencies>, metrics: Metrics, logger: Logger) {
  const registry = metrics.registry;
  const redis = config.redisUrl ? createSharedRedis({ url: config.redisUrl, commandTimeoutMs: config.redisCommandTimeoutMs, keyPrefix: config.redisKeyPrefix, logger, createDependency: dependency }) : undefined;
  const signInThrottle = createSignInThrottle({
    accountFailures: config.signInAccountFailures,
    accountWindowSeconds: config.signInAccountWindowMinutes * 60,
    ipFailures: config.signInIpFailures,
    ipWindowSeconds: config.signInIpWindowMinutes * 60,
    redis,
    registry,
  });
  const rateLimits = config.protection
    ? createRateLimits({
        ip: { perMinute: config.rateLimitIpPerMinute, burst: config.rateLimitIpBurst },
        user: { perMinute: config.rateLimitUserPerMinute, burst: config.rateLimitUserBurst },
        routes: {
          signup: { perMinute: config.rateLimitSignupPerMinute, burst: config.rateLimitSignupPerMinute },
          anonymous: { perMinute: config.rateLimitAnonymousPerMinute, burst: config.rateLimitAnonymousPerMinute },
          password_change: { perMinute: config.rateLimitPasswordChangePerMinute, burst: config.rateLimitPasswordChangePerMinute },
        },
        store: createBucketStore({ redis, registry, logger }),
        registry,
      })
    : undefined;
  return { redis, signInThrottle, rateLimits };
}

/** Admission control and deadlines for the api role (admission is left out when protection is off). */
export function composeProtection(config: Config, metrics: Metrics): ProtectionOptions {
  const admission = config.protection
    ? new AdmissionController({
        initialLimit: config.admissionInitialLimit,
        minLimit: config.admissionMinLimit,
        maxLimit: Math.max(config.admissionMaxLimit, config.admissionMinLimit),
        queueSize: config.admissionQueueSize,
        queueWaitMs: config.admissionQueueWaitMs,
      })
    : undefined;
  if (admission) metrics.watchAdmission(() => admission.stats());
  return {
    admission,
    defaultDeadlineMs: config.requestDeadlineMs,
    maxDeadlineMs: config.requestDeadlineMaxMs,
    maxEventLoopDelayMs: config.maxEventLoopDelayMs,
    onRejected: (priority, reason) => metrics.admissionRejected.inc({ priority, reason }),
  };
}
