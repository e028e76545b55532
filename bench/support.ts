import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

// Child processes, /proc readings and small HTTP helpers for the benchmarks. Every wait is bounded.

export const REPO = new URL('..', import.meta.url).pathname.replace(/\/$/, '');

export { freePort } from '../test/support/process.js';

export interface Child {
  name: string;
  proc: ChildProcess;
  pid: number;
  url: string;
  /** The last ~64 KB of the child's stdout and stderr, for error reports. */
  output(): string;
  exited(): boolean;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();

/** Kills every child still running (SIGKILL): for process exit and fatal errors. */
export function killAllChildren(): void {
  for (const p of live) {
    try {
      p.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  live.clear();
}

/** Starts `node <args>` with `env`, then waits until GET <url>/readyz answers 200 (bounded). */
export async function startChild(name: string, args: string[], env: NodeJS.ProcessEnv, port: number, readyTimeoutMs = 90_000): Promise<Child> {
  const proc = spawn(process.execPath, args, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  let out = '';
  const keep = (b: Buffer) => {
    out += b.toString();
    if (out.length > 65_536) out = out.slice(-65_536);
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  let exitInfo: string | undefined;
  const exitedP = new Promise<void>((ok) =>
    proc.once('exit', (code, signal) => {
      exitInfo = `code ${code} signal ${signal}`;
      live.delete(proc);
      ok();
    }),
  );
  const url = `http://127.0.0.1:${port}`;
  const child: Child = {
    name,
    proc,
    pid: proc.pid!,
    url,
    output: () => out,
    exited: () => exitInfo !== undefined,
    async stop() {
      if (exitInfo !== undefined) return;
      proc.kill('SIGTERM');
      const done = await Promise.race([exitedP.then(() => true), sleep(15_000).then(() => false)]);
      if (!done) {
        proc.kill('SIGKILL');
        await Promise.race([exitedP, sleep(5_000)]);
      }
    },
  };

  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (exitInfo !== undefined) throw new Error(`${name} exited before it was ready (${exitInfo}):\n${out}`);
    try {
      const r = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2_000) });
      await r.arrayBuffer();
      if (r.status === 200) return child;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      await child.stop();
      throw new Error(`${name} was not ready within ${readyTimeoutMs} ms:\n${out}`);
    }
    await sleep(100);
  }
}

/** VmRSS and VmHWM (peak) of a process, in MB. */
export function memoryOf(pid: number): { rssMb: number; peakMb: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMb: kb('VmRSS') / 1024, peakMb: kb('VmHWM') / 1024 };
}

const TICK = 100; // USER_HZ: clock ticks per second in /proc (100 on Linux x86-64)

/** CPU seconds (user + system) a process has used. */
export function cpuSecondsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    return (Number(fields[11]) + Number(fields[12])) / TICK;
  } catch {
    return 0;
  }
}

/** CPU seconds used by every process whose command name starts with `prefix` (e.g. all PostgreSQL backends). */
export function cpuSecondsOfCommand(prefix: string): number {
  let total = 0;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      if (!comm.startsWith(prefix)) continue;
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(fields[11]) + Number(fields[12])) / TICK;
    } catch {
      /* process ended while we read */
    }
  }
  return total;
}

/**
 * Machine-wide CPU seconds (all cores) from /proc/stat: busy (user, nice, system, irq, softirq),
 * softirq alone (loopback TCP is processed there and is not charged to any process) and steal
 * (time the hypervisor gave to someone else).
 */
export function machineCpu(): { busy: number; softirq: number; steal: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = line.trim().split(/\s+/).slice(1).map(Number);
  return { busy: (user + nice + system + irq + softirq) / TICK, softirq: softirq / TICK, steal: steal / TICK };
}

/**
 * Waits (at most `maxSeconds`) until the rest of the machine is quiet: less than `threshold` cores
 * busy over a one-second sample. Returns the last sample, in cores.
 */
export async function waitForQuiet(maxSeconds: number, threshold = 0.25): Promise<{ quiet: boolean; busyCores: number; waitedSeconds: number }> {
  const t0 = performance.now();
  let busyCores = 0;
  for (;;) {
    const a = machineCpu();
    await sleep(1000);
    const b = machineCpu();
    busyCores = b.busy - a.busy;
    const waitedSeconds = (performance.now() - t0) / 1000;
    if (busyCores < threshold) return { quiet: true, busyCores, waitedSeconds };
    if (waitedSeconds >= maxSeconds) return { quiet: false, busyCores, waitedSeconds };
  }
}

export function loadAverage(): number[] {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
}

