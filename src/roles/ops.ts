import type { Db } from '../db/port.js';
import { migrationsApplied } from '../db/migrate.js';
import type { Metrics } from '../observability/metrics.js';

// /healthz, /readyz and /metrics, independent of any HTTP framework: the api role mounts them on
// Fastify, worker- or push-only processes serve them from a bare node:http server.

export interface Lifecycle {
  draining: boolean;
}

export interface OpsResponse {
  status: number;
  contentType: string;
  body: string;
}

const json = (status: number, body: unknown): OpsResponse => ({ status, contentType: 'application/json', body: JSON.stringify(body) });

export function createOps(deps: { db: Db; metrics: Metrics; lifecycle: Lifecycle; roles: string[] }) {
  let migrated = false;
  const withTimeout = async <T>(p: Promise<T>, ms: number): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms)))]);
    } finally {
      clearTimeout(timer);
    }
  };

  return {
    /** True from the moment shutdown starts. */
    draining: (): boolean => deps.lifecycle.draining,

    healthz: async (): Promise<OpsResponse> => json(200, { status: 'ok', roles: deps.roles }),

    async readyz(): Promise<OpsResponse> {
      const checks: Record<string, string> = {};
      checks.draining = deps.lifecycle.draining ? 'draining' : 'ok';
      try {
        await withTimeout(deps.db.ping(), 1000);
        checks.database = 'ok';
        migrated ||= await withTimeout(migrationsApplied(deps.db), 1000);
        checks.migrations = migrated ? 'ok' : 'pending';
      } catch (e) {
        checks.database = `unreachable: ${(e as Error).message}`;
      }
      const ready = Object.values(checks).every((v) => v === 'ok');
      return json(ready ? 200 : 503, { status: ready ? 'ready' : 'not_ready', checks });
    },

    async metrics(): Promise<OpsResponse> {
      return { status: 200, contentType: deps.metrics.registry.contentType, body: await deps.metrics.registry.metrics() };
    },
  };
}

export type Ops = ReturnType<typeof createOps>;
