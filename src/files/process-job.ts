import type { Readable } from 'node:stream';
import type { Db } from '../db/port.js';
import type { Clock } from '../lib/clock.js';
import { isLeveeError, LeveeError } from '../lib/errors.js';
import type { BucketConfig } from './config.js';
import { objectKey } from './keys.js';
import type { ImageProcessor } from './processing.js';
import type { ObjectStorage } from './storage/port.js';
import { fileStore, type FileRow, type StoredVariant } from './store.js';

// The job that turns a `processing` image into a `ready` one: read the original, make the bucket's
// variants, store them under content-addressed keys, record them. Runs at least once (the queue
// retries): a re-run makes the same variants under the same keys, and a file that is no longer
// `processing` (done, deleted) is left alone. What the image itself is to blame for (a bomb, a
// corrupt file) fails the file for good; storage trouble throws, so the queue retries the job.

/** The queue for image jobs (phase 2 adds it to jobs/queues.ts; the worker role consumes it). */
export const MEDIA_QUEUE = { name: 'media', concurrency: 2, maxSize: 10_000, attempts: 5, backoffMs: 5_000, deadlineMs: 120_000, keepDeadLetters: 1_000 } as const;

export interface ProcessJobDeps {
  db: Db;
  storage: ObjectStorage;
  processor: ImageProcessor;
  clock: Clock;
  buckets: BucketConfig[];
  /** After a file became ready or failed (e.g. to tell its owner's realtime connections). */
  onSettled?: ((file: { id: string; ownerId: string; state: 'ready' | 'failed'; failureReason?: string }) => void) | undefined;
}

/** Failures that are the image's fault: retrying cannot help. */
const IMAGE_FAULTS = new Set(['image_too_large', 'invalid_image']);

export function createProcessJob(deps: ProcessJobDeps) {
  const buckets = new Map(deps.buckets.map((b) => [b.name, b]));

  async function readWhole(key: string, size: number, signal?: AbortSignal): Promise<Buffer> {
    const { body } = await deps.storage.get(key, { signal });
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of body as Readable & AsyncIterable<Buffer>) {
      n += c.length;
      // The row's size was checked at completion; more bytes here means the object changed under us.
      if (n > size) {
        body.destroy();
        throw new LeveeError('internal', `${key} holds more bytes than recorded`);
      }
      chunks.push(c);
    }
    return Buffer.concat(chunks);
  }

  /** Handles one job `{ fileId }`; resolves to the file's new state (or why nothing was done). */
  return async function processFile(payload: unknown, signal?: AbortSignal): Promise<FileRow['state'] | 'skipped'> {
    const fileId = (payload as { fileId?: unknown } | null)?.fileId;
    if (typeof fileId !== 'string') throw new Error('a media job needs { fileId }');
    const row = await fileStore.byId(deps.db, fileId);
    if (!row || row.state !== 'processing' || !row.key) return 'skipped';
    const bucket = buckets.get(row.bucket);
    const specs = bucket?.variants ?? [];

    let made;
    try {
      made = await deps.processor.variants(await readWhole(row.key, row.size, signal), specs, signal);
    } catch (e) {
      if (!(isLeveeError(e) && IMAGE_FAULTS.has(e.code))) throw e;
      const failed = await fileStore.transition(deps.db, fileId, 'processing', { state: 'failed', now: deps.clock.now(), failureReason: e.code });
      // The original of a refused image is not kept: it would never be served.
      if (failed) {
        await deps.storage.delete(row.key).catch(() => {});
        deps.onSettled?.({ id: fileId, ownerId: row.owner_id, state: 'failed', failureReason: e.code });
      }
      return 'failed';
    }

    const variants: Record<string, StoredVariant> = {};
    for (const v of made) {
      const key = objectKey(row.bucket, row.id, v.name, v.sha256, v.contentType);
      await deps.storage.put(key, v.data, { contentType: v.contentType, sha256: v.sha256, signal });
      variants[v.name] = { key, contentType: v.contentType, size: v.size, sha256: v.sha256, width: v.width, height: v.height };
    }
    const ready = await fileStore.transition(deps.db, fileId, 'processing', { state: 'ready', now: deps.clock.now(), variants });
    if (!ready) {
      // Deleted (or finished by another run) meanwhile: drop what this run wrote unless it is in use.
      const now = await fileStore.byId(deps.db, fileId);
      const inUse = new Set(Object.values(now?.variants ?? {}).map((v) => v.key));
      await Promise.all(Object.values(variants).filter((v) => !inUse.has(v.key)).map((v) => deps.storage.delete(v.key).catch(() => {})));
      return 'skipped';
    }
    deps.onSettled?.({ id: fileId, ownerId: row.owner_id, state: 'ready' });
    return 'ready';
  };
}

export type ProcessFile = ReturnType<typeof createProcessJob>;
