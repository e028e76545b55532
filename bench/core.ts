import autocannon, { type Options, type Result } from 'autocannon';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { loadConfig } from '../src/config/load.js';
import { SETTINGS } from '../src/config/settings.js';
import { migrateDatabase, openDatabase } from '../src/roles/compose.js';
import { createPostgresDatabase, POSTGRES_ADMIN_URL, postgresReachable } from '../test/support/engines.js';
import { summariseProfile, type ProfileSummary } from './profile.js';
import { renderMarkdown, renderTable } from './report.js';
import { emailOf, BENCH_PASSWORD, seed, type Seeded } from './seed.js';
import {
  cpuSecondsOf,
  cpuSecondsOfCommand,
  envNumber,
  freePort,
  gitCommit,
  inheritedEnv,
  killAllChildren,
  loadAverage,
  machineCpu,
  mapLimit,
  memoryOf,
  REPO,
  requestJson,
  startChild,
  waitForQuiet,
  type Child,
} from './support.js';
import { FEED_PATH, POST_BODY, WORKLOADS, type BenchContext, type WorkloadId } from './workloads.js';

// npm run bench — the core benchmark. For each engine (real PostgreSQL, then embedded PGlite):
// seed 1,000 users and 100,000 posts, start Levee as a child process (`levee start --roles api`),
// and drive five workloads with autocannon from this process; on PostgreSQL also measure a ceiling
// (bare Fastify + pg running W1's SQL). Prints a table, writes bench/results/core-<time>.json and
// (on a full-length run) docs/benchmarks.md. See docs/benchmarks.md for what each figure means.
//
// Environment (all optional): BENCH_DURATION (s, default 15), BENCH_WARMUP (s, 5),
// BENCH_CONNECTIONS (50), BENCH_USERS (1000), BENCH_POSTS (100000), BENCH_ENGINES
// (postgres,pglite), BENCH_PROFILE (engines to CPU-profile afterwards: pglite; "none" for none),
// BENCH_PROFILE_SECONDS (5), BENCH_QUIET_WAIT (s to wait before each workload for other processes
// to go quiet, 15; 0 skips), BENCH_POOL_SIZE (Levee's default), BENCH_DOCS (1 writes
// docs/benchmarks.md even on a shortened run, 0 never), BENCH_TIMEOUT (s, whole run, 1200).

const DEFAULTS = { duration: 15, warmup: 5, connections: 50, users: 1_000, posts: 100_000 };
const opts = {
  duration: envNumber('BENCH_DURATION', DEFAULTS.duration),
  warmup: envNumber('BENCH_WARMUP', DEFAULTS.warmup),
  connections: envNumber('BENCH_CONNECTIONS', DEFAULTS.connections),
  users: envNumber('BENCH_USERS', DEFAULTS.users),
  posts: envNumber('BENCH_POSTS', DEFAULTS.posts),
  poolSize: envNumber('BENCH_POOL_SIZE', SETTINGS.dbPoolSize.default),
  profileSeconds: envNumber('BENCH_PROFILE_SECONDS', 5),
  timeoutSeconds: envNumber('BENCH_TIMEOUT', 1_200),
  quietWait: envNumber('BENCH_QUIET_WAIT', 15),
  engines: (process.env.BENCH_ENGINES ?? 'postgres,pglite').split(',').map((s) => s.trim()).filter(Boolean) as Engine[],
  profile: (process.env.BENCH_PROFILE ?? 'pglite').split(',').map((s) => s.trim()).filter((s) => s && s !== 'none'),
};
const fullLength = opts.duration === DEFAULTS.duration && opts.warmup === DEFAULTS.warmup && opts.connections === DEFAULTS.connections && opts.users === DEFAULTS.users && opts.posts === DEFAULTS.posts;
const writeDocs = process.env.BENCH_DOCS === '1' || (process.env.BENCH_DOCS !== '0' && fullLength);

type Engine = 'postgres' | 'pglite';
for (const e of opts.engines) if (e !== 'postgres' && e !== 'pglite') throw new Error(`BENCH_ENGINES: unknown engine "${e}" (postgres, pglite)`);

const BENCH_CONFIG = join(REPO, 'bench/levee.bench.json');
const RESULTS_DIR = join(REPO, 'bench/results');

