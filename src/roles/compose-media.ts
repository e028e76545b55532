import { resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/load.js';
import type { Db } from '../db/port.js';
import { createFiles, createFilesWorker, createStorage, DEFAULT_BUCKETS, guardStorage, isStorageOutage, storageUnavailable, type FilesConfig, type ObjectStorage, type StorageConfig } from '../files/index.js';
import type { JobQueues } from '../jobs/port.js';
import { QUEUES } from '../jobs/queues.js';
import { systemClock, type Clock } from '../lib/clock.js';
import { LeveeStartupError } from '../lib/startup-error.js';
import type { ChangeSignal } from '../realtime/index.js';
import { serverSecret } from '../sync/store.js';
import type { Services } from './compose.js';
import type { WorkerMedia } from './worker.js';

// The media part of the composition root: storage (local or S3, behind its breaker), the files
// service for the api role, and the image job and upkeep for the worker role.

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