/** JSON request with a bounded timeout; retries 429/503 (honouring Retry-After) a bounded number of times. */
export async function requestJson<T = unknown>(method: string, url: string, opts: { body?: unknown; token?: string; attempts?: number } = {}): Promise<{ status: number; body: T }> {
  const attempts = opts.attempts ?? 5;
  for (let i = 1; ; i++) {
    const r = await fetch(url, {
      method,
      headers: { ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}), ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}) },
      ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await r.text();
    if ((r.status === 429 || r.status === 503) && i < attempts) {
      const wait = Math.min(10, Number(r.headers.get('retry-after')) || 1);
      await sleep(wait * 1000);
      continue;
    }
    let body: unknown = text;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      /* not JSON */
    }
    return { status: r.status, body: body as T };
  }
}

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!, i);
      }
    }),
  );
  return out;
}

export function envNumber(name: string, dflt: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got "${raw}"`);
  return n;
}

/** The commit being measured, marked when src/, migrations/ or bench/ have uncommitted changes. */
export function gitCommit(): string {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src', 'migrations', 'bench'], { cwd: REPO, encoding: 'utf8' }).trim();
    return dirty ? `${commit} (with uncommitted changes)` : commit;
  } catch {
    return 'unknown'; // not a git checkout
  }
}

/** The caller's environment without any Levee setting, as the base of a benchmarked server's. */
export function inheritedEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(LEVEE_|DATABASE_URL$|PORT$|HOST$|LOG_LEVEL$|REDIS_URL$|NODE_OPTIONS$)/.test(k)) env[k] = v;
  return env;
}

/**
 * A benchmark's way out: `cleanups` run (newest first, each bounded) on SIGINT/SIGTERM, when the
 * whole-run watchdog fires, or when the benchmark calls `runCleanups`; child processes are killed
 * on every exit. `killExtra` kills children that are not started through startChild.
 */
export function benchLifecycle(timeoutSeconds: number, killExtra: () => void = () => {}) {
  const cleanups: (() => Promise<void>)[] = [];
  const killAll = () => {
    killExtra();
    killAllChildren();
  };
  const runCleanups = async () => {
    for (const c of cleanups.splice(0).reverse()) await Promise.race([c().catch((e: unknown) => console.error('bench: cleanup failed:', e)), sleep(20_000)]);
  };
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      console.error(`\nbench: ${sig}, stopping`);
      killAll();
      void runCleanups().finally(() => process.exit(130));
    });
  }
  const watchdog = setTimeout(() => {
    console.error(`bench: still running after ${timeoutSeconds} s (BENCH_TIMEOUT), giving up`);
    killAll();
    void runCleanups().finally(() => process.exit(1));
  }, timeoutSeconds * 1000);
  watchdog.unref();
  return { cleanups, runCleanups };
}

/** Deletes every Redis key under `prefix` (a run's own prefix), in bounded rounds. */
export async function deleteRedisPrefix(url: string, prefix: string): Promise<void> {
  const { Redis } = await import('ioredis');
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    for (let cursor = '0', rounds = 0; rounds < 10_000; rounds++) {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      if (keys.length) await redis.unlink(...keys);
      cursor = next;
      if (cursor === '0') break;
    }
  } finally {
    redis.disconnect();
  }
}

/**
 * What every benchmark report states about the machine: CPU (and what shares it), memory, kernel,
 * Node and — when the run uses them — the local PostgreSQL and Redis versions.
 */
export async function machineFacts(opts: { sharedBy: string; postgres?: { adminUrl: string; redisUrl: string } }): Promise<Record<string, string | number>> {
  const { cpus, release, totalmem } = await import('node:os');
  const cpuModel = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model ?? 'unknown';
  const facts: Record<string, string | number> = {
    CPU: `${cpuModel}, ${cpus().length} cores (shared by ${opts.sharedBy})`,
    cores: cpus().length,
    memory: `${Math.round(totalmem() / 2 ** 30)} GB`,
    kernel: release(),
    Node: process.version,
  };
  if (opts.postgres) {
    const { default: pg } = await import('pg');
    const c = new pg.Client({ connectionString: opts.postgres.adminUrl });
    await c.connect();
    try {
      facts.PostgreSQL = `${(await c.query<{ v: string }>('SELECT version() AS v')).rows[0]!.v.split(' on ')[0]!} (local, default configuration, loopback TCP)`;
    } finally {
      await c.end();
    }
    const { Redis } = await import('ioredis');
    const redis = new Redis(opts.postgres.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await redis.connect();
      facts.Redis = `${/redis_version:(\S+)/.exec(await redis.info('server'))?.[1] ?? '?'} (local, loopback TCP)`;
    } finally {
      redis.disconnect();
    }
  }
  return facts;
}

/** The installed version of a package. */
export const packageVersion = (name: string): string => (JSON.parse(readFileSync(`${REPO}/node_modules/${name}/package.json`, 'utf8')) as { version: string }).version;