export interface Row {
  id: WorkloadId | 'C';
  name: string;
  describe: string;
  /** 2xx responses per second over the measured window. */
  rps: number;
  p50: number;
  p99: number;
  p999: number;
  requests: number;
  /** non-2xx responses + socket errors (timeouts included). */
  errors: number;
  non2xx: number;
  socketErrors: number;
  statusCodes: Record<string, number>;
  /** CPU used during the measured window, in cores (1.0 = one core busy). */
  cpu: { server: number; postgres: number; generator: number; other: number; machine: number; softirq: number; steal: number };
  seconds: number;
  /** Cores the rest of the machine was using just before the warm-up (after waiting for quiet). */
  busyBefore: number;
}

export interface EngineReport {
  engine: Engine;
  engineVersion: string;
  seeded: Seeded;
  signInSeconds: number;
  rows: Row[];
  ceiling?: Row;
  memory: { rssMb: number; peakMb: number };
  ceilingMemory?: { rssMb: number; peakMb: number };
  refreshUnderflow: number;
  profiles: { id: WorkloadId; summary: ProfileSummary }[];
}

export interface Report {
  date: string;
  command: string;
  machine: { cpu: string; cores: number; memoryGb: number; kernel: string; node: string; postgres: string; pglite: string; autocannon: string; commit: string };
  settings: typeof opts & { fullLength: boolean };
  engines: EngineReport[];
  loadBefore: number[];
}

// ---- cleanup: children are killed on every way out ---------------------------------------------
const cleanups: (() => Promise<void>)[] = [];
process.on('exit', killAllChildren);
let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    interrupted = true;
    console.error(`\nbench: ${sig}, stopping`);
    killAllChildren();
    void runCleanups().finally(() => process.exit(130));
  });
}
async function runCleanups() {
  for (const c of cleanups.splice(0).reverse()) await Promise.race([c().catch((e: unknown) => console.error('bench: cleanup failed:', e)), sleep(20_000)]);
}
const watchdog = setTimeout(() => {
  console.error(`bench: still running after ${opts.timeoutSeconds} s (BENCH_TIMEOUT), giving up`);
  killAllChildren();
  void runCleanups().finally(() => process.exit(1));
}, opts.timeoutSeconds * 1000);
watchdog.unref();

