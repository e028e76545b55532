import type { Logger } from 'pino';
import type { Db } from '../db/port.js';
import { purgeEndedSessions } from '../auth/store.js';
import { purgeExpiredIdempotencyKeys } from '../data/idempotency.js';
import type { Clock } from '../lib/clock.js';

// The worker role: background work off the request path. For now, housekeeping: expired
// idempotency records, ended sessions and old used refresh tokens. (Jobs arrive with the queue.)

export async function housekeeping(db: Db, now: Date) {
  return { idempotencyKeys: await purgeExpiredIdempotencyKeys(db, now), sessionsAndTokens: await purgeEndedSessions(db, now) };
}

export function startWorker(deps: { db: Db; clock: Clock; logger: Logger; everyMs?: number }) {
  const log = deps.logger.child({ role: 'worker' });
  let running: Promise<void> | undefined;
  async function purge() {
    const purged = await housekeeping(deps.db, deps.clock.now());
    if (purged.idempotencyKeys + purged.sessionsAndTokens > 0) log.info(purged, 'housekeeping purged expired records');
  }
  const tick = () => {
    running ??= purge()
      .catch((err: Error) => log.warn({ err: err.message }, 'housekeeping failed; will retry'))
      .finally(() => (running = undefined));
  };
  // Jittered, so many workers started together do not all purge at the same moment.
  const everyMs = deps.everyMs ?? 10 * 60_000;
  const first = setTimeout(tick, 5_000 + Math.random() * 10_000);
  const timer = setInterval(tick, everyMs + Math.random() * everyMs * 0.1);
  first.unref();
  timer.unref();
  log.info('worker role started');
  return {
    async stop() {
      clearTimeout(first);
      clearInterval(timer);
      await running;
    },
  };
}
