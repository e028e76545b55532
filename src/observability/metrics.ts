import { collectDefaultMetrics, Histogram, Registry } from 'prom-client';

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
  return { registry, httpDuration };
}

export type Metrics = ReturnType<typeof createMetrics>;
