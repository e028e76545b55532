import type { Logger } from 'pino';
import type { Db } from '../db/port.js';
import { purgeEndedSessions } from '../auth/store.js';
import { purgeExpiredIdempotencyKeys } from '../data/idempotency.js';
import type { JobQueues } from '../jobs/port.js';
import { fanoutHandler } from '../push/fanout.js';
import { deliveryStore } from '../push/store.js';
import { QUEUES } from '../jobs/queues.js';
import { changeLog, mutationLog } from '../sync/store.js';
import type { Clock } from '../lib/clock.js';
import { fileStore } from '../files/store.js';

/** Media upkeep the worker's housekeeping does when the files layer is composed. */
export interface FilesHousekeeping {
  /** Gives up uploads older than this (LEVEE_UPLOAD_EXPIRY_HOURS), freeing their quota. */
  uploadExpiryMs: number;
  discardStaleUploads(maxAgeMs: number, limit?: number): Promise<number>;
  /** Re-enqueues a file's image job (a lost enqueue, a dead-lettered job). */
  requeue(fileId: string, now: Date): Promise<void>;
}

/** A `processing` file untouched this long has lost its job: enqueue it again (the job is idempotent). */
export const STUCK_PROCESSING_MS = 15 * 60_000;

// The worker role: background work off the request path. It consumes the maintenance queue; its
// recurring housekeeping job (expired idempotency records, ended sessions, old used refresh tokens,
// push deliveries left mid-send by a stopped push worker, old tombstones and offline-mutation answers)
// is scheduled by every worker process alike — the schedule is one per queue, so however many
// workers run, each run happens once.

export interface HousekeepingOptions {
  /** LEVEE_SYNC_TOMBSTONE_DAYS: deleted documents are forgotten by the change log after this. */
  tombstoneDays: number;
}

const DAY_MS = 86_400_000;

export async function housekeeping(db: Db, now: Date, opts: HousekeepingOptions = { tombstoneDays: 30 }, files?: FilesHousekeeping) {
  const media: { staleUploads?: number; requeuedImages?: number } = files ? await filesHousekeeping(db, now, files) : {};
  return {
    ...media,
    idempotencyKeys: await purgeExpiredIdempotencyKeys(db, now),
    sessionsAndTokens: await purgeEndedSessions(db, now),
    stuckPushDeliveries: await deliveryStore.settleStuck(db, now),
    tombstones: await changeLog.pruneTombstones(db, new Date(now.getTime() - opts.tombstoneDays * DAY_MS)),
    // Offline mutation answers are kept as long as tombstones: a client offline for longer resyncs.
    syncMutations: await mutationLog.purgeBefore(db, new Date(now.getTime() - opts.tombstoneDays * DAY_MS)),
  };
}

async function filesHousekeeping(db: Db, now: Date, files: FilesHousekeeping) {
  const staleUploads = await files.discardStaleUploads(files.uploadExpiryMs, 500);
  const stuck = await fileStore.stuckProcessing(db, new Date(now.getTime() - STUCK_PROCESSING_MS), 500);
  for (const id of stuck) await files.requeue(id, now);
  return { staleUploads, requeuedImages: stuck.length };
}

export const HOUSEKEEPING_EVERY_MS = 10 * 60_000;

export interface WorkerMedia {
  /** The image job (createFilesWorker(...).processFile). */
  processFile(payload: unknown, signal?: AbortSignal): Promise<unknown>;
  housekeeping: FilesHousekeeping;
}

export async function startWorker(deps: { db: Db; clock: Clock; logger: Logger; queues: JobQueues; housekeepingEveryMs?: number; housekeeping?: HousekeepingOptions; media?: WorkerMedia | undefined }) {
  const log = deps.logger.child({ role: 'worker' });
  const maintenance = QUEUES.maintenance.name;
  // In the background: a queue engine that is down (Redis restarting) must not hold up start-up;
  // BullMQ waits for it and the schedule is made once it answers.
  void deps.queues
    .schedule(maintenance, 'housekeeping', { everyMs: deps.housekeepingEveryMs ?? HOUSEKEEPING_EVERY_MS }, 'housekeeping', {})
    .catch((err: Error) => log.warn({ err: err.message }, 'could not schedule housekeeping; it runs once the job queue answers and the worker restarts'));
  // A push's fan-out (its audience into provider batches for the push role) is background work of
  // the worker role, so the push role's CPU goes to sending.
  const fanout = deps.queues.consume(QUEUES.pushFanout.name, { fanout: fanoutHandler(deps) });
  // Image variants (sharp), off the request path; the processor's own semaphore bounds the images
  // in flight per process (LEVEE_IMAGE_CONCURRENCY).
  const media = deps.media;
  const images = media ? deps.queues.consume(QUEUES.media.name, { process: (payload, ctx) => media.processFile(payload, ctx.signal) }) : undefined;
  const consumer = deps.queues.consume(maintenance, {
    housekeeping: async () => {
      const purged = await housekeeping(deps.db, deps.clock.now(), deps.housekeeping, media?.housekeeping);
      if (Object.values(purged).some((n) => n > 0)) log.info(purged, 'housekeeping purged expired records');
      return purged;
    },
  });
  log.info('worker role started');
  return { stop: async () => void (await Promise.all([consumer.close(), fanout.close(), images?.close()])) };
}
