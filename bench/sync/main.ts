import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { POSTGRES_ADMIN_URL, postgresReachable } from '../../test/support/engines.js';
import { benchLifecycle, envNumber, gitCommit, killAllChildren, loadAverage, machineFacts, packageVersion, REPO } from '../support.js';
import { killClientProcesses } from './fanout.js';
import { DOC_BEGIN, DOC_END, renderMarkdown, renderText, type SyncBenchReport } from './report.js';
import { runEngine, type EngineResult, type RunOptions } from './scenario.js';
import { log, openFileLimit, type EngineName } from './server.js';

// npm run bench:sync — issue 5, item 9. On a Levee API process on PostgreSQL, then on the
// embedded engine (BENCH_SYNC_ENGINES=postgres for PostgreSQL alone: ~1 min instead of ~3.5):
//   1. pull throughput: a 10,000-change backlog drained from no cursor (pages of 1000 and of 100),
//      against a raw keyset read of the same documents on the same engine;
//   2. push latency: 100-mutation batches (creates, then updates with baseVersion), against the
//      same 100 INSERTs (UPDATEs) in one raw transaction;
//   3. realtime fan-out: 10,000 WebSocket clients (in client processes of their own) subscribed to
//      one collection, one write → time until 99 % and 100 % have it; and memory per idle connection.
// Prints a table, writes bench/results/sync-<time>.json and, on a full-size run (or BENCH_DOCS=1),
// the "Offline sync and realtime (issue 5)" section of docs/benchmarks.md.

const DEFAULTS = { backlog: 10_000, clients: 10_000, pullRepeats: 5, pushBatches: 30 };
const list = (name: string, dflt: string) => (process.env[name] ?? dflt).split(',').map((s) => s.trim()).filter(Boolean);
const opts = {
  engines: list('BENCH_SYNC_ENGINES', 'postgres,embedded').map((e) => {
    if (e !== 'embedded' && e !== 'postgres') throw new Error(`BENCH_SYNC_ENGINES: "${e}" must be embedded or postgres`);
    return e as EngineName;
  }),
  backlog: envNumber('BENCH_SYNC_BACKLOG', DEFAULTS.backlog),
  seedBatch: envNumber('BENCH_SYNC_SEED_BATCH', 500),
  pullLimits: list('BENCH_SYNC_PULL_LIMITS', '1000,100').map(Number),
  pullRepeats: envNumber('BENCH_SYNC_PULL_REPEATS', DEFAULTS.pullRepeats),
  push: { size: envNumber('BENCH_SYNC_PUSH_SIZE', 100), batches: envNumber('BENCH_SYNC_PUSH_BATCHES', DEFAULTS.pushBatches), warmup: envNumber('BENCH_SYNC_PUSH_WARMUP', 5), spacedMs: envNumber('BENCH_SYNC_PUSH_SPACED_MS', 250) },
  clients: envNumber('BENCH_SYNC_CLIENTS', DEFAULTS.clients),
  processes: envNumber('BENCH_SYNC_CLIENT_PROCESSES', 2),
  concurrency: envNumber('BENCH_SYNC_CONNECT_CONCURRENCY', 100),
  writes: envNumber('BENCH_SYNC_WRITES', 5),
  gapMs: envNumber('BENCH_SYNC_WRITE_GAP_MS', 1000),
  writeTimeoutMs: envNumber('BENCH_SYNC_WRITE_TIMEOUT_MS', 10_000),
  connectTimeoutSeconds: envNumber('BENCH_SYNC_CONNECT_TIMEOUT', 120),
  settleSeconds: envNumber('BENCH_SYNC_SETTLE', 5),
  samples: envNumber('BENCH_SYNC_SAMPLES', 3),
  profile: process.env.BENCH_SYNC_PROFILE === '1',
  redisUrl: process.env.BENCH_SYNC_REDIS_URL ?? 'redis://127.0.0.1:6379',
  quietWait: envNumber('BENCH_QUIET_WAIT', 10),
  timeoutSeconds: envNumber('BENCH_TIMEOUT', 900),
  serverEnv: Object.fromEntries(
    list('BENCH_SYNC_SERVER_ENV', '').map((kv) => {
      const i = kv.indexOf('=');
      if (i <= 0) throw new Error(`BENCH_SYNC_SERVER_ENV: "${kv}" is not NAME=value`);
      return [kv.slice(0, i), kv.slice(i + 1)];
    }),
  ) as Record<string, string>,
};
if (opts.backlog < 1 || opts.backlog > 1_000_000) throw new Error('BENCH_SYNC_BACKLOG must be in [1, 1000000]');
if (opts.seedBatch < 1 || opts.seedBatch > 500) throw new Error('BENCH_SYNC_SEED_BATCH must be in [1, 500] (LEVEE_SYNC_PUSH_MAX_MUTATIONS)');
if (!opts.pullLimits.length || opts.pullLimits.some((l) => !Number.isInteger(l) || l < 1 || l > 1000)) throw new Error('BENCH_SYNC_PULL_LIMITS: page sizes in [1, 1000] (LEVEE_SYNC_PULL_LIMIT)');
if (opts.pullRepeats < 1 || opts.pullRepeats > 100) throw new Error('BENCH_SYNC_PULL_REPEATS must be in [1, 100]');
if (opts.push.size < 1 || opts.push.size > 500 || opts.push.batches < 1 || opts.push.batches > 1000) throw new Error('BENCH_SYNC_PUSH_SIZE must be in [1, 500], BENCH_SYNC_PUSH_BATCHES in [1, 1000]');
if (opts.clients > 100_000) throw new Error('BENCH_SYNC_CLIENTS must be at most 100000');
if (opts.processes < 1 || opts.processes > 8) throw new Error('BENCH_SYNC_CLIENT_PROCESSES must be in [1, 8]');
if (opts.concurrency < 1 || opts.concurrency > 5_000) throw new Error('BENCH_SYNC_CONNECT_CONCURRENCY must be in [1, 5000]');
if (opts.writes < 1 || opts.writes > 100) throw new Error('BENCH_SYNC_WRITES must be in [1, 100]');
if (opts.samples < 1 || opts.samples > 20) throw new Error('BENCH_SYNC_SAMPLES must be in [1, 20]');
const fullSize = opts.backlog === DEFAULTS.backlog && opts.clients === DEFAULTS.clients && opts.pullRepeats >= DEFAULTS.pullRepeats && opts.push.batches >= DEFAULTS.pushBatches && opts.engines.includes('postgres');
const writeDocs = process.env.BENCH_DOCS === '1' || (process.env.BENCH_DOCS !== '0' && fullSize);

