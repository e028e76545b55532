import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

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
  return { registry, httpDuration, admissionRejected, watchAdmission };
}

export type Metrics = ReturnType<typeof createMetrics>;
