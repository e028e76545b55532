import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createPostgresDatabase, POSTGRES_ADMIN_URL, postgresReachable } from '../../test/support/engines.js';
import { benchLifecycle, envNumber, gitCommit, killAllChildren, loadAverage, REPO, requestJson, waitForQuiet, type Child } from '../support.js';
import { FEED_PATH } from '../workloads.js';
import type { Mix, Phase, Policy } from './protocol.js';
import { DOC_BEGIN, DOC_END, generatorLimit, levelRow, recoveryOf, renderChart, renderMarkdown, renderText, type Ladder, type OverloadReport, type StormRow } from './report.js';
import { accessTokens, createSessions, findCapacity, GeneratorProcess, log, runMeasured, seedDatabase, settle, startServer, type Capacity } from './scenario.js';

// npm run bench:overload — issue 3's proof. Measures the capacity of a fresh Levee on real
// PostgreSQL for a feed + write + refresh mix, then offers 1×, 2×, 4× and 8× of it (open model,
// 30 s each) and drops back to 1× to time the recovery — once with protection on and once with
// LEVEE_PROTECTION=off — then runs a retry storm (naive vs disciplined clients). Prints a table,
// writes bench/results/overload-<time>.json and, on a full-length run, docs/overload.svg and the
// "Overload (issue 3)" section of docs/benchmarks.md. Knobs: see `opts` below or that section.

