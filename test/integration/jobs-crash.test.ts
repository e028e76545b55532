import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { openJobQueues, type QueueEngineChoice } from '../../src/jobs/engines.js';
import { createPostgresDatabase, postgresReachable, CI } from '../support/engines.js';
import { deletePrefix, REDIS_TEST_URL, redisSkip, uniquePrefix } from '../support/redis.js';
import { tempDir } from '../support/process.js';

// At-least-once delivery across a crash: a worker process is SIGKILLed in the middle of a job, and
// the job is run to completion by another worker process. Real processes, on PostgreSQL and Redis.

const WORKER = new URL('../support/job-worker.ts', import.meta.url).pathname;
const children = new Set<ChildProcess>();
const startWorker = (choice: QueueEngineChoice, logFile: string) => {
  const child = spawn(process.execPath, ['--import', 'tsx', WORKER, JSON.stringify(choice)], { env: { ...process.env, JOB_LOG: logFile, JOB_MS: '1500' }, stdio: ['ignore', 'inherit', 'inherit'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
};
const lines = (file: string) => readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => l.split(' '));
async function waitForLine(file: string, test: (l: string[]) => boolean, what: string, withinMs = 30_000) {
  const until = Date.now() + withinMs;
  while (Date.now() < until) {
    const hit = lines(file).find(test);
    if (hit) return hit;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`not within ${withinMs} ms: ${what}\n${readFileSync(file, 'utf8')}`);
}

const pgSkip = (await postgresReachable()) ? false : CI ? assert.fail('PostgreSQL must be reachable in CI') : 'PostgreSQL not reachable';
const engines: { name: string; skip: string | false; open(): Promise<{ choice: QueueEngineChoice; cleanup(): Promise<void> }> }[] = [
  {
    name: 'PostgreSQL',
    skip: pgSkip,
    async open() {
      const { url, drop } = await createPostgresDatabase();
      return { choice: { kind: 'postgres', url, poolSize: 4 }, cleanup: drop };
    },
  },
  {
    name: 'Redis',
    skip: await redisSkip(),
    async open() {
      const keyPrefix = uniquePrefix();
      return { choice: { kind: 'redis', url: REDIS_TEST_URL, keyPrefix }, cleanup: () => deletePrefix(keyPrefix) };
    },
  },
];

after(() => {
  for (const c of children) c.kill('SIGKILL');
});

for (const engine of engines) {
  describe(`a worker killed mid-job on ${engine.name}`, { skip: engine.skip }, () => {
    it('loses nothing: another worker process picks the job up and completes it', async () => {
      const { choice, cleanup } = await engine.open();
      const logFile = join(tempDir('levee-jobs-'), 'jobs.log');
      writeFileSync(logFile, '');
      const queues = await openJobQueues(choice, [{ name: 'work', concurrency: 2, maxSize: 100, attempts: 5, backoffMs: 100, deadlineMs: 20_000, keepDeadLetters: 10, lockMs: 2_000 }], new Registry());
      try {
        const first = startWorker(choice, logFile);
        await waitForLine(logFile, (l) => l[0] === 'ready' && l[1] === String(first.pid), 'the first worker is ready');
        const ids = [await queues.enqueue('work', 'slow', { n: 1 }), await queues.enqueue('work', 'slow', { n: 2 })];
        for (const id of ids) await waitForLine(logFile, (l) => l[0] === 'start' && l[1] === id, `job ${id} started`);
        first.kill('SIGKILL');
        await new Promise((r) => first.once('exit', r));
        assert.ok(!lines(logFile).some((l) => l[0] === 'done'), 'killed before either job finished');

        const second = startWorker(choice, logFile);
        for (const id of ids) {
          const done = await waitForLine(logFile, (l) => l[0] === 'done' && l[1] === id, `job ${id} completed after the crash`);
          assert.equal(done[2], String(second.pid));
        }
        // The handler logs `done` just before BullMQ records the completion: give it a moment.
        let stats = await queues.stats('work');
        for (let i = 0; i < 100 && stats.active > 0; i++) {
          await new Promise((r) => setTimeout(r, 20));
          stats = await queues.stats('work');
        }
        assert.deepEqual([stats.waiting, stats.active, stats.deadLetters], [0, 0, 0]);
        second.kill('SIGTERM');
        await new Promise((r) => second.once('exit', r));
      } finally {
        await queues.close();
        await cleanup();
      }
    });
  });
}

describe('levee jobs (command line)', { skip: pgSkip }, () => {
  it('lists queues and dead letters, and re-drives them', async () => {
    const { runLevee } = await import('../support/process.js');
    const { url, drop } = await createPostgresDatabase();
    const env = { DATABASE_URL: url, LEVEE_QUEUE_ENGINE: 'database' };
    try {
      const queues = await openJobQueues({ kind: 'postgres', url, poolSize: 4 }, (await import('../../src/jobs/queues.js')).queueSpecs(), new Registry());
      let healed = false;
      const consumer = queues.consume('maintenance', {
        chore: async () => {
          if (!healed) throw new Error('chore failed');
        },
      });
      try {
        const id = await queues.enqueue('maintenance', 'chore', {}, { attempts: 1 });
        const until = Date.now() + 10_000;
        while ((await queues.stats('maintenance')).deadLetters === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));

        const overview = await runLevee(['jobs'], { env });
        assert.equal(overview.code, 0, overview.stderr);
        assert.match(overview.stdout, /Job queues \(postgres\)/);
        assert.match(overview.stdout, /maintenance: 0 waiting, 0 delayed, 0 running, 1 dead letters/);

        const listed = await runLevee(['jobs', 'dead-letters', 'maintenance'], { env });
        assert.equal(listed.code, 0, listed.stderr);
        assert.match(listed.stdout, new RegExp(`^${id}\\tchore\\t1 attempts\\t\\S+\\tchore failed$`, 'm'));

        const wrong = await runLevee(['jobs', 'redrive', 'maintenance', 'no-such-job'], { env });
        assert.equal(wrong.code, 1);
        assert.match(wrong.stderr, /no dead-lettered job no-such-job on maintenance/);
        const unknown = await runLevee(['jobs', 'dead-letters', 'nope'], { env });
        assert.equal(unknown.code, 2);
        assert.match(unknown.stderr, /name a queue: maintenance/);

        healed = true;
        const redriven = await runLevee(['jobs', 'redrive', 'maintenance', '--all'], { env });
        assert.equal(redriven.code, 0, redriven.stderr);
        assert.match(redriven.stdout, /Re-drove 1 job on maintenance/);
        while ((await queues.stats('maintenance')).deadLetters > 0 && Date.now() < until + 10_000) await new Promise((r) => setTimeout(r, 50));
        assert.equal((await queues.stats('maintenance')).deadLetters, 0);
      } finally {
        await consumer.close();
        await queues.close();
      }
    } finally {
      await drop();
    }
  });
});
