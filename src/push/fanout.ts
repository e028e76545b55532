import type { Db } from '../db/port.js';
import type { JobHandler, JobQueues } from '../jobs/port.js';
import { QUEUES } from '../jobs/queues.js';
import type { Clock } from '../lib/clock.js';
import type { Platform } from './providers/port.js';
import { pushStore } from './store.js';

// The fan-out job: walks a push's audience in device-id order, a batch at a time (never the whole
// audience in memory), gives each device a pending delivery (the dedupe key), and hands the pending
// deliveries to the send queue in provider batches.
//
// Crash-safe by construction: the audience cursor moves in the same statement that creates the
// deliveries; the hand-off then pages through *pending* deliveries from the start, so a re-run
// re-offers whatever was not yet claimed (send-batch job ids repeat, and a delivery is claimed
// before it is sent, so nothing goes out twice) and then carries on from the cursor.

export interface SendBatch {
  pushId: string;
  platform: Platform;
  deviceIds: string[];
}

export function fanoutHandler(deps: { db: Db; clock: Clock; queues: JobQueues; audienceBatch?: number; providerBatch?: number }): JobHandler {
  const audienceBatch = deps.audienceBatch ?? 1_000;
  const providerBatch = deps.providerBatch ?? 500;
  return async (payload) => {
    const { pushId } = payload as { pushId: string };
    const push = await pushStore.byId(deps.db, pushId);
    if (!push || push.state === 'done') return { skipped: true };
    let handedOff: string | null = null;
    let batches = 0;
    for (;;) {
      const pending = await pushStore.pendingAfter(deps.db, pushId, handedOff, audienceBatch);
      if (pending.length > 0) {
        const byPlatform = new Map<Platform, string[]>();
        for (const d of pending) {
          const ids = byPlatform.get(d.platform);
          if (ids) ids.push(d.device_id);
          else byPlatform.set(d.platform, [d.device_id]);
        }
        const jobs = [...byPlatform].flatMap(([platform, ids]) =>
          chunks(ids, providerBatch).map((deviceIds) => ({ name: 'send', payload: { pushId, platform, deviceIds } satisfies SendBatch, opts: { jobId: `${pushId}.${platform}.${deviceIds[0]}` } })),
        );
        await deps.queues.enqueueMany(QUEUES.pushSend.name, jobs);
        batches += jobs.length;
        handedOff = pending.at(-1)!.device_id;
        if (pending.length === audienceBatch) continue;
      }
      // Everything targeted so far is handed off: target the next part of the audience, if any.
      const last = await pushStore.extendAudience(deps.db, push, audienceBatch, deps.clock.now());
      if (last === undefined) {
        await pushStore.fanoutDone(deps.db, pushId, deps.clock.now());
        return { batches };
      }
    }
  };
}

const chunks = <T>(xs: T[], n: number): T[][] => Array.from({ length: Math.ceil(xs.length / n) }, (_, i) => xs.slice(i * n, i * n + n));
