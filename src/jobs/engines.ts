import { createPostgresBackend, runMigrations } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { Registry } from 'prom-client';
import type { PgliteSession } from '../db/adapters/pglite.js';
import { createBullmqQueues, type BullmqEngine } from './bullmq.js';
import { pglitePool } from './pglite-pool.js';
import type { JobQueues, QueueSpec } from './port.js';

// Where jobs live, by configuration only (DESIGN.md): Redis when there is one for them, else the
// database Levee already uses — PostgreSQL, or PGlite in this process. BullMQ is the queue on all
// three; its PostgreSQL tables live in their own schema (`bullmq`), created on first use.

export const JOBS_SCHEMA = 'bullmq';

export type QueueEngineChoice =
  | { kind: 'redis'; url: string; keyPrefix: string }
  | { kind: 'postgres'; url: string; poolSize: number }
  | { kind: 'pglite'; session: PgliteSession };

export async function openJobQueues(choice: QueueEngineChoice, specs: QueueSpec[], registry: Registry): Promise<JobQueues> {
  return createBullmqQueues(await openEngine(choice), specs, registry);
}

async function openEngine(choice: QueueEngineChoice): Promise<BullmqEngine> {
  switch (choice.kind) {
    case 'redis': {
      // BullMQ's workers block on Redis: they need ioredis to retry forever rather than fail a
      // command. Not awaited: Levee starts while Redis is down, and calls made from a request are
      // bounded by its deadline (bullmq.ts).
      const client = new Redis(choice.url, { maxRetriesPerRequest: null });
      client.on('error', () => {}); // reconnects on its own; calls surface the failure
      return { name: 'redis', connection: client, backend: undefined, prefix: `${choice.keyPrefix}jobs`, close: async () => void client.disconnect() };
    }
    case 'postgres': {
      // A pool of its own, apart from the request pool: a backlog of jobs never takes a connection
      // a request needs. Every connection works in the jobs schema.
      const pool = new pg.Pool({ connectionString: choice.url, max: choice.poolSize, options: `-c search_path=${JOBS_SCHEMA}`, keepAlive: true });
      pool.on('error', () => {}); // an idle connection dropped: the pool replaces it
      try {
        await runMigrations(pool, JOBS_SCHEMA);
      } catch (e) {
        await pool.end();
        throw e;
      }
      return { name: 'postgres', connection: pool, backend: createPostgresBackend as never, close: () => pool.end() };
    }
    case 'pglite': {
      const pool = pglitePool(choice.session, JOBS_SCHEMA);
      const client = await pool.connect();
      try {
        await runMigrations(client, JOBS_SCHEMA);
      } finally {
        client.release();
      }
      // In one process a missed wake-up costs at most a second: PGlite delivers NOTIFY only between
      // statements of its single session, so an idle worker also polls once a second.
      return { name: 'pglite', connection: pool, backend: createPostgresBackend as never, drainDelaySeconds: 1, close: () => pool.end() };
    }
  }
}
