import { randomUUID } from 'node:crypto';
import { Counter, Histogram, type Registry } from 'prom-client';
import type { Db } from '../db/port.js';
import type { JobHandler, JobQueues } from '../jobs/port.js';
import { QUEUES } from '../jobs/queues.js';
import type { Clock } from '../lib/clock.js';
import type { SendBatch } from './fanout.js';
import type { Platform, PushMessage, PushProvider, PushTarget, SendResult } from './providers/port.js';
import { deliveryStore, pushStore, type ClaimedDelivery, type PushRow } from './store.js';

// The send job (push role): one provider batch of one push. Deliveries are claimed before any
// provider call, so a re-run or a duplicate job never sends a device the same push twice; what the
// provider says is recorded with the push's counters; devices the provider disowns are pruned; what
// may be retried goes back to the queue as a follow-up batch, delayed by backoff or Retry-After,
// until the push expires or the delivery has used its attempts.

export interface SenderOptions {
  db: Db;
  clock: Clock;
  queues: JobQueues;
  providers: Partial<Record<Platform, PushProvider>>;
  registry: Registry;
  /** Sends in flight per batch (the provider's own bulkhead bounds the process). */
  concurrency?: number;
  maxAttempts?: number;
}

export function sendHandler(o: SenderOptions): JobHandler {
  const m = pushMetrics(o.registry);
  const maxAttempts = o.maxAttempts ?? 5;
  const cache = new Map<string, PushRow>(); // pushes are immutable once created (apart from counters)
  const pushOf = async (id: string) => {
    let p = cache.get(id);
    if (!p) {
      p = await pushStore.byId(o.db, id);
      if (p) {
        if (cache.size >= 1_000) cache.delete(cache.keys().next().value!);
        cache.set(id, p);
      }
    }
    return p;
  };

  return async (payload, ctx) => {
    const batch = payload as SendBatch;
    const push = await pushOf(batch.pushId);
    if (!push) return { skipped: 'push deleted' };
    const now = o.clock.now();
    const provider = o.providers[batch.platform];
    const expired = push.expires_at !== null && push.expires_at <= now;
    // The provider's circuit is open: the whole batch waits, without touching the database (a
    // provider outage must not become a storm of claims and retries next to the API).
    const wait = !expired ? provider?.unavailableFor?.() : undefined;
    if (wait !== undefined) {
      // A fresh job id each time: the deliveries' claim, not the id, keeps this from sending twice.
      await o.queues.enqueue(QUEUES.pushSend.name, 'send', batch, { jobId: `${push.id}.${batch.platform}.${batch.deviceIds[0]}.w${randomUUID()}`, delayMs: wait });
      return { waiting: batch.deviceIds.length };
    }
    const { claimed } = await deliveryStore.claim(o.db, push.id, batch.deviceIds, now);
    if (claimed.length === 0) return { claimed: 0 };
    if (!provider || expired) {
      const reason = expired ? 'expired before it could be sent' : `no ${batch.platform} provider is configured`;
      await deliveryStore.record(o.db, push.id, { sent: [], failed: claimed.map((d) => ({ id: d.device_id, reason })), pruned: [], retry: [] }, now);
      m.outcomes.inc({ provider: batch.platform, outcome: 'failed' }, claimed.length);
      return { failed: claimed.length };
    }

    const message: PushMessage = { ...push.message, ...(push.expires_at ? { expiresAt: push.expires_at } : {}) };
    const processing = m.processing.labels(batch.platform); // bound once: no label lookup per send
    const dueAt = Math.max(push.send_at.getTime(), push.created_at.getTime());
    const results = await mapLimit(claimed, o.concurrency ?? 50, async (d) => {
      const r = await provider.send(targetOf(batch.platform, d), message, ctx.signal).catch((e: unknown): SendResult => ({ outcome: 'retry', reason: String(e) }));
      if (r.outcome === 'sent') processing.observe((Date.now() - dueAt) / 1000);
      return r;
    });

    const sent: string[] = [];
    const failed: { id: string; reason: string }[] = [];
    const pruned: { id: string; reason: string }[] = [];
    const retry: ClaimedDelivery[] = [];
    let retryAfterMs = 0;
    results.forEach((r, i) => {
      const d = claimed[i]!;
      if (r.outcome === 'sent') sent.push(d.device_id);
      else if (r.outcome === 'invalid_token') pruned.push({ id: d.device_id, reason: r.reason });
      else if (r.outcome === 'rejected') failed.push({ id: d.device_id, reason: r.reason });
      else if (d.attempts >= maxAttempts) failed.push({ id: d.device_id, reason: `gave up after ${d.attempts} attempts: ${r.reason}` });
      else {
        retry.push(d);
        retryAfterMs = Math.max(retryAfterMs, r.retryAfterMs ?? 0);
      }
    });
    await deliveryStore.record(o.db, push.id, { sent, failed, pruned, retry: retry.map((d) => d.device_id) }, o.clock.now());
    for (const [outcome, n] of [['sent', sent.length], ['failed', failed.length], ['pruned', pruned.length], ['retry', retry.length]] as const) if (n) m.outcomes.inc({ provider: batch.platform, outcome }, n);

    if (retry.length) {
      const attempt = Math.max(...retry.map((d) => d.attempts));
      // Exponential from 1 s with full jitter, never sooner than the provider asked.
      const delayMs = Math.max(retryAfterMs, Math.random() * 1_000 * 2 ** attempt);
      const ids = retry.map((d) => d.device_id);
      await o.queues.enqueue(QUEUES.pushSend.name, 'send', { pushId: push.id, platform: batch.platform, deviceIds: ids } satisfies SendBatch, { jobId: `${push.id}.${batch.platform}.${ids[0]}.a${attempt}`, delayMs });
    }
    return { sent: sent.length, failed: failed.length, pruned: pruned.length, retry: retry.length };
  };
}

function targetOf(platform: Platform, d: ClaimedDelivery): PushTarget {
  if (platform === 'webpush') return { platform, subscription: { endpoint: d.token, keys: d.webpush_keys! } };
  return { platform, token: d.token };
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return out;
}

function pushMetrics(registry: Registry) {
  const get = <T>(name: string, make: () => T): T => (registry.getSingleMetric(name) as T | undefined) ?? make();
  return {
    processing: get('levee_push_processing_seconds', () => new Histogram({ name: 'levee_push_processing_seconds', help: 'Push processing time per notification: from the push being due (created or its send time) to the provider accepting it', labelNames: ['provider'] as const, buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300], registers: [registry] })),
    outcomes: get('levee_push_notifications_total', () => new Counter({ name: 'levee_push_notifications_total', help: 'Notifications by provider and outcome (sent, failed, pruned, retry)', labelNames: ['provider', 'outcome'] as const, registers: [registry] })),
  };
}
