import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Db } from '../db/port.js';
import type { JobQueues } from '../jobs/port.js';
import { QUEUES } from '../jobs/queues.js';
import type { Clock } from '../lib/clock.js';
import type { Platform, PushProvider } from '../push/providers/port.js';
import { sendHandler } from '../push/sender.js';

// The push role: notification delivery. It consumes the send queue (a batch goes to APNs, FCM or
// Web Push) with its own provider connections, limits and database pool. The fan-out that fills
// that queue runs in the worker role; the API only enqueues.

export function startPush(deps: { db: Db; clock: Clock; logger: Logger; queues: JobQueues; registry: Registry; providers: Partial<Record<Platform, PushProvider>> }) {
  const log = deps.logger.child({ role: 'push' });
  const send = deps.queues.consume(QUEUES.pushSend.name, { send: sendHandler(deps) });
  const configured = Object.keys(deps.providers);
  log.info({ providers: configured }, configured.length ? 'push role started' : 'push role started (no providers configured: pushes fail as undeliverable)');
  return {
    async stop() {
      await send.close();
      await Promise.all(Object.values(deps.providers).map((p) => p.close()));
    },
  };
}
