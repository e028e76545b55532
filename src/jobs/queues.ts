import { MEDIA_QUEUE } from '../files/process-job.js';
import type { QueueSpec } from './port.js';

// Every queue Levee uses, declared with its bounds. A queue's consumers live in one role (the
// worker role for maintenance, later the push role for delivery); any role may enqueue.

export const QUEUES = {
  /** Housekeeping and other periodic upkeep: one at a time, never urgent. */
  maintenance: { name: 'maintenance', concurrency: 1, maxSize: 1_000, attempts: 3, backoffMs: 30_000, deadlineMs: 5 * 60_000, keepDeadLetters: 1_000 },
  /** One job per push: walks the audience and enqueues provider batches. Resumable (a cursor). */
  pushFanout: { name: 'push-fanout', concurrency: 2, maxSize: 10_000, attempts: 10, backoffMs: 2_000, deadlineMs: 10 * 60_000, keepDeadLetters: 1_000 },
  /** One job per provider batch of devices (the push role consumes it). */
  pushSend: { name: 'push-send', concurrency: 8, maxSize: 500_000, attempts: 8, backoffMs: 1_000, deadlineMs: 120_000, keepDeadLetters: 10_000 },
  /** One job per uploaded image: its variants (the worker role consumes it). */
  media: MEDIA_QUEUE,
} as const satisfies Record<string, QueueSpec>;

export type QueueName = keyof typeof QUEUES;

export const queueSpecs = (): QueueSpec[] => Object.values(QUEUES);
