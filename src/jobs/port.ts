// The job queue port: named jobs with JSON payloads on named queues, delivered at least once.
// One implementation (BullMQ, see bullmq.ts) over three engines chosen by configuration
// (engines.ts): Redis, PostgreSQL, and PGlite in this process. Handlers must be idempotent: a job
// whose worker died mid-run, or whose attempt timed out, runs again.

/** How one queue behaves; every job on it inherits these unless its enqueue options say otherwise. */
export interface QueueSpec {
  name: string;
  /** Jobs of this queue running at once in one worker process. */
  concurrency: number;
  /** Jobs waiting (ready, delayed or prioritized) past which enqueueing fails fast with `queue_full`. */
  maxSize: number;
  /** Attempts before a job is dead-lettered. */
  attempts: number;
  /** First retry delay; each later one doubles, with ±50 % jitter. */
  backoffMs: number;
  /** One attempt's budget; past it the attempt fails (and is retried). */
  deadlineMs: number;
  /** Dead-lettered jobs kept for listing and re-driving (the oldest go first). */
  keepDeadLetters: number;
  /**
   * How long a running job stays claimed without its worker renewing the claim (default: the
   * deadline + 5 s, at least 30 s). A worker that dies mid-job gives it back this long after.
   */
  lockMs?: number;
}

export interface EnqueueOptions {
  /** 1 (first) … 1000; jobs without one come after every prioritized job. */
  priority?: number;
  /** Run no earlier than this many ms from now, or at `runAt`. */
  delayMs?: number;
  runAt?: Date;
  /** A job id (no `:`): a second enqueue with the same id while the first is kept adds nothing (dedupe). */
  jobId?: string;
  attempts?: number;
  deadlineMs?: number;
}

export interface JobContext {
  id: string;
  name: string;
  queue: string;
  /** 1 for the first attempt. */
  attempt: number;
  /** Aborted when the attempt's deadline passes or the worker shuts down. */
  signal: AbortSignal;
}

export type JobHandler = (payload: unknown, ctx: JobContext) => Promise<unknown>;

export interface Schedule {
  /** A cron expression (5 or 6 fields) in `tz` (default UTC) … */
  cron?: string;
  tz?: string;
  /** … or a fixed interval. */
  everyMs?: number;
}

export interface DeadLetter {
  id: string;
  name: string;
  payload: unknown;
  attempts: number;
  reason: string;
  enqueuedAt: Date;
  failedAt: Date | undefined;
}

export interface QueueStats {
  waiting: number;
  delayed: number;
  active: number;
  deadLetters: number;
  /** Age of the oldest job ready to run and not yet started, ms (0 when none). */
  oldestWaitingMs: number;
}

export interface Consumer {
  close(): Promise<void>;
}

export interface JobQueues {
  readonly engine: 'redis' | 'postgres' | 'pglite';
  readonly specs: ReadonlyMap<string, QueueSpec>;
  enqueue(queue: string, name: string, payload: unknown, opts?: EnqueueOptions): Promise<string>;
  /** Several jobs in one round trip (fan-out); the size bound is checked once for the batch. */
  enqueueMany(queue: string, jobs: { name: string; payload: unknown; opts?: EnqueueOptions }[]): Promise<string[]>;
  /** Creates or replaces a recurring job (id unique per queue). */
  schedule(queue: string, id: string, when: Schedule, name: string, payload: unknown): Promise<void>;
  unschedule(queue: string, id: string): Promise<boolean>;
  deadLetters(queue: string, offset?: number, limit?: number): Promise<DeadLetter[]>;
  /** Moves a dead-lettered job back to the queue with fresh attempts; false if there is no such dead letter. */
  redrive(queue: string, jobId: string): Promise<boolean>;
  stats(queue: string): Promise<QueueStats>;
  /** Starts consuming `queue` in this process; `handlers` by job name. */
  consume(queue: string, handlers: Record<string, JobHandler>): Consumer;
  close(): Promise<void>;
}
