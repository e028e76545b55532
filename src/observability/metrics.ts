import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { JobQueues } from '../jobs/port.js';

/** One registry per process (never the global one), so tests can build many apps side by side. */
export function createMetrics(roles: string[]) {
  const registry = new Registry();
  registry.setDefaultLabels({ roles: roles.join(',') });
  collectDefaultMetrics({ register: registry });
  const httpDuration = new Histogram({
    name: 'levee_http_request_duration_seconds',
    help: 'HTTP request duration by route and status class',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const admissionRejected = new Counter({
    name: 'levee_admission_rejected_total',
    help: 'Requests shed by admission control (503 overloaded), by priority class and reason',
    labelNames: ['priority', 'reason'] as const,
    registers: [registry],
  });
  /** Exports the admission controller's limit, in-flight and queued counts at each scrape. */
  const watchAdmission = (stats: () => { limit: number; inFlight: number; queued: number }) => {
    for (const [key, help] of [['limit', 'Current adaptive concurrency limit'], ['inFlight', 'Requests running now'], ['queued', 'Requests waiting for admission']] as const) {
      new Gauge({ name: `levee_admission_${key === 'inFlight' ? 'in_flight' : key}`, help, registers: [registry], collect() { this.set(stats()[key]); } });
    }
  };
  /** Exports each queue's depth by state and the age of its oldest waiting job, read at each scrape. */
  const watchQueues = (queues: JobQueues) => {
    const read = async () => Object.fromEntries(await Promise.all([...queues.specs.keys()].map(async (q) => [q, await queues.stats(q).catch(() => undefined)] as const)));
    let pending: ReturnType<typeof read> | undefined;
    // Both gauges are filled from one read per scrape.
    const once = () => (pending ??= read().finally(() => setTimeout(() => (pending = undefined), 0)));
    new Gauge({
      name: 'levee_queue_jobs',
      help: 'Jobs per queue and state (waiting, delayed, active, dead_letter)',
      labelNames: ['queue', 'state'] as const,
      registers: [registry],
      async collect() {
        for (const [queue, s] of Object.entries(await once())) {
          if (!s) continue;
          for (const [state, n] of [['waiting', s.waiting], ['delayed', s.delayed], ['active', s.active], ['dead_letter', s.deadLetters]] as const) this.set({ queue, state }, n);
        }
      },
    });
    new Gauge({
      name: 'levee_queue_oldest_waiting_seconds',
      help: 'Age of the oldest job ready to run and not yet started, per queue',
      labelNames: ['queue'] as const,
      registers: [registry],
      async collect() {
        for (const [queue, s] of Object.entries(await once())) if (s) this.set({ queue }, s.oldestWaitingMs / 1000);
      },
    });
  };
  const realtime = realtimeMetrics(registry);
  return { registry, httpDuration, admissionRejected, watchAdmission, watchQueues, realtime };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** Realtime: connections, refusals, deliveries, slow consumers, and how far behind writes the tailer reads. */
function realtimeMetrics(registry: Registry) {
  const connected = new Gauge({ name: 'levee_realtime_connections', help: 'Open realtime connections by transport (ws, sse)', labelNames: ['transport'] as const, registers: [registry] });
  const refused = new Counter({ name: 'levee_realtime_connections_refused_total', help: 'Realtime connections refused before the upgrade, by reason (rate, max_connections, draining)', labelNames: ['reason'] as const, registers: [registry] });
  const delivered = new Counter({ name: 'levee_realtime_events_delivered_total', help: 'Change events written to realtime connections (live and catch-up)', registers: [registry] });
  const slow = new Counter({ name: 'levee_realtime_slow_consumer_disconnects_total', help: 'Realtime connections closed because their send buffer was over LEVEE_REALTIME_MAX_BUFFERED_BYTES', registers: [registry] });
  const lag = new Histogram({ name: 'levee_realtime_tailer_lag_seconds', help: 'From a change being written to the realtime tailer reading it', buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [registry] });
  const signalDropped = new Counter({ name: 'levee_realtime_signal_dropped_total', help: 'Change signals not published (Redis unavailable); the idle poll covers them', registers: [registry] });
  return {
    connections: (transport: 'ws' | 'sse', delta: number) => connected.inc({ transport }, delta),
    refused: (reason: string) => refused.inc({ reason }),
    delivered: (n: number) => delivered.inc(n),
    slowConsumer: () => slow.inc(),
    tailerLag: (seconds: number) => lag.observe(seconds),
    signalDropped: () => signalDropped.inc(),
  };
}
