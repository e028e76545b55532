import { isLeveeError, LeveeError } from '../../lib/errors.js';
import type { Dependency } from '../../protection/dependency.js';
import type { CallOptions, ObjectStorage } from './port.js';

// The storage behind a circuit breaker and bulkhead (protection/dependency.ts), built by the
// composition root, e.g.:
//   guardStorage(storage, dependency({ name: 's3', concurrency: 64, queue: 256,
//     isFailure: isStorageOutage, unavailable: storageUnavailable }))
// Each call's signal is the dependency's (aborted by the request deadline or when a queued call is
// skipped). A `get` holds its slot until S3 answers, not while the body streams to the client.

/** Only outages open the circuit: a missing key or a bad checksum is the caller's, not S3's, failure. */
export const isStorageOutage = (e: unknown): boolean => !isLeveeError(e) || e.code === 'storage_unavailable' || e.code === 'timeout';

export const storageUnavailable = (reason: 'open' | 'full' | 'deadline'): Error =>
  reason === 'deadline'
    ? new LeveeError('timeout', "The request's deadline passed while waiting for file storage")
    : new LeveeError('storage_unavailable', reason === 'open' ? 'File storage is failing (circuit open); retry shortly' : 'File storage is busy; retry shortly', { retryAfter: 2 });

export function guardStorage(inner: ObjectStorage, dep: Dependency): ObjectStorage {
  const run = <T>(o: CallOptions | undefined, fn: (o: CallOptions) => Promise<T>) =>
    dep.run((signal) => fn({ ...o, signal: o?.signal ? AbortSignal.any([o.signal, signal]) : signal }));
  const guarded: ObjectStorage = {
    engine: inner.engine,
    put: (key, body, o) => run(o, (g) => inner.put(key, body, { ...o, ...g })),
    get: (key, o) => run(o, (g) => inner.get(key, { ...o, ...g })),
    head: (key, o) => run(o, (g) => inner.head(key, g)),
    exists: (key, o) => run(o, (g) => inner.exists(key, g)),
    delete: (key, o) => run(o, (g) => inner.delete(key, g)),
    copy: (from, to, o) => run(o, (g) => inner.copy(from, to, { ...o, ...g })),
    // Signing is local computation (no call to S3): nothing to guard.
    ...(inner.presignedGetUrl ? { presignedGetUrl: inner.presignedGetUrl.bind(inner) } : {}),
    uploads: {
      dataStore: inner.uploads.dataStore,
      key: (id) => inner.uploads.key(id),
      discard: (id, o) => run(o, (g) => inner.uploads.discard(id, g)),
    },
    close: () => inner.close(),
  };
  return guarded;
}