const list = (name: string, dflt: string) => (process.env[name] ?? dflt).split(',').map((s) => s.trim()).filter(Boolean);
const numbers = (name: string, dflt: string) =>
  list(name, dflt).map((s) => {
    const n = Number(s);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}: "${s}" is not a positive number`);
    return n;
  });
const onOff = (name: string, dflt: string) =>
  list(name, dflt)
    .filter((s) => s !== 'none')
    .map((s) => {
      if (s !== 'on' && s !== 'off') throw new Error(`${name}: "${s}" must be on or off`);
      return s === 'on';
    });

/** BENCH_MIX=reads=85,writes=12,refreshes=3 (relative weights) → shares that sum to 1. */
function mixOf(spec: string): Mix {
  const w: Record<string, number> = { reads: 0, writes: 0, refreshes: 0 };
  for (const kv of spec.split(',')) {
    const [k, v] = kv.split('=').map((x) => x.trim());
    if (!k || !(k in w) || !(Number(v) >= 0)) throw new Error(`BENCH_MIX: "${kv}" is not reads|writes|refreshes=<weight>`);
    w[k] = Number(v);
  }
  const sum = w.reads! + w.writes! + w.refreshes!;
  if (!(sum > 0)) throw new Error('BENCH_MIX: the weights sum to 0');
  return { reads: w.reads! / sum, writes: w.writes! / sum, refreshes: w.refreshes! / sum };
}

const DEFAULTS = { seconds: 30, levels: '1,2,4,8', warmup: 10, recoverySeconds: 15, protection: 'on,off', stormLevels: '2,4', stormSeconds: 30, stormProtection: 'on' };
const opts = {
  seconds: envNumber('BENCH_SECONDS', DEFAULTS.seconds),
  levels: numbers('BENCH_LEVELS', DEFAULTS.levels),
  warmup: envNumber('BENCH_WARMUP', DEFAULTS.warmup),
  recoverySeconds: envNumber('BENCH_RECOVERY_SECONDS', DEFAULTS.recoverySeconds),
  protection: onOff('BENCH_PROTECTION', DEFAULTS.protection),
  stormLevels: numbers('BENCH_STORM_LEVELS', DEFAULTS.stormLevels),
  stormSeconds: envNumber('BENCH_STORM_SECONDS', DEFAULTS.stormSeconds),
  stormProtection: onOff('BENCH_STORM_PROTECTION', DEFAULTS.stormProtection),
  stormPolicies: list('BENCH_STORM_POLICIES', 'none,naive,disciplined').map((p) => {
    if (p !== 'none' && p !== 'naive' && p !== 'disciplined') throw new Error(`BENCH_STORM_POLICIES: "${p}" must be none, naive or disciplined`);
    return p as Policy;
  }),
  ladderPolicy: (process.env.BENCH_LADDER_POLICY ?? 'none') as Policy,
  capacity: envNumber('BENCH_CAPACITY', 0),
  stepSeconds: envNumber('BENCH_STEP_SECONDS', 5),
  closedConcurrency: envNumber('BENCH_CLOSED_CONCURRENCY', 32),
  connections: envNumber('BENCH_CONNECTIONS', 1000),
  timeoutMs: envNumber('BENCH_CLIENT_TIMEOUT_MS', 2000),
  objectiveMs: envNumber('BENCH_OBJECTIVE_MS', 250),
  users: envNumber('BENCH_USERS', 200),
  posts: envNumber('BENCH_POSTS', 5000),
  poolSize: envNumber('BENCH_POOL_SIZE', 0),
  maxSessions: envNumber('BENCH_MAX_SESSIONS', 300_000),
  timeoutSeconds: envNumber('BENCH_TIMEOUT', 2400),
  seed: envNumber('BENCH_SEED', 20261123),
  mix: mixOf(process.env.BENCH_MIX ?? 'reads=85,writes=12,refreshes=3'),
  quietWait: envNumber('BENCH_QUIET_WAIT', 30),
  /** Extra server settings, e.g. BENCH_SERVER_ENV=LEVEE_ADMISSION_MAX_LIMIT=64,LEVEE_DB_POOL_SIZE=20 */
  serverEnv: Object.fromEntries(
    list('BENCH_SERVER_ENV', '').map((kv) => {
      const i = kv.indexOf('=');
      if (i <= 0) throw new Error(`BENCH_SERVER_ENV: "${kv}" is not NAME=value`);
      return [kv.slice(0, i), kv.slice(i + 1)];
    }),
  ) as Record<string, string>,
};
if (!['none', 'naive', 'disciplined'].includes(opts.ladderPolicy)) throw new Error('BENCH_LADDER_POLICY must be none, naive or disciplined');
if (opts.seconds <= 0 || opts.seconds > 600 || opts.stormSeconds > 600) throw new Error('BENCH_SECONDS and BENCH_STORM_SECONDS must be in (0, 600]');
const fullLength =
  opts.seconds === DEFAULTS.seconds &&
  opts.levels.join(',') === DEFAULTS.levels &&
  opts.recoverySeconds === DEFAULTS.recoverySeconds &&
  opts.protection.length === 2 &&
  opts.stormLevels.join(',') === DEFAULTS.stormLevels &&
  opts.stormSeconds === DEFAULTS.stormSeconds &&
  opts.stormProtection.length > 0;
const writeDocs = process.env.BENCH_DOCS === '1' || (process.env.BENCH_DOCS !== '0' && fullLength);
const estimatedMinutes =
  (60 +
    opts.protection.length * (opts.warmup + opts.levels.length * opts.seconds + opts.recoverySeconds + 25) +
    opts.stormProtection.length * opts.stormPolicies.length * opts.stormLevels.length * (opts.warmup + opts.stormSeconds + 12)) /
  60;

// ---- cleanup: children are killed and the database dropped on every way out -----------------------
let gen: GeneratorProcess | undefined;
const { cleanups, runCleanups } = benchLifecycle(opts.timeoutSeconds, () => gen?.kill());

// ---- steps ---------------------------------------------------------------------------------------

async function checkServer(url: string, token: string, refreshToken: string) {
  const feed = await requestJson<{ items?: unknown[] }>('GET', url + FEED_PATH, { token });
  const write = await requestJson<{ id?: string }>('POST', `${url}/v1/collections/posts/documents`, { token, body: { title: 'check' } });
  const refresh = await requestJson<{ refreshToken?: string }>('POST', `${url}/v1/auth/refresh`, { body: { refreshToken } });
  if (feed.status !== 200 || feed.body.items?.length !== 20) throw new Error(`feed check: ${feed.status} ${JSON.stringify(feed.body).slice(0, 300)}`);
  if (write.status !== 201) throw new Error(`write check: ${write.status} ${JSON.stringify(write.body).slice(0, 300)}`);
  if (refresh.status !== 200) throw new Error(`refresh check: ${refresh.status} ${JSON.stringify(refresh.body).slice(0, 300)}`);
}

function machineFacts(pgVersion: string): Record<string, string | number> {
  const cpuModel = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model ?? 'unknown';
  const pkg = (name: string) => (JSON.parse(readFileSync(join(REPO, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  const commit = gitCommit();
  return {
    CPU: `${cpuModel}, ${cpus().length} cores (shared by the generator, the server and PostgreSQL)`,
    cores: cpus().length,
    memory: `${Math.round(totalmem() / 2 ** 30)} GB`,
    kernel: release(),
    Node: process.version,
    PostgreSQL: `${pgVersion} (local, default configuration, loopback TCP)`,
    'undici / hdr-histogram-js': `${pkg('undici')} / ${pkg('hdr-histogram-js')}`,
    'Levee commit': commit,
    'load average before the run': loadAverage().join(', '),
  };
}

/** Waits (bounded) for the rest of the machine to go quiet before a run; returns the cores it was using. */
async function quiet(what: string): Promise<number> {
  if (opts.quietWait <= 0) return NaN;
  const q = await waitForQuiet(opts.quietWait);
  if (!q.quiet) log(`note: the machine is busy (${q.busyCores.toFixed(2)} cores used by other processes) — ${what} runs anyway`);
  return q.busyCores;
}

async function main() {
  log(`overload benchmark: levels ${opts.levels.join('×, ')}× for ${opts.seconds} s (protection ${opts.protection.map((p) => (p ? 'on' : 'off')).join(' then ')}), storm ${opts.stormLevels.join('×, ')}× for ${opts.stormSeconds} s; about ${Math.round(estimatedMinutes)} min`);
  if (!(await postgresReachable())) throw new Error(`PostgreSQL is not reachable at ${POSTGRES_ADMIN_URL} (set LEVEE_TEST_POSTGRES_URL)`);
  const db = await createPostgresDatabase();
  if (process.env.BENCH_KEEP !== '1') cleanups.push(db.drop);
  const url = db.url;
  log(`database ${new URL(url).pathname.slice(1)}; seeding ${opts.users} users and ${opts.posts} posts…`);
  const seeded = await seedDatabase(url, opts.users, opts.posts);
  const pgVersion = await (async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query<{ v: string }>('SELECT version() AS v')).rows[0]!.v.split(' on ')[0]!;
    } finally {
      await c.end();
    }
  })();
  const machine = machineFacts(pgVersion);

  const g = new GeneratorProcess();
  gen = g;
  cleanups.push(() => g.stop());
  const server = { current: undefined as Child | undefined };
  cleanups.push(async () => server.current?.stop());
  const start = async (protection: boolean) => {
    await server.current?.stop();
    if (server.current) await settle(url);
    server.current = await startServer({ databaseUrl: url, protection, env: opts.serverEnv, ...(opts.poolSize ? { poolSize: opts.poolSize } : {}) });
    log(`server started (protection ${protection ? 'on' : 'off'}, pid ${server.current.pid})`);
    return server.current;
  };

  const firstProtection = opts.protection[0] ?? opts.stormProtection[0] ?? true;
  let s = await start(firstProtection);
  const [checkSession, ...userSessions] = await createSessions(url, opts.users + 1);
  const tokens = await accessTokens(s.url, userSessions);
  await checkServer(s.url, tokens[0]!, checkSession!);
  await g.init({ accessTokens: tokens, mix: opts.mix, connections: opts.connections, timeoutMs: opts.timeoutMs, objectiveMs: opts.objectiveMs, seed: opts.seed });

  // Every refresh may lose its session (a timeout), so the pool holds one per refresh a run can send.
  const topUp = async (phases: Phase[]) => {
    const need = Math.min(opts.maxSessions, Math.ceil(phases.reduce((n, p) => n + opts.mix.refreshes * (p.rate || 5_000) * p.seconds, 0)) + 2_000);
    if (need <= g.sessionsLeft) return;
    const t0 = performance.now();
    const fresh = await createSessions(url, need - g.sessionsLeft);
    g.addSessions(fresh);
    log(`created ${fresh.length} refresh sessions in ${((performance.now() - t0) / 1000).toFixed(1)} s (pool ${g.sessionsLeft})`);
  };

  // Capacity, on the first server.
  let capacity: Capacity;
  if (opts.capacity > 0) {
    capacity = { capacity: opts.capacity, closedLoop: { concurrency: 0, goodput: NaN, p99: NaN }, steps: [], given: true };
  } else {
    await quiet('the capacity search');
    log('measuring capacity…');
    await topUp([{ name: 'capacity', rate: 0, seconds: 7 + 10 * opts.stepSeconds }]);
    capacity = await findCapacity(g, s, { objectiveMs: opts.objectiveMs, stepSeconds: opts.stepSeconds, concurrency: opts.closedConcurrency });
  }
  const C = capacity.capacity;
  log(`capacity: ${C} req/s`);

  const ladders: Ladder[] = [];
  const storm: StormRow[] = [];
  const stormWindows: OverloadReport['stormWindows'] = [];
  const stormServerExited: string[] = [];
  const startedAt = new Date().toISOString();
  const reportNow = (): OverloadReport => ({
    date: new Date().toISOString(),
    command: 'npm run bench:overload',
    machine,
    settings: { ...opts, protection: opts.protection.map((p) => (p ? 'on' : 'off')), stormProtection: opts.stormProtection.map((p) => (p ? 'on' : 'off')), fullLength, estimatedMinutes, seeded },
    capacity,
    ladders,
    storm,
    stormWindows,
    stormServerExited,
  });
  // After every run, what is done so far: a run that is stopped half-way still leaves its figures.
  const partial = join(REPO, `bench/results/overload-${startedAt.replace(/[:.]/g, '-')}.partial.json`);
  const saveProgress = () => {
    mkdirSync(join(REPO, 'bench/results'), { recursive: true });
    writeFileSync(partial, `${JSON.stringify(reportNow(), null, 2)}\n`);
  };
  for (const protection of opts.protection) {
    s = await start(protection); // every ladder on a fresh server, the same way
    const phases: Phase[] = [
      // A freshly started server is cold (JIT, caches, pools): warm it at half the capacity first.
      ...(opts.warmup > 0 ? [{ name: 'warm-up', rate: Math.round(C / 2), seconds: opts.warmup }] : []),
      ...opts.levels.map((x) => ({ name: `${x}×`, rate: Math.round(x * C), seconds: opts.seconds })),
      ...(opts.recoverySeconds > 0 ? [{ name: 'recovery 1×', rate: C, seconds: opts.recoverySeconds }] : []),
    ];
    await topUp(phases);
    const busyBefore = await quiet('the ladder');
    log(`ladder, protection ${protection ? 'on' : 'off'}: ${phases.map((p) => `${p.name} ${p.rate}/s`).join(', ')}`);
    const run = await runMeasured(g, s, phases, opts.ladderPolicy);
    const rows = run.result.phases.map((p, k) => {
      const level = phases[k]!.name === 'warm-up' ? undefined : phases[k]!.name === 'recovery 1×' ? 1 : opts.levels[k - (opts.warmup > 0 ? 1 : 0)];
      return levelRow(level, p, run.server[k]!, C, opts.objectiveMs);
    });
    const base = phases.findIndex((p) => p.name === '1×');
    const rec = phases.findIndex((p) => p.name === 'recovery 1×');
    ladders.push({
      protection,
      policy: opts.ladderPolicy,
      rows,
      recovery: base >= 0 && rec >= 0 ? recoveryOf(run.result.windows, base, rec, opts.objectiveMs) : undefined,
      busyBefore,
      rssMb: run.rss,
      windows: run.result.windows,
      serverExited: run.serverExited,
      abandoned: run.result.abandoned,
      sessionsLost: run.result.phases.reduce((n, p) => n + p.sessionsLost, 0),
      refreshUnderflow: run.result.phases.reduce((n, p) => n + p.refreshUnderflow, 0),
    });
    if (run.serverExited) log(`the server exited during the run:\n${s.output().slice(-3000)}`);
    saveProgress();
    console.log(renderText({ ...reportNow(), ladders: ladders.slice(-1), storm: [] }));
  }

  // One run per (level, client population), each on a fresh server, the populations interleaved
  // level by level so that background load on a shared machine falls on all of them alike.
  for (const protection of opts.stormProtection) {
    for (const level of opts.stormLevels) {
      for (const policy of opts.stormPolicies) {
        s = await start(protection);
        const phases: Phase[] = [...(opts.warmup > 0 ? [{ name: 'warm-up', rate: Math.round(C / 2), seconds: opts.warmup }] : []), { name: `${level}×`, rate: Math.round(level * C), seconds: opts.stormSeconds }];
        await topUp(phases);
        const busyBefore = await quiet('the retry storm');
        log(`retry storm, ${policy} clients, protection ${protection ? 'on' : 'off'}: ${phases.map((p) => `${p.name} ${p.rate}/s`).join(', ')}`);
        const run = await runMeasured(g, s, phases, policy);
        const k = phases.length - 1;
        const p = run.result.phases[k]!;
        stormWindows.push({ policy, protection, level, windows: run.result.windows });
        if (run.serverExited) stormServerExited.push(`${policy} clients at ${level}×, protection ${protection ? 'on' : 'off'}`);
        const row = levelRow(level, p, run.server[k]!, C, opts.objectiveMs);
        const requests = Object.values(p.byClass).reduce((n, c) => n + c.requests, 0);
        const succeeded = Object.values(p.byClass).reduce((n, c) => n + c.succeeded, 0);
        storm.push({ policy, protection, level, phase: p, server: run.server[k]!, busyBefore, goodput: row.goodput, goodputPct: row.goodputPct, amplification: p.all.attempts / Math.max(1, requests), succeededPct: succeeded / Math.max(1, requests), generatorLimit: row.generatorLimit });
        saveProgress();
      }
    }
  }
  storm.sort((a, b) => Number(b.protection) - Number(a.protection) || opts.stormPolicies.indexOf(a.policy) - opts.stormPolicies.indexOf(b.policy) || a.level - b.level);
  await server.current?.stop();
  server.current = undefined;

  const report = reportNow();
  const resultsDir = join(REPO, 'bench/results');
  mkdirSync(resultsDir, { recursive: true });
  const stamp = report.date.replace(/[:.]/g, '-');
  writeFileSync(join(resultsDir, `overload-${stamp}.json`), `${JSON.stringify(report, null, 2)}\n`);
  rmSync(partial, { force: true });
  publish(report, `bench/results/overload-${stamp}`, writeDocs);
}

/** Prints the tables and writes the chart (and, when asked, docs/overload.svg and the docs section). */
function publish(report: OverloadReport, base: string, docs: boolean) {
  const svg = renderChart(report);
  writeFileSync(join(REPO, `${base}.svg`), svg);
  console.log(`\n${renderText(report)}`);
  console.log(`\nraw results: ${base}.json (chart: ${base}.svg)`);
  if (docs) {
    writeFileSync(join(REPO, 'docs/overload.svg'), svg);
    const path = join(REPO, 'docs/benchmarks.md');
    const doc = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmarks\n';
    const block = renderMarkdown(report);
    const a = doc.indexOf(DOC_BEGIN);
    const b = doc.indexOf(DOC_END);
    writeFileSync(path, a >= 0 && b > a ? doc.slice(0, a) + block + doc.slice(b + DOC_END.length) : `${doc.trimEnd()}\n\n${block}\n`);
    console.log('wrote docs/overload.svg and the "Overload (issue 3)" section of docs/benchmarks.md');
  } else {
    console.log('docs/ not written (shortened run; BENCH_DOCS=1 forces it)');
  }
}

/** `--render <results.json>`: the tables, chart and docs again from a saved run (e.g. after changing the report). */
async function render(file: string) {
  const report = JSON.parse(readFileSync(file, 'utf8')) as OverloadReport;
  const objectiveMs = Number(report.settings.objectiveMs ?? 250);
  for (const row of [...report.ladders.flatMap((l) => l.rows), ...report.storm]) row.generatorLimit = generatorLimit(row.phase, objectiveMs);
  for (const l of report.ladders) {
    const base = l.rows.findIndex((row) => row.name === '1×');
    const rec = l.rows.findIndex((row) => row.name === 'recovery 1×');
    l.recovery = base >= 0 && rec >= 0 ? recoveryOf(l.windows, base, rec, objectiveMs) : undefined;
  }
  publish(report, file.replace(/\.json$/, ''), process.env.BENCH_DOCS === '1' || (process.env.BENCH_DOCS !== '0' && report.settings.fullLength === true));
}

const renderArg = process.argv.indexOf('--render');
(renderArg >= 0 ? render(process.argv[renderArg + 1] ?? '') : main())
  .then(async () => {
    await runCleanups();
    process.exit(0);
  })
  .catch(async (e: unknown) => {
    console.error('bench failed:', e);
    gen?.kill();
    killAllChildren();
    await runCleanups();
    process.exit(1);
  });
