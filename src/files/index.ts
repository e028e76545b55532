import type { Db } from '../db/port.js';
import type { Clock } from '../lib/clock.js';
import { DEFAULT_FILES_CONFIG, type FilesConfig } from './config.js';
import { createDelivery } from './delivery.js';
import { createProcessJob, type ProcessJobDeps } from './process-job.js';
import { createImageProcessor, type ImageProcessorOptions } from './processing.js';
import { createFilesService } from './service.js';
import { createUrlSigner } from './signed-urls.js';
import type { ObjectStorage } from './storage/port.js';

// Media: the one entry other folders import. The composition root builds the storage
// (createStorage, wrapped by guardStorage in a `dependency`), then `createFiles` for the API role
// (uploads, downloads) and `createFilesWorker` for the worker role (image jobs).

export interface FilesDeps {
  db: Db;
  storage: ObjectStorage;
  clock: Clock;
  config?: FilesConfig;
  /** Secrets for signed private URLs (≥ 32 bytes; the first signs, all verify). */
  urlSecrets: (string | Uint8Array)[];
  enqueueProcessing(fileId: string): Promise<void>;
  onCleanupError?(e: unknown, what: string): void;
}

export function createFiles(deps: FilesDeps) {
  const config = deps.config ?? DEFAULT_FILES_CONFIG;
  const signer = createUrlSigner({ secrets: deps.urlSecrets, clock: deps.clock });
  return {
    config,
    storage: deps.storage,
    service: createFilesService({ ...deps, config }),
    delivery: createDelivery({ db: deps.db, storage: deps.storage, signer, config, clock: deps.clock }),
  };
}

export function createFilesWorker(deps: { db: Db; storage: ObjectStorage; clock: Clock; config?: FilesConfig; processing?: ImageProcessorOptions; onSettled?: ProcessJobDeps['onSettled'] }) {
  const config = deps.config ?? DEFAULT_FILES_CONFIG;
  const processor = createImageProcessor(deps.processing);
  return { processor, processFile: createProcessJob({ db: deps.db, storage: deps.storage, processor, clock: deps.clock, buckets: config.buckets, onSettled: deps.onSettled }) };
}

export { createStorage, guardStorage, isStorageOutage, storageUnavailable, type StorageConfig } from './storage/index.js';
export { DEFAULT_BUCKETS, DEFAULT_FILES_CONFIG, parseBuckets, type BucketConfig, type FilesConfig, type VariantSpec } from './config.js';
export { MEDIA_QUEUE } from './process-job.js';
export { IMMUTABLE, type FileView, type Resolved } from './delivery.js';
export type { ObjectStorage } from './storage/port.js';
export type { FileRow } from './store.js';
export type Files = ReturnType<typeof createFiles>;
