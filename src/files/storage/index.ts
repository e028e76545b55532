import type { ObjectStorage } from './port.js';
import type { S3StorageOptions } from './s3.js';

// Builds the configured storage. The S3 adapter (and the AWS SDK under it) is imported only when
// configured, so the embedded setup never loads it.

export type StorageConfig =
  | { engine: 'local'; dir: string; requestTimeoutMs?: number; transferTimeoutMs?: number }
  | ({ engine: 's3' } & S3StorageOptions);

export async function createStorage(config: StorageConfig): Promise<ObjectStorage> {
  if (config.engine === 'local') {
    const { createLocalStorage } = await import('./local.js');
    return createLocalStorage(config);
  }
  const { createS3Storage } = await import('./s3.js');
  return createS3Storage(config);
}

export type { ObjectStorage } from './port.js';
export { guardStorage, isStorageOutage, storageUnavailable } from './guarded.js';
