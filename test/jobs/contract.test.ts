import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { JobContext, JobQueues } from '../../src/jobs/port.js';
import { LeveeError } from '../../src/lib/errors.js';
import { queueEngines, spec } from '../support/queues.js';

// The job queue's contract, on every engine: PGlite in-process, PostgreSQL and Redis.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it holds (bounded); fails with `what` otherwise. */
async function eventually(what: string, check: () => boolean | Promise<boolean>, withinMs = 5000) {
  const until = Date.now() + withinMs;
  while (Date.now() < until) {
    if (await check()) return;
    await sleep(20);
  }
  assert.fail(`not within ${withinMs} ms: ${what}`);
}

for (const engine of await queueEngines()) {
  describe(`job queue contract on ${engine.name}`, { skip: engine.skip }, () => {
    let q: JobQueues;
    let metrics: () => Promise<string>;
    let teardown: () => Promise<void>;
    before(async () => {
      const opened = await engine.open([
        spec('basic'),
        spec('ordered', { concurrency: 1 }),
        spec('retrying', { attempts: 3, backoffMs: 100 }),
        spec('bounded', { maxSize: 3 }),
        spec('timed', { deadlineMs: 150 }),
        spec('recurring'),
        spec('parallel', { concurrency: 2 }),
      ]);
      q = opened.queues;
      metrics = () => opened.registry.metrics();
      teardown = opened.teardown;
    });
    after(() => teardown());

    it('delivers a named job with its JSON payload once, to the handler for its name', async () => {
      const seen: { payload: unknown; ctx: JobContext }[] = [];
      const consumer = q.consume('basic', { greet: async (payload, ctx) => void seen.push({ payload, ctx }) });
      try {
        const payload = { to: 'ada', n: 3, nested: { list: [1, 'two', null], ok: true } };
        const id = await q.enqueue('basic', 'greet', payload);
        await eventually('the job ran', () => seen.length === 1);
        await sleep(200);
        assert.equal(seen.length, 1);
        assert.deepEqual(seen[0]!.payload, payload);
        assert.deepEqual([seen[0]!.ctx.id, seen[0]!.ctx.name, seen[0]!.ctx.queue, seen[0]!.ctx.attempt], [id, 'greet', 'basic', 1]);
      } finally {
        await consumer.close();
      }
    });

    it('a job id dedupes: the same id enqueued twice runs once', async () => {
      let runs = 0;
      const consumer = q.consume('basic', { once: async () => void runs++ });
      try {
        const a = await q.enqueue('basic', 'once', {}, { jobId: 'push-1.device-9' });
        const b = await q.enqueue('basic', 'once', {}, { jobId: 'push-1.device-9' });
        assert.equal(a, b);
        await eventually('the job ran', () => runs === 1);
        await sleep(300);
        assert.equal(runs, 1);
      } finally {
        await consumer.close();
      }
    });

    it('runs higher-priority jobs first (1 before 5 before 10), and waits out a delay or a run-at time', async () => {
      for (const [n, priority] of [['low', 10], ['high', 1], ['mid', 5]] as const) await q.enqueue('ordered', n, {}, { priority });
      const delayed = Date.now();
      await q.enqueue('ordered', 'later', {}, { delayMs: 400 });
      await q.enqueue('ordered', 'at', {}, { runAt: new Date(delayed + 600) });
      const stats = await q.stats('ordered');
      assert.deepEqual([stats.waiting, stats.delayed, stats.active], [3, 2, 0]);
      const order: string[] = [];
      const ranAt: Record<string, number> = {};
      const record = (name: string) => async () => {
        order.push(name);
        ranAt[name] = Date.now();
      };
      const consumer = q.consume('ordered', { low: record('low'), high: record('high'), mid: record('mid'), later: record('later'), at: record('at') });
      try {
        await eventually('all five ran', () => order.length === 5);
        assert.deepEqual(order, ['high', 'mid', 'low', 'later', 'at']);
        assert.ok(ranAt.later! - delayed >= 400, `the delayed job ran after ${ranAt.later! - delayed} ms`);
        assert.ok(ranAt.at! - delayed >= 600, `the job scheduled for +600 ms ran after ${ranAt.at! - delayed} ms`);
      } finally {
        await consumer.close();
      }
    });

    it('retries with growing, jittered backoff, then dead-letters the job; a re-drive runs it again', async () => {
      const attempts: { at: number; attempt: number }[] = [];
      let healed = false;
      const consumer = q.consume('retrying', {
        flaky: async (_p, ctx) => {
          attempts.push({ at: Date.now(), attempt: ctx.attempt });
          if (!healed) throw new Error('provider said no');
        },
      });
      try {
        const id = await q.enqueue('retrying', 'flaky', { token: 'abc' });
        await eventually('three attempts', () => attempts.length === 3);
        assert.deepEqual(attempts.map((a) => a.attempt), [1, 2, 3]);
        // Exponential from 100 ms with ±50 % jitter: ≥ 50 ms, then ≥ 100 ms.
        assert.ok(attempts[1]!.at - attempts[0]!.at >= 50, `first retry after ${attempts[1]!.at - attempts[0]!.at} ms`);
        assert.ok(attempts[2]!.at - attempts[1]!.at >= 100, `second retry after ${attempts[2]!.at - attempts[1]!.at} ms`);
        await eventually('dead-lettered', async () => (await q.deadLetters('retrying')).some((d) => d.id === id));
        const [dead] = await q.deadLetters('retrying');
        assert.deepEqual([dead!.id, dead!.name, dead!.payload, dead!.attempts, dead!.reason], [id, 'flaky', { token: 'abc' }, 3, 'provider said no']);
        assert.equal((await q.stats('retrying')).deadLetters, 1);

        healed = true;
        assert.equal(await q.redrive('retrying', id), true);
        await eventually('ran again after the re-drive', () => attempts.length === 4);
        assert.equal(attempts[3]!.attempt, 1, 'a re-driven job starts with fresh attempts');
        await eventually('no longer a dead letter', async () => (await q.deadLetters('retrying')).length === 0);
        assert.equal(await q.redrive('retrying', id), false, 'nothing left to re-drive');
        assert.equal(await q.redrive('retrying', 'no-such-job'), false);
      } finally {
        await consumer.close();
      }
    });

    it('a job with no handler for its name is dead-lettered at once, without retries', async () => {
      let ran = 0;
      const consumer = q.consume('retrying', { known: async () => void ran++ });
      try {
        const id = await q.enqueue('retrying', 'unknown-name', {});
        await eventually('dead-lettered', async () => (await q.deadLetters('retrying')).some((d) => d.id === id));
        const dead = (await q.deadLetters('retrying')).find((d) => d.id === id)!;
        assert.equal(dead.attempts, 1);
        assert.match(dead.reason, /no handler/);
        assert.equal(ran, 0);
      } finally {
        await consumer.close();
      }
    });

    it('a full queue refuses at once with queue_full (counted), and adds nothing', async () => {
      for (let i = 0; i < 3; i++) await q.enqueue('bounded', 'j', { i });
      const t0 = performance.now();
      const refused = await q.enqueue('bounded', 'j', { i: 3 }).catch((e: unknown) => e);
      assert.ok(refused instanceof LeveeError && refused.code === 'queue_full', String(refused));
      assert.equal(refused.status, 503);
      assert.ok(performance.now() - t0 < 1000);
      await assert.rejects(q.enqueueMany('bounded', [{ name: 'j', payload: {} }]), (e: LeveeError) => e.code === 'queue_full');
      assert.equal((await q.stats('bounded')).waiting, 3);
      assert.match(await metrics(), /levee_jobs_rejected_total\{queue="bounded"\} 2/);
      // Once consumed, there is room again.
      const consumer = q.consume('bounded', { j: async () => {} });
      try {
        await eventually('drained', async () => (await q.stats('bounded')).waiting === 0);
        assert.equal((await q.enqueueMany('bounded', [{ name: 'j', payload: {} }, { name: 'j', payload: {} }])).length, 2);
      } finally {
        await consumer.close();
      }
    });

    it('an attempt past its deadline fails (its signal aborted) and counts as a failure', async () => {
      let aborted = false;
      const consumer = q.consume('timed', {
        hang: (_p, ctx) =>
          new Promise((_, reject) => {
            ctx.signal.addEventListener('abort', () => {
              aborted = true;
              reject(new Error('stopped'));
            });
          }),
      });
      try {
        const id = await q.enqueue('timed', 'hang', {});
        await eventually('dead-lettered', async () => (await q.deadLetters('timed')).some((d) => d.id === id), 4000);
        const dead = (await q.deadLetters('timed')).find((d) => d.id === id)!;
        assert.match(dead.reason, /deadline/);
        assert.ok(aborted, 'the handler saw its signal aborted');
        assert.match(await metrics(), /levee_jobs_processed_total\{queue="timed",outcome="deadline"\} 1/);
      } finally {
        await consumer.close();
      }
    });

    it('recurring jobs: an interval and a cron expression fire repeatedly until unscheduled', async () => {
      const fired: Record<string, number> = { tick: 0, cron: 0 };
      const consumer = q.consume('recurring', { tick: async () => void fired.tick!++, cron: async () => void fired.cron!++ });
      try {
        await q.schedule('recurring', 'every-200ms', { everyMs: 200 }, 'tick', {});
        await q.schedule('recurring', 'every-second', { cron: '* * * * * *' }, 'cron', {});
        await eventually('both fired twice', () => fired.tick! >= 2 && fired.cron! >= 2, 6000);
        assert.equal(await q.unschedule('recurring', 'every-200ms'), true);
        assert.equal(await q.unschedule('recurring', 'every-second'), true);
        await sleep(300); // a run already queued may still come
        const settled = { ...fired };
        await sleep(1200);
        assert.deepEqual(fired, settled, 'nothing fires after unscheduling');
        await assert.rejects(q.schedule('recurring', 'bad', {}, 'tick', {}), (e: LeveeError) => e.code === 'bad_request');
      } finally {
        await consumer.close();
      }
    });

    it('runs at most `concurrency` jobs of a queue at once', async () => {
      let running = 0;
      let peak = 0;
      let done = 0;
      const consumer = q.consume('parallel', {
        slow: async () => {
          peak = Math.max(peak, ++running);
          await sleep(150);
          running--;
          done++;
        },
      });
      try {
        await q.enqueueMany('parallel', Array.from({ length: 6 }, () => ({ name: 'slow', payload: {} })));
        await eventually('all ran', () => done === 6);
        assert.equal(peak, 2);
      } finally {
        await consumer.close();
      }
    });

    it('reports the age of the oldest waiting job; unknown queues are a clear error', async () => {
      await q.enqueue('ordered', 'waits', {});
      await sleep(120);
      const s = await q.stats('ordered');
      assert.equal(s.waiting, 1);
      assert.ok(s.oldestWaitingMs >= 100 && s.oldestWaitingMs < 5000, `oldest ${s.oldestWaitingMs} ms`);
      await assert.rejects(q.enqueue('nope', 'x', {}), (e: LeveeError) => e.code === 'unknown_queue' && e.status === 404);
    });
  });
}
