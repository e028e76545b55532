import type { Logger } from 'pino';

// The push role: notification delivery (APNs, FCM, Web Push). It has its own process slot,
// pools and limits from day one; the providers arrive with the push pipeline.
export function startPush(deps: { logger: Logger }) {
  deps.logger.child({ role: 'push' }).info('push role started (no providers configured yet)');
  return { stop: async () => {} };
}
