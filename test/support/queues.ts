import { Registry } from 'prom-client';
import { createPgliteDb } from '../../src/db/adapters/pglite.js';
import { openJobQueues, type QueueEngineChoice } from '../../src/jobs/engines.js';
import type { JobQueues, QueueSpec } from '../../src/jobs/port.js';
import { createPostgresDatabase, postgresReachable, CI, POSTGRES_ADMIN_URL } from './engines.js';
import { deletePrefix, REDIS_TEST_URL, redisSkip, uniquePrefix } from './redis.js';

// The job queue's engines for contract suites: PGlite in this process, a fresh PostgreSQL
// database, and Redis under a key prefix of its own. Each `open` gives a clean engine.

export interface QueueEngine {
  name: 'pglite' | 'postgres' | 'redis';
  skip: string | false;
  open(specs: QueueSpec[], registry?: Registry): Promise<{ queues: JobQueues; registry: Registry; choice: QueueEngineChoice; teardown(): Promise<void> }>;
}

export const spec = (name: string, over: Partial<QueueSpec> = {}): QueueSpec => ({
  name,
  concurrency: 4,
  maxSize: 1000,
  attempts: 1,
  backoffMs: 50,
  deadlineMs: 5000,
  keepDeadLetters: 100,
  ...over,
});

export async function queueEngines(): Promise<QueueEngine[]> {
  const pgUp = await postgresReachable();
  if (!pgUp && CI) throw new Error(`LEVEE_CI is set but PostgreSQL is not reachable at ${POSTGRES_ADMIN_URL}`);
  const redisSkipped = await redisSkip();
  return [
    {
      name: 'pglite',
      skip: false,
      async open(specs, registry = new Registry()) {
        const db = await createPgliteDb();
        const choice: QueueEngineChoice = { kind: 'pglite', session: db.session };
        const queues = await openJobQueues(choice, specs, registry);
        return { queues, registry, choice, teardown: async () => (await queues.close(), await db.close()) };
      },
    },
    {
      name: 'postgres',
      skip: pgUp ? false : `PostgreSQL not reachable at ${POSTGRES_ADMIN_URL}`,
      async open(specs, registry = new Registry()) {
        const { url, drop } = await createPostgresDatabase();
        const choice: QueueEngineChoice = { kind: 'postgres', url, poolSize: 6 };
        const queues = await openJobQueues(choice, specs, registry);
        return { queues, registry, choice, teardown: async () => (await queues.close(), await drop()) };
      },
    },
    {
      name: 'redis',
      skip: redisSkipped,
      async open(specs, registry = new Registry()) {
        const keyPrefix = uniquePrefix();
        const choice: QueueEngineChoice = { kind: 'redis', url: REDIS_TEST_URL, keyPrefix };
        const queues = await openJobQueues(choice, specs, registry);
        return { queues, registry, choice, teardown: async () => (await queues.close(), await deletePrefix(keyPrefix)) };
      },
    },
  ];
}
