import { Queue, UnrecoverableError, Worker, type BackendFactory, type Job, type JobsOptions } from 'bullmq';
import { Counter, Histogram, type Registry } from 'prom-client';
import { LeveeError } from '../lib/errors.js';
import { withinBudget } from '../protection/deadline.js';
import type { Consumer, DeadLetter, EnqueueOptions, JobHandler, JobQueues, QueueSpec, QueueStats } from './port.js';

// The job queue port on BullMQ: one API whichever engine holds the jobs (engines.ts picks the
// backend factory and its connection). What Levee adds on top: queues declared up front with their
// bounds, a size limit checked before enqueueing, a deadline per attempt, dead letters as a listable,
// re-drivable state, and metrics.

export interface BullmqEngine {
  name: JobQueues['engine'];
  /** BullMQ's connection option for this engine (ioredis options, a pg.Pool-shaped pool, …). */
  connection: unknown;
  /** undefined: BullMQ's default (Redis). */
  backend: BackendFactory | undefined;
  /** Redis only: key prefix, so several Levee installations can share one Redis. */
  prefix?: string;
  /** Longest idle wait for a new job before polling again, seconds (BullMQ's drainDelay; default 5). */
  drainDelaySeconds?: number;
  close(): Promise<void>;
}

const WAITING_STATES = ['wait', 'prioritized', 'delayed'] as const;

export function createBullmqQueues(engine: BullmqEngine, specs: QueueSpec[], registry: Registry): JobQueues {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const queues = new Map<string, Queue>();
  const consumers = new Set<Worker>();
  const m = jobMetrics(registry);
  const base = () => ({ connection: engine.connection as never, ...(engine.prefix ? { prefix: engine.prefix } : {}) });

  const specOf = (name: string): QueueSpec => {
    const spec = byName.get(name);
    if (!spec) throw new LeveeError('unknown_queue', `No queue named ${JSON.stringify(name)}`);
    return spec;
  };
  const queueOf = (name: string): Queue => {
    const spec = specOf(name);
    let q = queues.get(name);
    if (!q) {
      q = new Queue(spec.name, base(), engine.backend as never);
      q.on('error', () => {}); // connection trouble surfaces on the calls themselves
      queues.set(name, q);
    }
    return q;
  };

  const jobOptions = (spec: QueueSpec, o: EnqueueOptions = {}): JobsOptions => {
    const delay = o.runAt ? Math.max(0, o.runAt.getTime() - Date.now()) : o.delayMs;
    return {
      attempts: o.attempts ?? spec.attempts,
      backoff: { type: 'exponential', delay: spec.backoffMs, jitter: 0.5 },
      removeOnComplete: { count: 1000 },
      removeOnFail: { count: spec.keepDeadLetters },
      ...(o.priority !== undefined ? { priority: o.priority } : {}),
      ...(delay ? { delay } : {}),
      ...(o.jobId !== undefined ? { jobId: o.jobId } : {}),
      ...(o.deadlineMs !== undefined ? { deadlineMs: o.deadlineMs } : {}),
    } as JobsOptions;
  };

  /** Fails fast past the queue's bound; counted. Approximate across processes (a count, then an add). */
  const ensureRoom = async (spec: QueueSpec, q: Queue, adding: number) => {
    const waiting = await q.getJobCountByTypes(...WAITING_STATES);
    if (waiting + adding > spec.maxSize) {
      m.rejected.inc({ queue: spec.name }, adding);
      throw new LeveeError('queue_full', `The ${spec.name} queue holds ${waiting} jobs (bound ${spec.maxSize}); retry later`, { retryAfter: 5 });
    }
  };

  // Inside a request, every call waits no longer than the request's deadline (a queue engine that
  // is down or slow must not hang the API: BullMQ's Redis client waits for a reconnect by design).
  const bounded = <T>(work: Promise<T>) => withinBudget(work, 'the job queue');

  const api: Omit<JobQueues, 'consume' | 'close'> = {
    engine: engine.name,
    specs: byName,

    async enqueue(queue, name, payload, opts) {
      const spec = specOf(queue);
      const q = queueOf(queue);
      await ensureRoom(spec, q, 1);
      const job = await q.add(name, payload as object, jobOptions(spec, opts));
      m.enqueued.inc({ queue });
      return job.id!;
    },

    async enqueueMany(queue, jobs) {
      if (jobs.length === 0) return [];
      const spec = specOf(queue);
      const q = queueOf(queue);
      await ensureRoom(spec, q, jobs.length);
      const added = await q.addBulk(jobs.map((j) => ({ name: j.name, data: j.payload as object, opts: jobOptions(spec, j.opts) })));
      m.enqueued.inc({ queue }, jobs.length);
      return added.map((j) => j.id!);
    },

    async schedule(queue, id, when, name, payload) {
      const spec = specOf(queue);
      const repeat = when.cron ? { pattern: when.cron, tz: when.tz ?? 'UTC' } : when.everyMs ? { every: when.everyMs } : undefined;
      if (!repeat) throw new LeveeError('bad_request', 'A schedule needs a cron expression or an interval');
      await queueOf(queue).upsertJobScheduler(id, repeat, { name, data: payload as object, opts: jobOptions(spec) as never });
    },

    unschedule: (queue, id) => queueOf(queue).removeJobScheduler(id),

    async deadLetters(queue, offset = 0, limit = 50) {
      const jobs = await queueOf(queue).getFailed(offset, offset + limit - 1);
      return jobs.filter(Boolean).map(toDeadLetter);
    },

    async redrive(queue, jobId) {
      const job = await queueOf(queue).getJob(jobId);
      if (!job || !(await job.isFailed())) return false;
      await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
      return true;
    },

    async stats(queue): Promise<QueueStats> {
      const q = queueOf(queue);
      const c = await q.getJobCounts('wait', 'prioritized', 'delayed', 'active', 'failed');
      const [oldest] = await q.getJobs(['wait', 'prioritized'], 0, 0, true);
      return {
        waiting: (c.wait ?? 0) + (c.prioritized ?? 0),
        delayed: c.delayed ?? 0,
        active: c.active ?? 0,
        deadLetters: c.failed ?? 0,
        oldestWaitingMs: oldest ? Math.max(0, Date.now() - oldest.timestamp) : 0,
      };
    },
  };

  return {
    engine: api.engine,
    specs: api.specs,
    enqueue: (...a) => bounded(api.enqueue(...a)),
    enqueueMany: (...a) => bounded(api.enqueueMany(...a)),
    schedule: (...a) => bounded(api.schedule(...a)),
    unschedule: (...a) => bounded(api.unschedule(...a)),
    deadLetters: (...a) => bounded(api.deadLetters(...a)),
    redrive: (...a) => bounded(api.redrive(...a)),
    stats: (...a) => bounded(api.stats(...a)),

    consume(queue, handlers): Consumer {
      const spec = specOf(queue);
      const worker = new Worker(spec.name, (job) => runAttempt(spec, job, handlers, m), {
        ...base(),
        concurrency: spec.concurrency,
        // The lock outlives an attempt's deadline; a worker that dies stops renewing it, and its
        // job goes back to the queue once it expires (BullMQ's stalled-job check).
        lockDuration: spec.lockMs ?? Math.max(30_000, spec.deadlineMs + 5_000),
        stalledInterval: Math.min(15_000, spec.lockMs ?? 15_000),
        maxStalledCount: 3,
        ...(engine.drainDelaySeconds ? { drainDelay: engine.drainDelaySeconds } : {}),
      } as never, engine.backend as never);
      worker.on('error', () => {}); // connection errors: BullMQ reconnects and retries on its own
      consumers.add(worker);
      return {
        close: async () => {
          consumers.delete(worker);
          await worker.close();
        },
      };
    },

    async close() {
      await Promise.all([...consumers].map((w) => w.close()));
      await Promise.all([...queues.values()].map((q) => q.close()));
      consumers.clear();
      queues.clear();
      await engine.close();
    },
  };
}

