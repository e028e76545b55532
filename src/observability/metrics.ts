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
  return { registry, httpDuration, admissionRejected, watchAdmission, watchQueues };
}

export type Metrics = ReturnType<typeof createMetrics>;