const log = (msg: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${msg}`);

// ---- measuring -----------------------------------------------------------------------------------
function snapshot(serverPid: number) {
  return { wall: performance.now(), gen: process.cpuUsage(), server: cpuSecondsOf(serverPid), postgres: cpuSecondsOfCommand('postgres'), machine: machineCpu() };
}

async function measure(id: Row['id'], name: string, describe: string, server: Child, options: Options): Promise<Row> {
  const base: Options = { connections: opts.connections, timeout: 10, ...options };
  const quiet = opts.quietWait > 0 ? await waitForQuiet(opts.quietWait) : { quiet: true, busyCores: NaN, waitedSeconds: 0 };
  if (!quiet.quiet) log(`note: the machine is busy (${quiet.busyCores.toFixed(2)} cores used by other processes) — ${id} is measured anyway`);
  if (opts.warmup > 0) await autocannon({ ...base, duration: opts.warmup });
  if (interrupted) throw new Error('interrupted');
  const a = snapshot(server.pid);
  const r: Result = await autocannon({ ...base, duration: opts.duration });
  const b = snapshot(server.pid);
  const wall = (b.wall - a.wall) / 1000;
  const gen = (b.gen.user - a.gen.user + b.gen.system - a.gen.system) / 1e6 / wall;
  const srv = (b.server - a.server) / wall;
  const pgc = (b.postgres - a.postgres) / wall;
  const machine = (b.machine.busy - a.machine.busy) / wall;
  const statusCodes = Object.fromEntries(Object.entries(r.statusCodeStats ?? {}).map(([k, v]) => [k, v.count]));
  return {
    id,
    name,
    describe,
    rps: r['2xx'] / r.duration,
    p50: r.latency.p50,
    p99: r.latency.p99,
    p999: r.latency.p99_9,
    requests: r.requests.total,
    errors: r.non2xx + r.errors,
    non2xx: r.non2xx,
    socketErrors: r.errors,
    statusCodes,
    cpu: {
      server: srv,
      postgres: pgc,
      generator: gen,
      other: Math.max(0, machine - srv - pgc - gen),
      machine,
      softirq: (b.machine.softirq - a.machine.softirq) / wall,
      steal: (b.machine.steal - a.machine.steal) / wall,
    },
    seconds: r.duration,
    busyBefore: quiet.busyCores,
  };
}

const fmtRow = (r: Row) =>
  `${r.id} ${r.name}: ${Math.round(r.rps)} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms, errors ${r.errors}${r.errors ? ` ${JSON.stringify(r.statusCodes)}` : ''} — CPU cores: server ${r.cpu.server.toFixed(2)}, postgres ${r.cpu.postgres.toFixed(2)}, autocannon ${r.cpu.generator.toFixed(2)}, other ${r.cpu.other.toFixed(2)} (softirq ${r.cpu.softirq.toFixed(2)}, steal ${r.cpu.steal.toFixed(2)})`;

// ---- one engine ----------------------------------------------------------------------------------
function serverEnv(engine: Engine, port: number, target: { databaseUrl?: string; dataDir?: string }): NodeJS.ProcessEnv {
  const env = inheritedEnv();
  Object.assign(env, {
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    LEVEE_CONFIG: BENCH_CONFIG,
    LEVEE_DB_POOL_SIZE: String(opts.poolSize),
    LEVEE_SHUTDOWN_GRACE_MS: '2000',
    LEVEE_ACCESS_TOKEN_TTL_SECONDS: '3600',
    // All the load comes from 127.0.0.1 and 100 users: per-IP and per-user rate limits would
    // measure the limiter (429s), not the request path.
    LEVEE_RATE_LIMIT_IP_PER_MINUTE: '10000000',
    LEVEE_RATE_LIMIT_IP_BURST: '1000000',
    LEVEE_RATE_LIMIT_USER_PER_MINUTE: '10000000',
    LEVEE_RATE_LIMIT_USER_BURST: '1000000',
  });
  if (engine === 'postgres') env.DATABASE_URL = target.databaseUrl;
  else env.LEVEE_DATA_DIR = target.dataDir;
  return env;
}

async function startLeveeChild(engine: Engine, target: { databaseUrl?: string; dataDir?: string }, extraNodeArgs: string[] = []): Promise<Child> {
  const port = await freePort();
  return startChild(`levee (${engine})`, [...extraNodeArgs, 'bin/levee.js', 'start', '--roles', 'api'], serverEnv(engine, port, target), port);
}

/**
 * After a write workload on PostgreSQL: VACUUM ANALYZE what it wrote, so that autovacuum (which
 * the new rows would trigger a few seconds later) does not run inside the next workload's window.
 */
async function settle(url: string, tables: string[]): Promise<void> {
  const t0 = performance.now();
  const c = new pg.Client({ connectionString: url, statement_timeout: 120_000 });
  await c.connect();
  try {
    await c.query(`VACUUM (ANALYZE) ${tables.join(', ')}`);
  } finally {
    await c.end();
  }
  log(`VACUUM ANALYZE ${tables.join(', ')}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

async function signIn(url: string, users: number[]): Promise<{ accessToken: string; refreshToken: string }[]> {
  return mapLimit(users, 4, async (i) => {
    const r = await requestJson<{ accessToken: string; refreshToken: string }>('POST', `${url}/v1/auth/signin`, { body: { email: emailOf(i), password: BENCH_PASSWORD, deviceName: `bench ${i}` } });
    if (r.status !== 200) throw new Error(`sign-in of ${emailOf(i)} failed: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  });
}

async function runEngine(engine: Engine): Promise<EngineReport> {
  log(`=== ${engine} ===`);
  let target: { databaseUrl?: string; dataDir?: string };
  if (engine === 'postgres') {
    if (!(await postgresReachable())) throw new Error(`PostgreSQL is not reachable at ${POSTGRES_ADMIN_URL} (set LEVEE_TEST_POSTGRES_URL, or BENCH_ENGINES=pglite)`);
    const created = await createPostgresDatabase();
    if (process.env.BENCH_KEEP !== '1') cleanups.push(created.drop);
    target = { databaseUrl: created.url };
    log(`database ${new URL(created.url).pathname.slice(1)}`);
  } else {
    const dataDir = mkdtempSync(join(tmpdir(), 'levee-bench-'));
    if (process.env.BENCH_KEEP !== '1') cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
    target = { dataDir };
    log(`data directory ${dataDir}`);
  }

  // Migrate and seed in this process, through Levee's own Db port; close before the server opens it.
  const config = loadConfig({ LEVEE_CONFIG: BENCH_CONFIG, ...(target.databaseUrl ? { DATABASE_URL: target.databaseUrl } : { LEVEE_DATA_DIR: target.dataDir }) });
  const db = await openDatabase(config);
  let seeded: Seeded;
  let engineVersion: string;
  try {
    await migrateDatabase(db, config);
    engineVersion = (await db.query<{ v: string }>('SELECT version() AS v')).rows[0]!.v;
    log(`seeding ${opts.users} users and ${opts.posts} posts…`);
    seeded = await seed(db, { users: opts.users, posts: opts.posts });
  } finally {
    await db.close();
  }
  log(`seeded in ${seeded.seconds.toFixed(1)} s`);

  // The ceiling (PostgreSQL only): same SQL through pg, same pool size, bare Fastify.
  let ceiling: Row | undefined;
  let ceilingMemory: EngineReport['ceilingMemory'];
  if (engine === 'postgres') {
    const port = await freePort();
    const env = { ...serverEnv(engine, port, target) };
    const c = await startChild('ceiling', ['--import', 'tsx', 'bench/ceiling-server.ts'], env, port);
    try {
      const check = await requestJson<{ items: unknown[] }>('GET', c.url + FEED_PATH);
      if (check.status !== 200 || check.body.items.length !== 20) throw new Error(`ceiling server answered ${check.status} ${JSON.stringify(check.body).slice(0, 300)}`);
      ceiling = await measure('C', 'ceiling: bare Fastify + pg, W1 SQL', `GET ${FEED_PATH} on a bare Fastify route running the same SELECT through pg (pool ${opts.poolSize})`, c, {
        url: c.url + FEED_PATH,
        headers: { authorization: 'Bearer x' },
      });
      ceilingMemory = memoryOf(c.pid);
      log(fmtRow(ceiling));
    } finally {
      await c.stop();
    }
  }

  const server = await startLeveeChild(engine, target);
  const rows: Row[] = [];
  let memory: EngineReport['memory'];
  let ctx: BenchContext;
  let signInSeconds: number;
  try {
    const t0 = performance.now();
    const bearerUsers = Array.from({ length: Math.min(100, opts.users) }, (_, i) => i);
    const refreshUsers = Array.from({ length: Math.max(200, opts.connections * 4) }, (_, i) => (100 + i) % opts.users);
    const bearer = await signIn(server.url, bearerUsers);
    const refresh = await signIn(server.url, refreshUsers);
    signInSeconds = (performance.now() - t0) / 1000;
    log(`signed in ${bearer.length + refresh.length} sessions in ${signInSeconds.toFixed(1)} s`);
    ctx = {
      url: server.url,
      accessTokens: bearer.map((s) => s.accessToken),
      refreshPool: refresh.map((s) => s.refreshToken),
      refreshUnderflow: 0,
      hotPostId: seeded.hotPostId,
      connections: opts.connections,
    };
    for (const w of WORKLOADS) {
      await w.check(ctx);
      const row = await measure(w.id, w.name, w.describe, server, w.options(ctx));
      rows.push(row);
      log(fmtRow(row));
      if (w.writes && target.databaseUrl) await settle(target.databaseUrl, w.writes);
    }
    memory = memoryOf(server.pid);
    log(`server RSS after the run: ${memory.rssMb.toFixed(0)} MB (peak ${memory.peakMb.toFixed(0)} MB)`);
  } catch (e) {
    console.error(`server output:\n${server.output()}`);
    throw e;
  } finally {
    await server.stop();
  }

  // Where the time goes: a second, short run of W1/W2/W3/W5 under the V8 CPU profiler.
  const profiles: EngineReport['profiles'] = [];
  if (opts.profile.includes(engine) && opts.profileSeconds > 0) {
    const dir = mkdtempSync(join(tmpdir(), 'levee-bench-prof-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    log(`CPU profile (${opts.profileSeconds} s per workload)…`);
    const prof = await startLeveeChild(engine, target, ['--cpu-prof', '--cpu-prof-dir', dir]);
    const windows: { id: WorkloadId; fromUs: number; toUs: number }[] = [];
    try {
      const pctx = { ...ctx, url: prof.url };
      for (const w of WORKLOADS.filter((x) => x.id !== 'W4')) {
        await autocannon({ connections: opts.connections, timeout: 10, ...w.options(pctx), duration: 1 });
        const fromUs = Number(process.hrtime.bigint() / 1000n);
        await autocannon({ connections: opts.connections, timeout: 10, ...w.options(pctx), duration: opts.profileSeconds });
        windows.push({ id: w.id, fromUs, toUs: Number(process.hrtime.bigint() / 1000n) });
      }
    } finally {
      await prof.stop();
    }
    const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    if (!file) {
      log(`no CPU profile was written (server output: ${prof.output().slice(-500)})`);
    } else {
      mkdirSync(RESULTS_DIR, { recursive: true });
      const kept = join(RESULTS_DIR, `${engine}-${new Date().toISOString().replace(/[:.]/g, '-')}.cpuprofile`);
      copyFileSync(join(dir, file), kept);
      log(`profile kept in ${kept} (open it in Chrome DevTools → Performance, or speedscope)`);
      for (const w of windows) profiles.push({ id: w.id, summary: summariseProfile(kept, w) });
      for (const p of profiles) log(`${p.id}: ${p.summary.components.slice(0, 5).map((c) => `${c.name} ${(c.share * 100).toFixed(0)}%`).join(', ')}`);
    }
  }

  return { engine, engineVersion, seeded, signInSeconds, rows, ...(ceiling ? { ceiling, ceilingMemory } : {}), memory, refreshUnderflow: ctx.refreshUnderflow, profiles };
}

// ---- main ----------------------------------------------------------------------------------------
function machineFacts(pgVersion: string): Report['machine'] {
  const cpuModel = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model ?? 'unknown';
  const pkg = (name: string) => (JSON.parse(readFileSync(join(REPO, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  const commit = gitCommit();
  return {
    cpu: cpuModel,
    cores: cpus().length,
    memoryGb: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
    postgres: pgVersion,
    pglite: pkg('@electric-sql/pglite'),
    autocannon: pkg('autocannon'),
    commit,
  };
}

async function main() {
  const loadBefore = loadAverage();
  log(`core benchmark: ${opts.engines.join(', ')}; ${opts.connections} connections, ${opts.warmup} s warm-up + ${opts.duration} s measured per workload; W2 body ${POST_BODY.length} bytes`);
  if (loadBefore[0]! > 0.5) log(`note: load average before the run is ${loadBefore.join(' ')} — other work on this machine will show in the figures`);
  const engines: EngineReport[] = [];
  for (const e of opts.engines) engines.push(await runEngine(e));

  const pg = engines.find((e) => e.engine === 'postgres');
  const report: Report = {
    date: new Date().toISOString(),
    command: 'npm run bench',
    machine: machineFacts(pg ? pg.engineVersion.split(' on ')[0]! : 'not measured'),
    settings: { ...opts, fullLength },
    engines,
    loadBefore,
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  const jsonPath = join(RESULTS_DIR, `core-${report.date.replace(/[:.]/g, '-')}.json`);
  writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);

  console.log(`\n${renderTable(report)}`);
  console.log(`raw results: ${jsonPath}`);
  if (writeDocs) {
    // This benchmark owns the top of the file; the sections after it (bench:overload, bench:push
    // and the notes between them) belong to the other benchmarks: keep them as they are.
    const docPath = join(REPO, 'docs/benchmarks.md');
    const current = existsSync(docPath) ? readFileSync(docPath, 'utf8') : '';
    const others = /<!-- (?:overload|push):begin/.exec(current);
    writeFileSync(docPath, `${renderMarkdown(report).trimEnd()}\n${others ? `\n${current.slice(others.index).trimEnd()}\n` : ''}`);
    console.log('wrote docs/benchmarks.md');
  } else {
    console.log('docs/benchmarks.md not written (shortened run; BENCH_DOCS=1 forces it)');
  }
}

main()
  .then(async () => {
    await runCleanups();
    process.exit(0);
  })
  .catch(async (e: unknown) => {
    console.error('bench failed:', e);
    killAllChildren();
    await runCleanups();
    process.exit(1);
  });