// Open files: the API process holds one socket per client and each client process its share. Node
// raises its own soft limit to the hard limit when it starts, so every process here has the hard
// limit; a process cannot raise its hard limit (that needs privileges), so below what the run
// needs it can only warn — connections past the limit fail (EMFILE) and are reported.
function checkOpenFiles(): void {
  const need = opts.clients + 512;
  const { soft, hard } = openFileLimit();
  if (opts.clients > 0 && soft < need) {
    log(`warning: ulimit -n is ${soft} (hard limit ${hard}) and ${opts.clients.toLocaleString('en-US')} connections need about ${need}: connections past the limit will fail (EMFILE); raise the hard limit (ulimit -Hn, as root) or lower BENCH_SYNC_CLIENTS`);
  }
}

async function describeMachine(): Promise<Record<string, string | number>> {
  const facts = await machineFacts({ sharedBy: 'Levee, PostgreSQL, Redis, the client processes and the benchmark', ...(opts.engines.includes('postgres') ? { postgres: { adminUrl: POSTGRES_ADMIN_URL, redisUrl: opts.redisUrl } } : {}) });
  const pkg = packageVersion;
  facts['ws / @fastify/websocket / PGlite'] = `${pkg('ws')} / ${pkg('@fastify/websocket')} / ${pkg('@electric-sql/pglite')}`;
  const files = openFileLimit();
  facts['open files (ulimit -n, soft / hard)'] = `${files.soft} / ${files.hard}`;
  facts['Levee commit'] = gitCommit();
  facts['load average before the run'] = loadAverage().join(', ');
  return facts;
}

