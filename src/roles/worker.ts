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

export async function housekeeping(db: Db, now: Date, opts: HousekeepingOptions = { tombstoneDays: 30 }) {
  return {
    idempotencyKeys: await purgeExpiredIdempotencyKeys(db, now),
    sessionsAndTokens: await purgeEndedSessions(db, now),
    stuckPushDeliveries: await deliveryStore.settleStuck(db, now),
    tombstones: await changeLog.pruneTombstones(db, new Date(now.getTime() - opts.tombstoneDays * DAY_MS)),
    // Offline mutation answers are kept as long as tombstones: a client offline for longer resyncs.
    syncMutations: await mutationLog.purgeBefore(db, new Date(now.getTime() - opts.tombstoneDays * DAY_MS)),
  };
}

export const HOUSEKEEPING_EVERY_MS = 10 * 60_000;

export async function startWorker(deps: { db: Db; clock: Clock; logger: Logger; queues: JobQueues; housekeepingEveryMs?: number; housekeeping?: HousekeepingOptions }) {
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
  const consumer = deps.queues.consume(maintenance, {
    housekeeping: async () => {
      const purged = await housekeeping(deps.db, deps.clock.now(), deps.housekeeping);
      if (Object.values(purged).some((n) => n > 0)) log.info(purged, 'housekeeping purged expired records');
      return purged;
    },
  });
  log.info('worker role started');
  return { stop: async () => void (await Promise.all([consumer.close(), fanout.close()])) };
}
