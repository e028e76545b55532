import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Db } from '../db/port.js';
import type { Clock } from '../lib/clock.js';
import { isLeveeError, LeveeError } from '../lib/errors.js';
import { newId } from '../lib/ids.js';
import { PROCESSABLE_TYPES, type BucketConfig, type FilesConfig } from './config.js';
import { objectKey, uploadKey } from './keys.js';
import { declaredMatches, normalizeType, sniff, SNIFF_BYTES } from './sniff.js';
import type { ObjectStorage } from './storage/port.js';
import { fileStore, type FileRow } from './store.js';

// The upload lifecycle: create (rules and quota) → bytes arrive (tus or one shot) → complete
// (verify, store under a content-addressed key) → process (images, in a job) → ready; and delete.
// Nothing a client sent is servable before it has been verified: a row only becomes `ready` (or
// `processing`) with its bytes sniffed, hashed and moved out of the upload area.

export interface FilesServiceDeps {
  db: Db;
  storage: ObjectStorage;
  config: FilesConfig;
  clock: Clock;
  /** Enqueues the image job for a file (idempotent: use the file id as the job id). */
  enqueueProcessing(fileId: string): Promise<void>;
  /** Called with errors the service swallowed (clean-up after a failure); default: ignored. */
  onCleanupError?(e: unknown, what: string): void;
}

export interface CreateUpload {
  ownerId: string;
  bucket: string;
  /** The declared type; the bytes must turn out to be of this type. */
  contentType: string;
  /** The exact size (tus Upload-Length); deferred lengths are not accepted. */
  size: number;
}

/** Whether a file of this type in this bucket gets variants (and so goes through `processing`). */
export const needsProcessing = (bucket: BucketConfig, contentType: string) => bucket.variants.length > 0 && PROCESSABLE_TYPES.has(contentType);