async function runAttempt(spec: QueueSpec, job: Job, handlers: Record<string, JobHandler>, m: ReturnType<typeof jobMetrics>) {
  const handler = Object.hasOwn(handlers, job.name) ? handlers[job.name] : undefined;
  if (!handler) {
    m.processed.inc({ queue: spec.name, outcome: 'unknown_job' });
    throw new UnrecoverableError(`no handler for job ${JSON.stringify(job.name)} on queue ${spec.name}`);
  }
  const deadlineMs = (job.opts as { deadlineMs?: number }).deadlineMs ?? spec.deadlineMs;
  const aborter = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const e = new Error(`job ${job.name} (${job.id}) ran past its ${deadlineMs} ms deadline`);
      reject(e); // first, so the race ends on the deadline and not on what the abort makes the handler throw
      aborter.abort(e);
    }, deadlineMs);
  });
  const started = performance.now();
  try {
    const result = await Promise.race([handler(job.data, { id: job.id!, name: job.name, queue: spec.name, attempt: job.attemptsMade + 1, signal: aborter.signal }), expired]);
    m.processed.inc({ queue: spec.name, outcome: 'ok' });
    return result;
  } catch (e) {
    m.processed.inc({ queue: spec.name, outcome: aborter.signal.aborted ? 'deadline' : 'error' });
    throw e;
  } finally {
    clearTimeout(timer);
    m.duration.observe({ queue: spec.name }, (performance.now() - started) / 1000);
  }
}

const toDeadLetter = (j: Job): DeadLetter => ({
  id: j.id!,
  name: j.name,
  payload: j.data,
  attempts: j.attemptsMade,
  reason: j.failedReason ?? '',
  enqueuedAt: new Date(j.timestamp),
  failedAt: j.finishedOn ? new Date(j.finishedOn) : undefined,
});

function jobMetrics(registry: Registry) {
  const get = <T>(name: string, make: () => T): T => (registry.getSingleMetric(name) as T | undefined) ?? make();
  return {
    enqueued: get('levee_jobs_enqueued_total', () => new Counter({ name: 'levee_jobs_enqueued_total', help: 'Jobs enqueued, by queue', labelNames: ['queue'] as const, registers: [registry] })),
    rejected: get('levee_jobs_rejected_total', () => new Counter({ name: 'levee_jobs_rejected_total', help: 'Jobs refused because their queue was at its bound (queue_full)', labelNames: ['queue'] as const, registers: [registry] })),
    processed: get('levee_jobs_processed_total', () => new Counter({ name: 'levee_jobs_processed_total', help: 'Job attempts by queue and outcome (ok, error, deadline, unknown_job)', labelNames: ['queue', 'outcome'] as const, registers: [registry] })),
    duration: get('levee_job_duration_seconds', () => new Histogram({ name: 'levee_job_duration_seconds', help: 'Time one job attempt ran, by queue', labelNames: ['queue'] as const, buckets: [0.005, 0.025, 0.1, 0.5, 1, 5, 30, 120], registers: [registry] })),
  };
}
