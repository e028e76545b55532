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
import { createLocalSignal, createRealtime, createRedisSignal, type ChangeSignal, type Realtime } from '../realtime/index.js';
import { createFiles, createFilesWorker, createStorage, DEFAULT_BUCKETS, guardStorage, isStorageOutage, storageUnavailable, type FilesConfig, type ObjectStorage, type StorageConfig } from '../files/index.js';
import { QUEUES } from '../jobs/queues.js';
import type { WorkerMedia } from './worker.js';

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

/** The media settings as the files layer takes them. */
export function filesConfig(config: Config): FilesConfig {
  return {
    buckets: config.fileBuckets ?? DEFAULT_BUCKETS,
    quotaBytesPerUser: config.uploadQuotaBytes,
    oneShotMaxBytes: config.uploadOneShotMaxBytes,
    signedUrlTtlSeconds: config.signedUrlTtlSeconds,
    cdnBaseUrl: config.cdnBaseUrl,
    proxyDownloads: config.mediaProxy,
  };
}

/** Which storage engine, from the settings (checked here: S3 needs a bucket, keys come in pairs). */
export function storageConfig(config: Config): StorageConfig {
  if (config.storage === 'local') return { engine: 'local', dir: resolve(config.filesDir ?? resolve(config.dataDir, 'files')) };
  if (!config.s3Bucket) throw new LeveeStartupError('LEVEE_STORAGE=s3 needs LEVEE_S3_BUCKET');
  if (!config.s3AccessKeyId !== !config.s3SecretAccessKey) throw new LeveeStartupError('LEVEE_S3_ACCESS_KEY_ID and LEVEE_S3_SECRET_ACCESS_KEY go together: set both, or neither (the AWS SDK default chain)');
  return {
    engine: 's3',
    bucket: config.s3Bucket,
    endpoint: config.s3Endpoint,
    region: config.s3Region,
    accessKeyId: config.s3AccessKeyId,
    secretAccessKey: config.s3SecretAccessKey,
    forcePathStyle: config.s3ForcePathStyle,
    requestTimeoutMs: config.s3TimeoutMs,
    transferTimeoutMs: config.s3TransferTimeoutMs,
    // The agent's sockets sit above the bulkhead, so the bulkhead is what bounds S3 calls.
    maxSockets: config.s3Concurrency + 16,
  };
}

/**
 * The file storage behind its breaker and bulkhead (`s3`, or `storage` for the local directory:
 * a full or failing disk opens the circuit the same way).
 */
export async function composeStorage(config: Config, dependency: Services['dependency']): Promise<ObjectStorage> {
  const raw = await createStorage(storageConfig(config));
  return guardStorage(
    raw,
    dependency({
      name: raw.engine === 's3' ? 's3' : 'storage',
      concurrency: config.s3Concurrency,
      queue: config.s3Queue,
      failuresToOpen: 5,
      halfOpenAfterMs: 2000,
      isFailure: isStorageOutage,
      unavailable: storageUnavailable,
    }),
  );
}

/**
 * Media for the api role: storage, the files service (uploads, quota, completion) and delivery.
 * Image jobs go to the media queue (the worker role consumes it); without queues (tests) `enqueue`
 * may be given instead.
 */
export async function composeFiles(config: Config, services: Services, opts: { queues?: JobQueues | undefined; storage?: ObjectStorage; clock?: Clock; logger?: Logger; enqueue?: (fileId: string) => Promise<void> } = {}) {
  const storage = opts.storage ?? (await composeStorage(config, services.dependency));
  const urlSecrets = config.filesUrlSecret.length > 0 ? config.filesUrlSecret : [await serverSecret(services.db, 'files_url')];
  const queues = opts.queues;
  const enqueue =
    opts.enqueue ??
    (async (fileId: string) => {
      if (!queues) throw new Error('no job queue to process images');
      await queues.enqueue(QUEUES.media.name, 'process', { fileId }, { jobId: fileId });
    });
  const log = opts.logger;
  const files = createFiles({
    db: services.db,
    storage,
    clock: opts.clock ?? systemClock,
    config: filesConfig(config),
    urlSecrets,
    enqueueProcessing: enqueue,
    onCleanupError: (e, what) => log?.warn({ err: (e as Error).message, what }, 'file clean-up failed'),
  });
  return { ...files, close: () => storage.close() };
}

export type FilesComposed = Awaited<ReturnType<typeof composeFiles>>;

/**
 * Media for the worker role: the image job (sharp) over the same storage. With `signal`, the owner's
 * realtime connections hear when a file is ready or failed (`{"type":"event","event":{"type":"file",…}}`).
 */
export function composeFilesWorker(config: Config, db: Db, storage: ObjectStorage, clock: Clock = systemClock, signal?: ChangeSignal) {
  return createFilesWorker({
    db,
    storage,
    clock,
    config: filesConfig(config),
    processing: { maxPixels: config.imageMaxPixels, concurrency: config.imageConcurrency, timeoutMs: config.imageTimeoutMs },
    onSettled: signal ? ({ ownerId, ...file }) => signal.notifyUser(ownerId, { type: 'file', ...file }) : undefined,
  });
}

/** What the worker role needs for media: the image job and the upkeep of uploads and stuck jobs. */
export function composeWorkerMedia(config: Config, db: Db, storage: ObjectStorage, files: FilesComposed, queues: JobQueues, clock: Clock = systemClock, signal?: ChangeSignal): WorkerMedia {
  return {
    processFile: composeFilesWorker(config, db, storage, clock, signal).processFile,
    housekeeping: {
      uploadExpiryMs: config.uploadExpiryHours * 3_600_000,
      discardStaleUploads: (maxAgeMs, limit) => files.service.discardStaleUploads(maxAgeMs, limit),
      // A fresh job id: the first job may still be kept (dead-lettered), which would dedupe this one.
      requeue: async (fileId, now) => void (await queues.enqueue(QUEUES.media.name, 'process', { fileId }, { jobId: `${fileId}.${now.getTime()}` })),
    },
  };
}
