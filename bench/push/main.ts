import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { POSTGRES_ADMIN_URL, postgresReachable } from '../../test/support/engines.js';
import { benchLifecycle, envNumber, gitCommit, killAllChildren, loadAverage, machineFacts, packageVersion, REPO, waitForQuiet } from '../support.js';
import { flood, type FloodResult } from './flood.js';
import { DOC_BEGIN, DOC_END, renderMarkdown, renderText, type EngineRun, type PushBenchReport } from './report.js';
import { log, MockProcess, providerFiles, runEngine, type EngineName, type RunOptions } from './scenario.js';

// npm run bench:push — issue 4, item 9. 100,000 devices (APNs and FCM mixed), one push to all,
// delivered by the push role to local mock providers (their own process), on the embedded engine
// and on PostgreSQL + Redis: time from the 202 to the last accepted notification, notifications/s,
// the push role's CPU per notification and peak RSS, lost and duplicated notifications (counted
// per token at the mocks) — and, in the same run, the mocks' ceiling (a bare HTTP/2 client
// flooding them) with the ratio. Prints a table, writes bench/results/push-<time>.json and, on a
// full-size run (or BENCH_DOCS=1), the "Push fan-out (issue 4)" section of docs/benchmarks.md.

const DEFAULT_DEVICES = 100_000;
const list = (name: string, dflt: string) => (process.env[name] ?? dflt).split(',').map((s) => s.trim()).filter(Boolean);
const opts = {
  devices: envNumber('BENCH_PUSH_DEVICES', DEFAULT_DEVICES),
  engines: list('BENCH_PUSH_ENGINES', 'embedded,postgres').map((e) => {
    if (e !== 'embedded' && e !== 'postgres') throw new Error(`BENCH_PUSH_ENGINES: "${e}" must be embedded or postgres`);
    return e as EngineName;
  }),
  users: envNumber('BENCH_PUSH_USERS', 20),
  warmup: envNumber('BENCH_PUSH_WARMUP', 20),
  ceilingSeconds: envNumber('BENCH_PUSH_CEILING_SECONDS', 10),
  ceilingWarmup: envNumber('BENCH_PUSH_CEILING_WARMUP', 2),
  ceilingSessions: envNumber('BENCH_PUSH_CEILING_SESSIONS', 2),
  ceilingStreams: envNumber('BENCH_PUSH_CEILING_STREAMS', 200),
  sendTimeoutSeconds: envNumber('BENCH_PUSH_SEND_TIMEOUT', 240),
  pollMs: envNumber('BENCH_PUSH_POLL_MS', 250),
  /** 1: V8 CPU profile of the push role (node --cpu-prof) over the push; it costs some CPU, so not by default. */
  profile: process.env.BENCH_PUSH_PROFILE === '1',
  redisUrl: process.env.BENCH_PUSH_REDIS_URL ?? 'redis://127.0.0.1:6379',
  quietWait: envNumber('BENCH_QUIET_WAIT', 15),
  timeoutSeconds: envNumber('BENCH_TIMEOUT', 900),
  serverEnv: Object.fromEntries(
    list('BENCH_PUSH_SERVER_ENV', '').map((kv) => {
      const i = kv.indexOf('=');
      if (i <= 0) throw new Error(`BENCH_PUSH_SERVER_ENV: "${kv}" is not NAME=value`);
      return [kv.slice(0, i), kv.slice(i + 1)];
    }),
  ) as Record<string, string>,
};
if (opts.devices < 2 || opts.devices > 1_000_000) throw new Error('BENCH_PUSH_DEVICES must be in [2, 1000000]');
if (opts.warmup >= opts.devices) throw new Error('BENCH_PUSH_WARMUP must be below BENCH_PUSH_DEVICES');
if (opts.users < 1) throw new Error('BENCH_PUSH_USERS must be at least 1');
if (opts.ceilingSeconds <= 0 || opts.ceilingSeconds > 120) throw new Error('BENCH_PUSH_CEILING_SECONDS must be in (0, 120]');
if (opts.ceilingStreams < 1 || opts.ceilingStreams > 5_000 || opts.ceilingSessions < 1 || opts.ceilingSessions > 16) throw new Error('BENCH_PUSH_CEILING_STREAMS must be in [1, 5000], BENCH_PUSH_CEILING_SESSIONS in [1, 16]');
const fullSize = opts.devices === DEFAULT_DEVICES && opts.engines.length === 2;
const writeDocs = process.env.BENCH_DOCS === '1' || (process.env.BENCH_DOCS !== '0' && fullSize);

// ---- cleanup: children killed, databases dropped and Redis keys removed on every way out --------------
let mock: MockProcess | undefined;
const { cleanups, runCleanups } = benchLifecycle(opts.timeoutSeconds, () => mock?.kill());

async function describeMachine(): Promise<Record<string, string | number>> {
  const facts = await machineFacts({ sharedBy: 'the mocks, Levee, PostgreSQL, Redis and the benchmark', ...(opts.engines.includes('postgres') ? { postgres: { adminUrl: POSTGRES_ADMIN_URL, redisUrl: opts.redisUrl } } : {}) });
  const pkg = packageVersion;
  facts['BullMQ / PGlite'] = `${pkg('bullmq')} / ${pkg('@electric-sql/pglite')}`;
  facts.OpenSSL = (() => {
    try {
      return execFileSync('openssl', ['version'], { encoding: 'utf8', timeout: 5_000 }).trim();
    } catch {
      return process.versions.openssl ?? '?';
    }
  })();
  facts['Levee commit'] = gitCommit();
  facts['load average before the run'] = loadAverage().join(', ');
  return facts;
}

