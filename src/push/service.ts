import type { Db } from '../db/port.js';
import type { JobQueues } from '../jobs/port.js';
import { QUEUES } from '../jobs/queues.js';
import type { Clock } from '../lib/clock.js';
import { LeveeError } from '../lib/errors.js';
import { withOwnBudget } from '../protection/deadline.js';
import { newId } from '../lib/ids.js';
import type { PushMessage } from './providers/port.js';
import { pushStore, type Audience, type PushRow } from './store.js';

// Sending a push: validate, store it, and hand the fan-out to the queue — the API answers 202 at
// once, whatever the audience's size. Progress is read back from the push's counters.

export interface SendPush {
  audience: Audience;
  title?: string | undefined;
  body?: string | undefined;
  data?: Record<string, string> | undefined;
  collapseId?: string | undefined;
  /** Seconds the providers may keep trying to deliver it; default 1 day. */
  ttlSeconds?: number | undefined;
  priority?: 'high' | 'normal' | undefined;
  /** When to send; default now. */
  sendAt?: Date | undefined;
}

export interface PushProgress {
  id: string;
  state: PushRow['state'];
  targeted: number;
  sent: number;
  failed: number;
  pruned: number;
  pending: number;
  createdAt: string;
  sendAt: string;
  expiresAt: string | null;
}

/** The smallest limit among the providers (APNs and FCM: 4 KB); checked on an APNs-shaped payload, the largest of the three. */
export const MAX_PAYLOAD_BYTES = 4096;
const MAX_SCHEDULE_AHEAD_MS = 30 * 86_400_000;
const DEFAULT_TTL_SECONDS = 86_400;

export function messageBytes(m: Omit<PushMessage, 'expiresAt'>): number {
  return Buffer.byteLength(JSON.stringify({ aps: { alert: { title: m.title, body: m.body }, badge: m.badge, sound: m.sound }, ...m.data }));
}

export const toProgress = (p: PushRow): PushProgress => ({
  id: p.id,
  state: p.state,
  targeted: p.targeted,
  sent: p.sent,
  failed: p.failed,
  pruned: p.pruned,
  pending: Math.max(0, p.targeted - p.sent - p.failed - p.pruned),
  createdAt: p.created_at.toISOString(),
  sendAt: p.send_at.toISOString(),
  expiresAt: p.expires_at?.toISOString() ?? null,
});

export function createPushService(deps: { db: Db; clock: Clock; queues: JobQueues; topics: readonly string[] }) {
  return {
    async send(input: SendPush, createdBy: string): Promise<PushProgress> {
      const kinds = ['userIds', 'topics', 'all'].filter((k) => k in input.audience);
      if (kinds.length !== 1) throw new LeveeError('invalid_push', 'audience must have exactly one of userIds, topics or all');
      if ('topics' in input.audience) {
        const unknown = input.audience.topics.filter((t) => !deps.topics.includes(t));
        if (unknown.length) throw new LeveeError('unknown_topic', `Unknown topic${unknown.length > 1 ? 's' : ''}: ${unknown.join(', ')}`);
      }
      if (!input.title && !input.body && !input.data) throw new LeveeError('invalid_push', 'A push needs a title, a body or data');
      const now = deps.clock.now();
      const sendAt = input.sendAt ?? now;
      if (sendAt.getTime() - now.getTime() > MAX_SCHEDULE_AHEAD_MS) throw new LeveeError('invalid_push', 'sendAt may be at most 30 days ahead');
      const message: Omit<PushMessage, 'expiresAt'> = {
        ...(input.title !== undefined ? { title: input.title } : {}),
        ...(input.body !== undefined ? { body: input.body } : {}),
        ...(input.data !== undefined ? { data: input.data } : {}),
        ...(input.collapseId !== undefined ? { collapseId: input.collapseId } : {}),
        priority: input.priority ?? 'high',
      };
      const bytes = messageBytes(message);
      if (bytes > MAX_PAYLOAD_BYTES) throw new LeveeError('payload_too_large_for_provider', `The notification is ${bytes} bytes; providers accept ${MAX_PAYLOAD_BYTES}`);
      const start = sendAt.getTime() > now.getTime() ? sendAt : now;
      const expiresAt = new Date(start.getTime() + (input.ttlSeconds ?? DEFAULT_TTL_SECONDS) * 1000);
      const id = newId();
      const row = await pushStore.insert(deps.db, { id, createdBy, audience: input.audience, message, sendAt, expiresAt, now });
      // The fan-out job's id is the push's. If it cannot be enqueued (the queue is full, down or
      // slower than the request's deadline) the push is removed again and the caller gets the
      // error: nothing half-written, and a retry cannot leave a second push behind.
      try {
        await deps.queues.enqueue(QUEUES.pushFanout.name, 'fanout', { pushId: id }, { jobId: id, runAt: sendAt });
      } catch (e) {
        await withOwnBudget(2_000, () => pushStore.remove(deps.db, id)).catch(() => {});
        throw e;
      }
      return toProgress(row);
    },

    async progress(id: string): Promise<PushProgress> {
      const p = await pushStore.byId(deps.db, id);
      if (!p) throw new LeveeError('push_not_found');
      return toProgress(p);
    },
  };
}

export type PushService = ReturnType<typeof createPushService>;
