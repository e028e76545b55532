import type { Logger } from 'pino';
import type { Db } from '../db/port.js';
import { purgeExpiredIdempotencyKeys } from '../data/idempotency.js';
import type { Clock } from '../lib/clock.js';

// The worker role: background work off the request path. For now, housekeeping: expired
// idempotency records and refresh tokens of sessions that ended. (Jobs arrive with the queue.)

export function startWorker(deps: { db: Db; clock: Clock; logger: Logger; everyMs?: number }) {
  const log = deps.logger.child({ role: 'worker' });
  let running: Promise<void> | undefined;
  async function housekeeping() {
    const now = deps.clock.now();
    const keys = await purgeExpiredIdempotencyKeys(deps.db, now);
    const tokens = (await deps.db.query(
      `DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM sessions WHERE revoked_at < $1 OR expires_at < $1)`,
      [new Date(now.getTime() - 86_400_000)],
    )).rowCount;
    if (keys + tokens > 0) log.info({ idempotencyKeys: keys, refreshTokens: tokens }, 'housekeeping purged expired records');
  }
  const tick = () => {
    running ??= housekeeping()
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