async function quiet(what: string): Promise<void> {
  if (opts.quietWait <= 0) return;
  const q = await waitForQuiet(opts.quietWait);
  if (!q.quiet) log(`note: the machine is busy (${q.busyCores.toFixed(2)} cores used by other processes) — ${what} runs anyway`);
}

async function main() {
  const t0 = performance.now();
  log(`push benchmark: ${opts.devices.toLocaleString('en-US')} devices, engines ${opts.engines.join(', ')}; ceiling ${opts.ceilingSeconds} s before each`);
  if (opts.engines.includes('postgres') && !(await postgresReachable())) throw new Error(`PostgreSQL is not reachable at ${POSTGRES_ADMIN_URL} (set LEVEE_TEST_POSTGRES_URL, or BENCH_PUSH_ENGINES=embedded)`);
  const machine = await describeMachine();

  const m = new MockProcess();
  mock = m;
  cleanups.push(() => m.stop());
  const ready = await m.start();
  log(`mock providers (pid ${ready.pid}): APNs ${ready.apnsUrl}, FCM ${ready.fcmUrl}`);
  const dir = mkdtempSync(join(tmpdir(), 'levee-bench-push-keys-'));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  const files = providerFiles(ready, dir);
  const runOpts: RunOptions = { devices: opts.devices, users: opts.users, warmup: opts.warmup, sendTimeoutSeconds: opts.sendTimeoutSeconds, pollMs: opts.pollMs, redisUrl: opts.redisUrl, serverEnv: opts.serverEnv };
  if (opts.profile) runOpts.profileDir = join(REPO, `bench/results/push-profile-${new Date().toISOString().replace(/[:.]/g, '-')}`);

  const runs: EngineRun[] = [];
  const failures: PushBenchReport['failures'] = [];
  for (const engine of opts.engines) {
    await quiet('the ceiling');
    await m.expect(`${engine}-ceiling`, 0);
    log(`ceiling: a bare HTTP/2 client floods the mocks for ${opts.ceilingSeconds} s (${opts.ceilingSessions} sessions × ${opts.ceilingStreams} streams per provider)…`);
    let ceiling: FloodResult;
    try {
      ceiling = await flood(ready, { seconds: opts.ceilingSeconds, warmupSeconds: opts.ceilingWarmup, sessionsPerProvider: opts.ceilingSessions, inFlightPerProvider: opts.ceilingStreams, mockPid: m.pid });
    } catch (e) {
      failures.push({ engine, error: `ceiling: ${String((e as Error)?.stack ?? e)}` });
      continue;
    }
    log(`ceiling: ${Math.round(ceiling.rate)}/s accepted (mock ${ceiling.mockCores.toFixed(2)} cores, client ${ceiling.clientCores.toFixed(2)}); ${ceiling.notOk} not 200, ${ceiling.errors} errors`);
    await quiet(`the ${engine} push`);
    try {
      runs.push({ ceiling, result: await runEngine(engine, m, files, runOpts, cleanups) });
    } catch (e) {
      log(`${engine} failed: ${String((e as Error)?.stack ?? e)}`);
      failures.push({ engine, error: String((e as Error)?.stack ?? e) });
    }
  }

  const report: PushBenchReport = {
    date: new Date().toISOString(),
    command: 'npm run bench:push',
    machine,
    settings: { ...opts, fullSize, mockApnsMaxConcurrentStreams: ready.apnsMaxConcurrentStreams },
    runs,
    failures,
    durationSeconds: (performance.now() - t0) / 1000,
  };
  const resultsDir = join(REPO, 'bench/results');
  mkdirSync(resultsDir, { recursive: true });
  const base = `bench/results/push-${report.date.replace(/[:.]/g, '-')}`;
  writeFileSync(join(REPO, `${base}.json`), `${JSON.stringify(report, null, 2)}\n`);
  console.log(`\n${renderText(report)}`);
  console.log(`\nraw results: ${base}.json`);
  if (writeDocs && runs.length) writeDocsSection(report);
  else console.log('docs/benchmarks.md not written (shortened run; BENCH_DOCS=1 forces it)');
  if (failures.length) throw new Error(`${failures.map((f) => f.engine).join(', ')} failed`);
}

/** Replaces the push section of docs/benchmarks.md (between its markers), or appends it: other sections stay as they are. */
function writeDocsSection(report: PushBenchReport) {
  const path = join(REPO, 'docs/benchmarks.md');
  const doc = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmarks\n';
  const block = renderMarkdown(report);
  const a = doc.indexOf(DOC_BEGIN);
  const b = doc.indexOf(DOC_END, a);
  writeFileSync(path, a >= 0 && b > a ? doc.slice(0, a) + block + doc.slice(b + DOC_END.length) : `${doc.trimEnd()}\n\n${block}\n`);
  console.log('wrote the "Push fan-out (issue 4)" section of docs/benchmarks.md');
}

/** `--render <results.json>`: the table and docs section again from a saved run. */
function render(file: string) {
  const report = JSON.parse(readFileSync(file, 'utf8')) as PushBenchReport;
  console.log(renderText(report));
  if (process.env.BENCH_DOCS === '1' || (process.env.BENCH_DOCS !== '0' && report.settings.fullSize === true)) writeDocsSection(report);
}

const renderArg = process.argv.indexOf('--render');
(renderArg >= 0 ? Promise.resolve(render(process.argv[renderArg + 1] ?? '')) : main())
  .then(async () => {
    await runCleanups();
    process.exit(0);
  })
  .catch(async (e: unknown) => {
    console.error('bench failed:', e);
    mock?.kill();
    killAllChildren();
    await runCleanups();
    process.exit(1);
  });