export function createFilesService(deps: FilesServiceDeps) {
  const { db, storage, config, clock } = deps;
  const buckets = new Map(config.buckets.map((b) => [b.name, b]));
  const cleanup = (what: string) => (e: unknown) => deps.onCleanupError?.(e, what);

  const bucketOf = (name: string) => buckets.get(name) ?? (() => { throw new LeveeError('unknown_bucket', `No bucket named "${name}"`); })();

  /** Reads the first bytes and the SHA-256 of an object, in one pass. */
  async function sniffAndHash(key: string): Promise<{ head: Buffer; sha256: string; size: number }> {
    const { body } = await storage.get(key);
    const hash = createHash('sha256');
    const head: Buffer[] = [];
    let headBytes = 0;
    let size = 0;
    for await (const chunk of body as Readable & AsyncIterable<Buffer>) {
      hash.update(chunk);
      size += chunk.length;
      if (headBytes < SNIFF_BYTES) {
        head.push(chunk.subarray(0, SNIFF_BYTES - headBytes));
        headBytes += Math.min(chunk.length, SNIFF_BYTES - headBytes);
      }
    }
    return { head: Buffer.concat(head), sha256: hash.digest('hex'), size };
  }

  /** Marks a file failed (it stops counting against the quota) and drops its uploaded bytes. */
  async function fail(row: FileRow, reason: string): Promise<void> {
    await fileStore.transition(db, row.id, 'uploading', { state: 'failed', now: clock.now(), failureReason: reason });
    await storage.uploads.discard(uploadKey(row.id)).catch(cleanup(`discarding upload ${row.id}`));
  }

  const service = {
    bucket: bucketOf,

    /** Checks the bucket's rules and the owner's quota, and reserves the file's size against it. */
    async createUpload(u: CreateUpload): Promise<{ file: FileRow; uploadId: string }> {
      const bucket = bucketOf(u.bucket);
      const contentType = normalizeType(u.contentType);
      if (!bucket.allowedTypes.includes(contentType)) throw new LeveeError('unsupported_file_type', `The ${bucket.name} bucket accepts ${bucket.allowedTypes.join(', ')}, not ${contentType}`);
      if (!Number.isSafeInteger(u.size) || u.size < 1) throw new LeveeError('bad_request', 'A file must have a known size of at least 1 byte');
      if (u.size > bucket.maxFileBytes) throw new LeveeError('file_too_large', `The ${bucket.name} bucket takes files up to ${bucket.maxFileBytes} bytes`, { extra: { maxFileBytes: bucket.maxFileBytes } });
      const id = newId();
      const result = await db.transaction((tx) =>
        fileStore.insertWithinQuota(tx, { id, ownerId: u.ownerId, bucket: bucket.name, contentType, size: u.size, visibility: bucket.public ? 'public' : 'private', now: clock.now() }, config.quotaBytesPerUser),
      );
      if ('usedBytes' in result) {
        throw new LeveeError('quota_exceeded', `You store ${result.usedBytes} of your ${config.quotaBytesPerUser} bytes; this file needs ${u.size}`, { extra: { usedBytes: result.usedBytes, quotaBytes: config.quotaBytesPerUser } });
      }
      return { file: result.row, uploadId: uploadKey(id) };
    },

    /**
     * Called once every byte has arrived: the size must be the reserved one, the bytes must be of
     * the declared type. Then they move to their content-addressed key and the file becomes
     * `processing` (images with variants; a job is enqueued) or `ready`. On a type mismatch the
     * bytes are deleted and the file marked failed. Completing a completed file returns it as is.
     */
    async completeUpload(fileId: string): Promise<FileRow> {
      const row = await fileStore.byId(db, fileId);
      if (!row) throw new LeveeError('file_not_found');
      if (row.state === 'failed') throw new LeveeError(row.failure_reason === 'file_type_mismatch' ? 'file_type_mismatch' : 'file_not_found', row.failure_reason ?? undefined);
      if (row.state !== 'uploading') return row;
      const staged = uploadKey(fileId);
      const { size } = await storage.head(staged);
      if (size < row.size) throw new LeveeError('upload_incomplete', `${size} of ${row.size} bytes have arrived`);
      if (size > row.size) {
        await fail(row, 'file_too_large');
        throw new LeveeError('file_too_large', `${size} bytes arrived, ${row.size} were declared`);
      }
      const scan = await sniffAndHash(staged);
      const sniffed = sniff(scan.head);
      if (!declaredMatches(row.content_type, sniffed)) {
        await fail(row, 'file_type_mismatch');
        throw new LeveeError('file_type_mismatch', `Declared ${row.content_type}, but the bytes are ${sniffed ?? 'of no recognised type'}`);
      }
      const key = objectKey(row.bucket, row.id, 'original', scan.sha256, row.content_type);
      await storage.copy(staged, key, { contentType: row.content_type });
      const processing = needsProcessing(bucketOf(row.bucket), row.content_type);
      const done = await fileStore.transition(db, row.id, 'uploading', { state: processing ? 'processing' : 'ready', now: clock.now(), key, sha256: scan.sha256, size: scan.size });
      if (!done) {
        // Completed by a concurrent call (same content, same key: keep it) or deleted meanwhile.
        const now = await fileStore.byId(db, fileId);
        if (!now) {
          await storage.delete(key).catch(cleanup(`deleting ${key}`));
          throw new LeveeError('file_not_found');
        }
        return now;
      }
      await storage.uploads.discard(staged).catch(cleanup(`discarding upload ${fileId}`));
      // A failed enqueue leaves the file `processing`; housekeeping re-enqueues stuck files.
      if (processing) await deps.enqueueProcessing(row.id).catch(cleanup(`enqueueing processing of ${fileId}`));
      return done;
    },

    /** A small file in one request: create, store, complete. A failure leaves nothing behind. */
    async uploadOneShot(u: CreateUpload & { body: Readable | Uint8Array; sha256?: string }): Promise<FileRow> {
      if (u.size > config.oneShotMaxBytes) throw new LeveeError('file_too_large', `One-shot uploads take up to ${config.oneShotMaxBytes} bytes; use the resumable (tus) upload`, { extra: { maxFileBytes: config.oneShotMaxBytes } });
      const { file, uploadId } = await service.createUpload(u);
      try {
        await storage.put(uploadId, u.body, { contentType: file.content_type, size: u.size, sha256: u.sha256 });
        return await service.completeUpload(file.id);
      } catch (e) {
        if (!(isLeveeError(e) && e.code === 'file_type_mismatch')) {
          await fileStore.remove(db, file.id).catch(cleanup(`removing file ${file.id}`));
          await storage.uploads.discard(uploadId).catch(cleanup(`discarding upload ${file.id}`));
        }
        throw e;
      }
    },

    /** The file if `viewerId` may see it: its owner always, others only when public and ready. */
    async get(fileId: string, viewerId: string | undefined): Promise<FileRow> {
      const row = await fileStore.byId(db, fileId);
      if (!row || (row.owner_id !== viewerId && (row.visibility !== 'public' || row.state !== 'ready'))) throw new LeveeError('file_not_found');
      return row;
    },

    list: (ownerId: string, limit = 50, before?: string) => fileStore.byOwner(db, ownerId, Math.min(Math.max(limit, 1), 100), before),

    usedBytes: (ownerId: string) => fileStore.usedBytes(db, ownerId),

    /**
     * Deletes a file (its owner, or `asAdmin`). The row goes first, so nothing can serve the file
     * any more; then its bytes. Bytes a crash leaves behind are unreachable (keys are unguessable
     * from outside: they hold the file id and hash).
     */
    async remove(fileId: string, requesterId: string, opts: { asAdmin?: boolean } = {}): Promise<void> {
      const row = await fileStore.byId(db, fileId);
      if (!row || (row.owner_id !== requesterId && !opts.asAdmin)) throw new LeveeError('file_not_found');
      const gone = await fileStore.remove(db, fileId);
      if (!gone) return;
      const keys = [gone.key, ...Object.values(gone.variants).map((v) => v.key)].filter((k): k is string => k !== null);
      await Promise.all(keys.map((k) => storage.delete(k).catch(cleanup(`deleting ${k}`))));
      await storage.uploads.discard(uploadKey(fileId)).catch(cleanup(`discarding upload ${fileId}`));
    },

    /** Housekeeping: uploads untouched for `maxAgeMs` are given up (row and bytes removed). */
    async discardStaleUploads(maxAgeMs: number, limit = 100): Promise<number> {
      const stale = await fileStore.staleUploads(db, new Date(clock.now().getTime() - maxAgeMs), limit);
      for (const row of stale) await service.remove(row.id, row.owner_id);
      return stale.length;
    },
  };
  return service;
}

export type FilesService = ReturnType<typeof createFilesService>;
