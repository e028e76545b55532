import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { loadConfig } from '../../src/config/load.js';
import { newId, newSecret, sha256 } from '../../src/lib/ids.js';
import { migrateDatabase, openDatabase } from '../../src/roles/compose.js';
import { seed, type Seeded } from '../seed.js';
import { cpuSecondsOf, cpuSecondsOfCommand, freePort, inheritedEnv, machineCpu, mapLimit, memoryOf, REPO, requestJson, startChild, type Child } from '../support.js';
import type { FromGenerator, InitSpec, Phase, Policy, RunResult, RunSpec, ToGenerator } from './protocol.js';

// The pieces the overload benchmark is made of: the database (seeded users, posts and refresh-token
// sessions), the Levee child process (with or without protection), the load-generator process, the
// server-side sampler (RSS and CPU per phase), and the capacity search.

export const BENCH_CONFIG = join(REPO, 'bench/levee.bench.json');
export const log = (msg: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${msg}`);

// ---- database ------------------------------------------------------------------------------------

export async function seedDatabase(url: string, users: number, posts: number): Promise<Seeded> {
  const config = loadConfig({ LEVEE_CONFIG: BENCH_CONFIG, DATABASE_URL: url });
  const db = await openDatabase(config);
  try {
    await migrateDatabase(db, config);
    return await seed(db, { users, posts });
  } finally {
    await db.close();
  }
}

/**
 * Creates `count` signed-in sessions straight in the database (a refresh token each, stored hashed as
 * Levee stores them) and returns their refresh tokens. Signing in through the API would cost an
 * argon2 hash per session; the refresh path under test is the same either way.
 */
export async function createSessions(url: string, count: number, batch = 10_000): Promise<string[]> {
  const c = new pg.Client({ connectionString: url, statement_timeout: 120_000 });
  await c.connect();
  const tokens: string[] = [];
  try {
    const users = (await c.query<{ id: string }>('SELECT id FROM users ORDER BY email')).rows.map((r) => r.id);
    for (let from = 0; from < count; from += batch) {
      const rows = [];
      for (let i = from; i < Math.min(count, from + batch); i++) {
        const token = `rt_${newSecret()}`;
        tokens.push(token);
        rows.push({ id: newId(), user_id: users[i % users.length], hash: sha256(token) });
      }
      const json = JSON.stringify(rows);
      await c.query('BEGIN');
      await c.query(
        `INSERT INTO sessions (id, user_id, device_name, expires_at)
         SELECT r.id, r.user_id, 'overload bench', now() + interval '30 days' FROM jsonb_to_recordset($1::text::jsonb) AS r(id uuid, user_id uuid)`,
        [json],
      );
      await c.query(`INSERT INTO refresh_tokens (token_hash, session_id) SELECT r.hash, r.id FROM jsonb_to_recordset($1::text::jsonb) AS r(id uuid, hash text)`, [json]);
      await c.query('COMMIT');
    }
  } finally {
    await c.end();
  }
  return tokens;
}

/** VACUUM ANALYZE what a run wrote, so that autovacuum does not land inside the next run. */
export async function settle(url: string): Promise<void> {
  const t0 = performance.now();
  const c = new pg.Client({ connectionString: url, statement_timeout: 300_000 });
  await c.connect();
  try {
    await c.query('VACUUM (ANALYZE) documents, idempotency_keys, sessions, refresh_tokens');
  } finally {
    await c.end();
  }
  log(`VACUUM ANALYZE: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

// ---- the server ----------------------------------------------------------------------------------

export interface ServerOptions {
  databaseUrl: string;
  protection: boolean;
  poolSize?: number;
  /** More server settings (e.g. admission-control tuning), applied last. */
  env?: Record<string, string>;
}

function serverEnv(port: number, o: ServerOptions): NodeJS.ProcessEnv {
  const env = inheritedEnv();
  Object.assign(env, {
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    DATABASE_URL: o.databaseUrl,
    LEVEE_CONFIG: BENCH_CONFIG,
    LEVEE_SHUTDOWN_GRACE_MS: '2000',
    LEVEE_ACCESS_TOKEN_TTL_SECONDS: '7200',
    // All the load comes from 127.0.0.1 and 200 users: per-IP and per-user limits would measure
    // the rate limiter, not overload. Admission control and deadlines stay on.
    LEVEE_RATE_LIMIT_IP_PER_MINUTE: '10000000',
    LEVEE_RATE_LIMIT_USER_PER_MINUTE: '10000000',
    LEVEE_RATE_LIMIT_IP_BURST: '1000000',
    LEVEE_RATE_LIMIT_USER_BURST: '1000000',
    LEVEE_PROTECTION: o.protection ? 'on' : 'off',
  });
  if (o.poolSize) env.LEVEE_DB_POOL_SIZE = String(o.poolSize);
  Object.assign(env, o.env);
  return env;
}

export async function startServer(o: ServerOptions): Promise<Child> {
  const port = await freePort();
  return startChild(`levee (protection ${o.protection ? 'on' : 'off'})`, ['bin/levee.js', 'start', '--roles', 'api'], serverEnv(port, o), port);
}

/** Access tokens for `sessions` (one refresh each through the API: no argon2). */
export async function accessTokens(url: string, refreshTokens: string[]): Promise<string[]> {
  return mapLimit(refreshTokens, 8, async (token) => {
    const r = await requestJson<{ accessToken?: string }>('POST', `${url}/v1/auth/refresh`, { body: { refreshToken: token } });
    if (r.status !== 200 || !r.body.accessToken) throw new Error(`refresh for an access token failed: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
    return r.body.accessToken;
  });
}

// ---- the generator process -----------------------------------------------------------------------

export class GeneratorProcess {
  private readonly proc: ChildProcess;
  private nextId = 1;
  private waiting: { resolve: (m: FromGenerator) => void; reject: (e: Error) => void; accept: (m: FromGenerator) => boolean } | undefined;
  private phaseListener: ((index: number) => void) | undefined;
  private exitInfo: string | undefined;
  /** Unused refresh tokens in the generator's pool, as of the last run (or the tokens sent since). */
  sessionsLeft = 0;

  constructor() {
    this.proc = fork(join(REPO, 'bench/overload/gen-process.ts'), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.proc.on('message', (m: FromGenerator) => {
      if (m.type === 'phase') {
        this.phaseListener?.(m.index);
        return;
      }
      const w = this.waiting;
      if (m.type === 'error') {
        this.waiting = undefined;
        return w?.reject(new Error(`load generator: ${m.message}`));
      }
      if (w?.accept(m)) {
        this.waiting = undefined;
        w.resolve(m);
      }
    });
    this.proc.on('exit', (code, signal) => {
      this.exitInfo = `code ${code} signal ${signal}`;
      this.waiting?.reject(new Error(`the load generator exited (${this.exitInfo})`));
      this.waiting = undefined;
    });
  }

  get pid() {
    return this.proc.pid!;
  }

  private send(m: ToGenerator) {
    if (this.exitInfo) throw new Error(`the load generator has exited (${this.exitInfo})`);
    this.proc.send(m);
  }

  private expect(accept: (m: FromGenerator) => boolean, timeoutMs: number, what: string): Promise<FromGenerator> {
    return new Promise<FromGenerator>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = undefined;
        reject(new Error(`load generator: no answer to ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting = {
        accept,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  async init(spec: InitSpec): Promise<void> {
    const ready = this.expect((m) => m.type === 'ready', 60_000, 'init');
    this.send({ type: 'init', spec });
    await ready;
  }

  addSessions(tokens: string[]) {
    this.sessionsLeft += tokens.length;
    for (let i = 0; i < tokens.length; i += 20_000) this.send({ type: 'sessions', tokens: tokens.slice(i, i + 20_000) });
  }

  async run(url: string, phases: Phase[], policy: Policy, onPhase?: (index: number) => void, closedConcurrency?: number): Promise<RunResult> {
    const spec: RunSpec = { id: this.nextId++, url, phases, policy, ...(closedConcurrency ? { closedConcurrency } : {}) };
    const seconds = phases.reduce((s, p) => s + p.seconds, 0);
    this.phaseListener = onPhase;
    const done = this.expect((m) => m.type === 'done' && m.runId === spec.id, (seconds + 90) * 1000, `run ${spec.id}`);
    this.send({ type: 'run', spec });
    const m = await done;
    this.phaseListener = undefined;
    const result = (m as Extract<FromGenerator, { type: 'done' }>).result;
    this.sessionsLeft = result.sessionsLeft;
    return result;
  }

  async stop() {
    if (this.exitInfo) return;
    const exited = new Promise<void>((ok) => this.proc.once('exit', () => ok()));
    try {
      this.send({ type: 'exit' });
    } catch {
      /* already gone */
    }
    if (!(await Promise.race([exited.then(() => true), sleep(5_000).then(() => false)]))) this.proc.kill('SIGKILL');
  }

  kill() {
    if (!this.exitInfo) this.proc.kill('SIGKILL');
  }
}

// ---- server-side sampling ------------------------------------------------------------------------

/**
 * Connections the kernel dropped because a listen queue was full (TcpExt ListenOverflows, machine-wide):
 * when a server stops accepting fast enough, clients see connect timeouts, not 503s.
 */
export function listenOverflows(): number {
  const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:'));
  const names = lines[0]?.split(/\s+/) ?? [];
  const values = lines[1]?.split(/\s+/) ?? [];
  const i = names.indexOf('ListenOverflows');
  return i > 0 ? Number(values[i]) : NaN;
}

export interface ServerPhaseStats {
  rssMinMb: number;
  rssMaxMb: number;
  /** Cores used over the phase: the Levee process and all PostgreSQL processes. */
  serverCpu: number;
  postgresCpu: number;
  /** Cores used by everything else on the machine (other processes, softirq): noise. */
  otherCpu: number;
  /** Connection attempts dropped by a full listen queue (machine-wide). */
  listenDrops: number;
}

/** Samples the server's RSS every second and its (and PostgreSQL's) CPU at each phase boundary. */
export class Sampler {
  private marks: { wall: number; server: number; postgres: number; generator: number; machine: number; drops: number }[] = [];
  private rss: { phase: number; mb: number }[] = [];
  private phase = -1;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly pid: number,
    private readonly generatorPid: number,
  ) {}

  private mark() {
    this.marks.push({ wall: performance.now(), server: cpuSecondsOf(this.pid), postgres: cpuSecondsOfCommand('postgres'), generator: cpuSecondsOf(this.generatorPid), machine: machineCpu().busy, drops: listenOverflows() });
  }

  private sampleRss() {
    try {
      this.rss.push({ phase: this.phase, mb: memoryOf(this.pid).rssMb });
    } catch {
      /* the server exited: the run reports it */
    }
  }

  /** Call with each phase index as the generator enters it. */
  enter(index: number) {
    this.mark();
    this.phase = index;
    this.sampleRss();
    this.timer ??= setInterval(() => this.sampleRss(), 1_000);
  }

  finish(phases: number): { perPhase: ServerPhaseStats[]; rss: number[] } {
    this.mark();
    clearInterval(this.timer);
    const perPhase: ServerPhaseStats[] = [];
    for (let i = 0; i < phases; i++) {
      const a = this.marks[i];
      const b = this.marks[i + 1];
      const wall = a && b ? (b.wall - a.wall) / 1000 : NaN;
      const mb = this.rss.filter((s) => s.phase === i).map((s) => s.mb);
      const cores = (k: 'server' | 'postgres' | 'generator' | 'machine') => (a && b ? (b[k] - a[k]) / wall : NaN);
      perPhase.push({
        rssMinMb: mb.length ? Math.min(...mb) : NaN,
        rssMaxMb: mb.length ? Math.max(...mb) : NaN,
        serverCpu: cores('server'),
        postgresCpu: cores('postgres'),
        otherCpu: Math.max(0, cores('machine') - cores('server') - cores('postgres') - cores('generator')),
        listenDrops: a && b ? b.drops - a.drops : NaN,
      });
    }
    return { perPhase, rss: this.rss.map((s) => s.mb) };
  }
}

/** One generator run against a server, with the server sampled alongside. */
export async function runMeasured(gen: GeneratorProcess, server: Child, phases: Phase[], policy: Policy, closedConcurrency?: number) {
  const sampler = new Sampler(server.pid, gen.pid);
  const result = await gen.run(server.url, phases, policy, (i) => sampler.enter(i), closedConcurrency);
  const serverStats = sampler.finish(phases.length);
  return { result, server: serverStats.perPhase, rss: serverStats.rss, serverExited: server.exited() };
}

// ---- capacity ------------------------------------------------------------------------------------

export interface CapacityStep {
  rate: number;
  goodput: number;
  p99: number;
  pass: boolean;
  lagP99: number;
}

export interface Capacity {
  capacity: number;
  /** The closed-loop estimate the search started from. */
  closedLoop: { concurrency: number; goodput: number; p99: number };
  steps: CapacityStep[];
  given: boolean;
}

/**
 * Capacity: the highest offered rate (open model) whose goodput is ≥ 95 % of it with p99 ≤ the
 * objective. A short closed-loop run gives the starting estimate; open-loop steps then go up from
 * 60 % of it until one fails twice in a row (or down, if the first fails).
 */
export async function findCapacity(gen: GeneratorProcess, server: Child, o: { objectiveMs: number; stepSeconds: number; concurrency: number }): Promise<Capacity> {
  const closed = await gen.run(
    server.url,
    [
      { name: 'closed warm-up', rate: 0, seconds: 2 },
      { name: 'closed', rate: 0, seconds: 5 },
    ],
    'none',
    undefined,
    o.concurrency,
  );
  const c = closed.phases[1]!;
  const estimate = Math.max(50, c.all.good / c.seconds);
  log(`closed loop (${o.concurrency} in flight): ${Math.round(c.all.ok / c.seconds)} 2xx/s, goodput ${Math.round(estimate)}/s, p99 ${c.all.latency.p99.toFixed(0)} ms`);
  const steps: CapacityStep[] = [];
  const tryRate = async (rate: number) => {
    await sleep(1_000);
    const { result } = await runMeasured(gen, server, [{ name: 'step', rate, seconds: o.stepSeconds }], 'none');
    const p = result.phases[0]!;
    const goodput = p.all.good / p.seconds;
    const step = { rate, goodput, p99: p.all.latency.p99, pass: goodput >= 0.95 * rate && p.all.latency.p99 <= o.objectiveMs, lagP99: p.lag.p99 };
    steps.push(step);
    log(`  ${Math.round(rate)}/s offered: goodput ${Math.round(goodput)}/s, p99 ${step.p99.toFixed(0)} ms, generator lag p99 ${step.lagP99.toFixed(1)} ms → ${step.pass ? 'pass' : 'fail'}`);
    return step.pass;
  };
  // A step fails only if it fails twice: one burst of other work on a shared machine should not set capacity.
  const passes = async (rate: number) => (await tryRate(rate)) || (await tryRate(rate));
  let best = 0;
  const up = [0.6, 0.75, 0.9, 1.0, 1.1, 1.2, 1.35, 1.5, 1.7, 2.0];
  for (const f of up) {
    if (!(await passes(Math.round(estimate * f)))) break;
    best = Math.round(estimate * f);
  }
  if (best === 0) {
    for (const f of [0.45, 0.3, 0.2, 0.1]) {
      if (await tryRate(Math.round(estimate * f))) {
        best = Math.round(estimate * f);
        break;
      }
    }
  }
  if (best === 0) throw new Error('capacity search: even 10 % of the closed-loop estimate missed the objective');
  return { capacity: best, closedLoop: { concurrency: o.concurrency, goodput: estimate, p99: c.all.latency.p99 }, steps, given: false };
}