async function main(cleanups: (() => Promise<void>)[]) {
  const t0 = performance.now();
  log(`sync benchmark: engines ${opts.engines.join(', ')}; backlog ${opts.backlog.toLocaleString('en-US')} changes, push ${opts.push.size}-mutation batches, ${opts.clients.toLocaleString('en-US')} WebSocket clients`);
  if (opts.engines.includes('postgres') && !(await postgresReachable())) throw new Error(`PostgreSQL is not reachable at ${POSTGRES_ADMIN_URL} (set LEVEE_TEST_POSTGRES_URL, or BENCH_SYNC_ENGINES=embedded)`);
  checkOpenFiles();
  const machine = await describeMachine();
  const date = new Date().toISOString();
  const profileDir = opts.profile ? join(REPO, `bench/results/sync-profile-${date.replace(/[:.]/g, '-')}`) : undefined;
  const runOpts: RunOptions = {
    backlog: opts.backlog,
    seedBatch: opts.seedBatch,
    pullLimits: opts.pullLimits,
    pullRepeats: opts.pullRepeats,
    push: opts.push,
    redisUrl: opts.redisUrl,
    serverEnv: opts.serverEnv,
    quietWait: opts.quietWait,
    fanOut:
      opts.clients > 0
        ? {
            clients: opts.clients,
            processes: Math.min(opts.processes, opts.clients),
            concurrency: opts.concurrency,
            writes: opts.writes,
            gapMs: opts.gapMs,
            writeTimeoutMs: opts.writeTimeoutMs,
            connectTimeoutSeconds: opts.connectTimeoutSeconds,
            settleSeconds: opts.settleSeconds,
            samples: opts.samples,
          }
        : undefined,
  };

  const runs: EngineResult[] = [];
  for (const engine of opts.engines) {
    const engineProfileDir = profileDir && join(profileDir, engine);
    if (engineProfileDir) mkdirSync(engineProfileDir, { recursive: true });
    runs.push(await runEngine(engine, { ...runOpts, profileDir: engineProfileDir, fanOut: runOpts.fanOut && { ...runOpts.fanOut, profileDir: engineProfileDir } }, cleanups));
  }

  const report: SyncBenchReport = {
    date,
    command: 'npm run bench:sync',
    machine,
    settings: { ...opts, fullSize },
    runs,
    durationSeconds: (performance.now() - t0) / 1000,
  };
  const resultsDir = join(REPO, 'bench/results');
  mkdirSync(resultsDir, { recursive: true });
  const base = `bench/results/sync-${report.date.replace(/[:.]/g, '-')}`;
  writeFileSync(join(REPO, `${base}.json`), `${JSON.stringify(report, null, 2)}\n`);
  console.log(`\n${renderText(report)}`);
  console.log(`\nraw results: ${base}.json`);
  const failed = runs.flatMap((r) => r.errors.map((e) => `${r.engine} ${e.part}`));
  if (writeDocs && runs.some((r) => r.pull || r.push || r.fanOut)) writeDocsSection(report);
  else console.log('docs/benchmarks.md not written (shortened run; BENCH_DOCS=1 forces it)');
  if (failed.length) throw new Error(`failed: ${failed.join(', ')}`);
}

/**
 * Replaces the sync section of docs/benchmarks.md (between its markers), or puts it after the push
 * section (else at the end): the other sections stay as they are. `npm run bench` keeps everything
 * from the first overload/push section on, so this section survives it.
 */
function writeDocsSection(report: SyncBenchReport) {
  const path = join(REPO, 'docs/benchmarks.md');
  const doc = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmarks\n';
  const block = renderMarkdown(report);
  const a = doc.indexOf(DOC_BEGIN);
  const b = doc.indexOf(DOC_END, a);
  let next: string;
  if (a >= 0 && b > a) next = doc.slice(0, a) + block + doc.slice(b + DOC_END.length);
  else {
    const pushEnd = doc.indexOf('<!-- push:end -->');
    next = pushEnd >= 0 ? `${doc.slice(0, pushEnd + '<!-- push:end -->'.length)}\n\n${block}${doc.slice(pushEnd + '<!-- push:end -->'.length)}` : `${doc.trimEnd()}\n\n${block}\n`;
  }
  writeFileSync(path, next);
  console.log('wrote the "Offline sync and realtime (issue 5)" section of docs/benchmarks.md');
}

/** `--render <results.json>`: the table and docs section again from a saved run. */
function render(file: string) {
  const report = JSON.parse(readFileSync(file, 'utf8')) as SyncBenchReport;
  console.log(renderText(report));
  if (process.env.BENCH_DOCS === '1' || (process.env.BENCH_DOCS !== '0' && report.settings.fullSize === true)) writeDocsSection(report);
}

const { cleanups, runCleanups } = benchLifecycle(opts.timeoutSeconds, killClientProcesses);
const renderArg = process.argv.indexOf('--render');
(renderArg >= 0 ? Promise.resolve(render(process.argv[renderArg + 1] ?? '')) : main(cleanups))
  .then(async () => {
    await runCleanups();
    process.exit(0);
  })
  .catch(async (e: unknown) => {
    console.error('bench failed:', e);
    killClientProcesses();
    killAllChildren();
    await runCleanups();
    process.exit(1);
  });
