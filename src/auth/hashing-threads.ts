import { Worker } from 'node:worker_threads';

// Password hashing on threads of its own rather than libuv's pool: the threads can run at a lower
// priority (a nice value, Linux) so that a sign-in storm gets the CPU that requests leave over,
// instead of taking it from the feed. Concurrency and queueing are bounded in front of this (the
// password_hashing bulkhead), so there is always a thread free for a job that gets here; the
// internal queue only absorbs a thread being replaced.

export interface HashingThreads {
  hash(password: string, params: object): Promise<string>;
  verify(stored: string, password: string): Promise<boolean>;
  close(): Promise<void>;
}

type Job = { id: number; op: 'hash' | 'verify'; password: string; stored?: string; params?: object };
type Settle = { resolve: (v: never) => void; reject: (e: Error) => void };
type Reply = { id: number; result?: unknown; error?: string };

const SCRIPT = new URL('./hashing-thread.js', import.meta.url);

export function createHashingThreads(opts: { threads: number; nice: number }): HashingThreads {
  const workers = new Set<Worker>();
  const idle: Worker[] = [];
  const waiting: Job[] = [];
  const pending = new Map<number, Settle & { worker?: Worker }>();
  let nextId = 1;
  let closed = false;

  const run = (worker: Worker, job: Job) => {
    pending.get(job.id)!.worker = worker;
    worker.postMessage(job);
  };

  const next = (worker: Worker) => {
    const job = waiting.shift();
    if (job) run(worker, job);
    else idle.push(worker);
  };

  const spawn = () => {
    const worker = new Worker(SCRIPT, { workerData: { nice: process.platform === 'linux' ? opts.nice : 0 } });
    worker.unref(); // idle hashing threads never keep the process alive
    workers.add(worker);
    worker.on('message', (m: Reply) => {
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (p && m.error === undefined) p.resolve(m.result as never);
      else p?.reject(new Error(`password hashing failed: ${m.error}`));
      next(worker);
    });
    worker.on('error', (e) => lost(worker, e));
    worker.on('exit', () => lost(worker, new Error('password hashing thread exited')));
    next(worker);
  };

  /** A thread died: its job fails, and a new thread takes its place if work is waiting. */
  const lost = (worker: Worker, e: Error) => {
    if (!workers.delete(worker)) return;
    const at = idle.indexOf(worker);
    if (at >= 0) idle.splice(at, 1);
    for (const [id, p] of pending) {
      if (p.worker !== worker) continue;
      pending.delete(id);
      p.reject(e);
    }
    if (!closed && waiting.length) spawn();
  };

  const submit = <T>(job: Omit<Job, 'id'>): Promise<T> => {
    if (closed) return Promise.reject(new Error('password hashing is shut down'));
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      pending.set(id, { resolve: resolve as (v: never) => void, reject });
      const worker = idle.pop();
      if (worker) return run(worker, { id, ...job });
      waiting.push({ id, ...job });
      if (workers.size < opts.threads) spawn();
    });
  };

  return {
    hash: (password, params) => submit<string>({ op: 'hash', password, params }),
    verify: (stored, password) => submit<boolean>({ op: 'verify', password, stored }),
    async close() {
      closed = true;
      for (const p of pending.values()) p.reject(new Error('password hashing is shut down'));
      pending.clear();
      waiting.length = 0;
      await Promise.all([...workers].map((w) => w.terminate()));
    },
  };
}
