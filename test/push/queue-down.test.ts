import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { createPgliteDb, type PgliteDb } from '../../src/db/adapters/pglite.js';
import { migrate } from '../../src/db/migrate.js';
import { openJobQueues } from '../../src/jobs/engines.js';
import type { JobQueues } from '../../src/jobs/port.js';
import { queueSpecs } from '../../src/jobs/queues.js';
import { LeveeError } from '../../src/lib/errors.js';
import { RequestDeadline, runWithDeadline } from '../../src/protection/deadline.js';
import { createPushService } from '../../src/push/service.js';

// A job queue engine that does not answer (Redis accepting connections and saying nothing) must
// not hang a request: POST /v1/push's enqueue is bounded by the request's deadline, and the push it
// could not hand over is removed again — nothing half-written.

describe('sending a push while the job queue does not answer', () => {
  let db: PgliteDb;
  let queues: JobQueues;
  const silent = createServer((socket) => socket.on('error', () => {})); // accepts, never replies
  before(async () => {
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    db = await createPgliteDb();
    await migrate(db);
    const port = (silent.address() as { port: number }).port;
    queues = await openJobQueues({ kind: 'redis', url: `redis://127.0.0.1:${port}`, keyPrefix: 'levee-test:' }, queueSpecs(), new Registry());
  });
  after(async () => {
    await Promise.race([queues.close(), new Promise((r) => setTimeout(r, 1000))]);
    await db.close();
    silent.close();
  });

  it('fails within the deadline and leaves no push behind', async () => {
    const push = createPushService({ db, clock: { now: () => new Date() }, queues, topics: [] });
    const deadline = new RequestDeadline(performance.now() + 300);
    const t0 = performance.now();
    const failure = await runWithDeadline(deadline, () => push.send({ audience: { all: true }, body: 'x' }, 'test')).catch((e: unknown) => e);
    const took = performance.now() - t0;
    deadline.dispose();
    assert.ok(failure instanceof LeveeError && failure.code === 'timeout', String(failure));
    assert.ok(took < 1000, `took ${took.toFixed(0)} ms`);
    assert.equal((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM pushes')).rows[0]!.n, 0);
  });
});
