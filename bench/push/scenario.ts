import { execFile, fork, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { createPgliteDb } from '../../src/db/adapters/pglite.js';
import type { Queryable } from '../../src/db/port.js';
import { createPostgresDatabase } from '../../test/support/engines.js';
import { summariseProfile, type ProfileSummary } from '../profile.js';
import { cpuSecondsOf, cpuSecondsOfCommand, deleteRedisPrefix, freePort, inheritedEnv, machineCpu, memoryOf, REPO, startChild, type Child } from '../support.js';
import { FCM_FILLER, TEAM, type FromMock, type MockReady, type MockReport, type ToMock } from './protocol.js';

// One engine's run of the push benchmark: storage prepared and seeded straight by SQL, Levee
// started against the mock providers (one process with every role on the embedded engine; an
// api+worker process and a push process on PostgreSQL + Redis), a small warm-up push, then one
// push to every device, timed from the API's 202 to the mock's last accepted notification.

export const log = (msg: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${msg}`);

// ---- the mock-provider process -----------------------------------------------------------------

export class MockProcess {
  readonly proc: ChildProcess;
  ready!: MockReady;
  private listeners = new Set<(m: FromMock) => void>();
  private exitInfo: string | undefined;

  constructor() {
    this.proc = fork(join(REPO, 'bench/push/mock-process.ts'), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.proc.on('message', (m: FromMock) => {
      if (m.type === 'error') console.error(`mock process: ${m.message}`);
      for (const l of [...this.listeners]) l(m);
    });
    this.proc.on('exit', (code, signal) => (this.exitInfo = `code ${code} signal ${signal}`));
  }

  get pid(): number {
    return this.proc.pid!;
  }

  /** Waits (bounded) for the first message that `accept` takes. */
  next<T extends FromMock>(accept: (m: FromMock) => m is T, timeoutMs: number, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const done = (e: Error | undefined, m?: T) => {
        clearTimeout(timer);
        clearInterval(watch);
        this.listeners.delete(listener);
        if (e) reject(e);
        else resolve(m!);
      };
      const listener = (m: FromMock) => {
        if (accept(m)) done(undefined, m);
      };
      const timer = setTimeout(() => done(new Error(`mock process: no ${what} within ${timeoutMs} ms`)), timeoutMs);
      const watch = setInterval(() => this.exitInfo && done(new Error(`mock process exited (${this.exitInfo})`)), 200);
      this.listeners.add(listener);
    });
  }

  onMessage(l: (m: FromMock) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  send(m: ToMock): void {
    this.proc.send(m);
  }

  async start(): Promise<MockReady> {
    this.ready = await this.next((m): m is MockReady => m.type === 'ready', 60_000, 'ready message');
    return this.ready;
  }

  /** Forgets what was delivered; counts towards `n` expected devices from now on. */
  async expect(label: string, n: number): Promise<void> {
    const p = this.next((m): m is MockReport => m.type === 'report' && m.label === label, 30_000, `reset for ${label}`);
    this.send({ type: 'expect', label, n });
    await p;
  }

  async report(timeoutMs = 60_000): Promise<MockReport> {
    const p = this.next((m): m is MockReport => m.type === 'report', timeoutMs, 'report');
    this.send({ type: 'report' });
    return p;
  }

  async stop(): Promise<void> {
    if (this.exitInfo) return;
    const exited = new Promise<void>((r) => this.proc.once('exit', () => r()));
    try {
      this.send({ type: 'exit' });
    } catch {
      /* channel closed */
    }
    if (!(await Promise.race([exited.then(() => true), sleep(5_000).then(() => false)]))) this.proc.kill('SIGKILL');
  }

  kill(): void {
    if (!this.exitInfo) this.proc.kill('SIGKILL');
  }
}

// ---- seeding -------------------------------------------------------------------------------------

export interface Seeded {
  devices: number;
  users: number;
  warmupDevices: number;
  warmupUserId: string;
  seconds: number;
}

/**
 * `devices` devices (even indexes APNs, odd FCM; ids random so the fan-out's device order mixes
 * them) under `users` users, the first `warmup` of them under a user of their own, the warm-up push's
 * audience. One INSERT … SELECT generate_series per table.
 */
export async function seedDevices(db: Queryable, o: { devices: number; users: number; warmup: number }): Promise<Seeded> {
  const t0 = performance.now();
  const warmupUserId = randomUUID();
  await db.query(`INSERT INTO users (id, email, role) VALUES ($1, 'push-bench-warmup@bench.levee.test', 'user')`, [warmupUserId]);
  await db.query(`INSERT INTO users (id, email, role) SELECT gen_random_uuid(), 'push-bench-' || u || '@bench.levee.test', 'user' FROM generate_series(1, $1::int) AS u`, [o.users]);
  await db.query(
    `INSERT INTO devices (id, user_id, platform, token, app_version, locale)
     SELECT gen_random_uuid(),
            CASE WHEN i < $3::int THEN $4::uuid ELSE u.ids[1 + (i % cardinality(u.ids))] END,
            CASE WHEN i % 2 = 0 THEN 'apns' ELSE 'fcm' END,
            CASE WHEN i % 2 = 0 THEN lpad(to_hex(i), 64, '0') ELSE 'bench' || i || ':' || $2::text END,
            '1.0.0', 'en'
       FROM generate_series(0, $1::int - 1) AS i,
            (SELECT array_agg(id ORDER BY id) AS ids FROM users WHERE id <> $4::uuid) AS u`,
    [o.devices, FCM_FILLER, o.warmup, warmupUserId],
  );
  await db.exec('VACUUM ANALYZE users');
  await db.exec('VACUUM ANALYZE devices');
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM devices');
  if (rows[0]?.n !== o.devices) throw new Error(`seeded ${rows[0]?.n} devices instead of ${o.devices}`);
  return { devices: o.devices, users: o.users + 1, warmupDevices: o.warmup, warmupUserId, seconds: (performance.now() - t0) / 1000 };
}

const pgQueryable = (c: pg.Client): Queryable => ({
  query: async <T>(sql: string, params?: readonly unknown[]) => {
    const r = await c.query(sql, params as unknown[]);
    return { rows: r.rows as T[], rowCount: r.rowCount ?? 0 };
  },
  exec: async (sql) => void (await c.query(sql)),
});

function runCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['bin/levee.js', ...args], { cwd: REPO, env, timeout: timeoutMs, killSignal: 'SIGKILL' }, (e, stdout, stderr) =>
      e ? reject(new Error(`levee ${args.join(' ')} failed: ${e.message}\n${stdout}\n${stderr}`)) : resolve(stdout),
    );
  });
}

// ---- one engine's run ----------------------------------------------------------------------------

export type EngineName = 'embedded' | 'postgres';

export interface ProcessFigures {
  name: string;
  roles: string;
  /** CPU seconds (user + sys) from just before the POST to the push being done. */
  cpuSeconds: number;
  /** The same per notification, µs. */
  cpuUsPerNotification: number;
  /** CPU seconds per second while idle, just before the push (a baseline). */
  idleCores: number;
  /** VmHWM at the end (peak RSS over the process's life), and the largest VmRSS sampled during the push. */
  peakRssMb: number;
  maxRssDuringPushMb: number;
  /** VmRSS just before the POST: what the process holds before this push. */
  rssBeforeMb: number;
}

export interface TimelinePoint {
  t: number;
  state: string;
  targeted: number;
  sent: number;
  failed: number;
  pruned: number;
  pushCores: number;
  /** How long this GET /v1/push/{id} took (the API's latency during the push). */
  getMs: number;
}

export interface EngineResult {
  engine: EngineName;
  description: string;
  devices: number;
  seeded: Seeded;
  /** ms: the POST /v1/push round trip. */
  apiMs: number;
  /** ms from the 202 to the mock's first and last accepted notification, and to the first poll that saw `done`. */
  firstAcceptedMs: number;
  lastAcceptedMs: number;
  doneSeenMs: number;
  completed: boolean;
  /** Notifications accepted per second: all of them over 202 → last accepted. */
  rate: number;
  /** Accepted per second between the first and the last accepted notification (the sending itself). */
  sendingRate: number;
  progress: Record<string, unknown>;
  mock: MockReport;
  /** The push role's process (on embedded: the one process with every role). */
  push: ProcessFigures;
  others: ProcessFigures[];
  /** Cores used over the push (202 → done): PostgreSQL backends, Redis, the mock process, the whole machine. */
  cores: { postgres: number; redis: number; mock: number; machine: number; steal: number };
  /** The mock process's CPU per accepted notification, µs. */
  mockCpuUsPerNotification: number;
  /** levee_push_notifications_total from the push role's /metrics. */
  outcomes: Record<string, number>;
  timeline: TimelinePoint[];
  /** With BENCH_PUSH_PROFILE=1: the push role's CPU profile over the push (202 → done). */
  profile?: ProfileSummary & { file: string };
  seconds: number;
}

export interface RunOptions {
  devices: number;
  users: number;
  warmup: number;
  sendTimeoutSeconds: number;
  pollMs: number;
  redisUrl: string;
  serverEnv: Record<string, string>;
  /** A directory for the push role's V8 CPU profile (node --cpu-prof); undefined: no profile. */
  profileDir?: string;
}

interface Storage {
  env: NodeJS.ProcessEnv;
  seed(): Promise<Seeded>;
  cleanup(): Promise<void>;
}

const SERVER_KEY = randomBytes(24).toString('hex');

async function prepareStorage(engine: EngineName, o: RunOptions, files: Record<string, string>, cleanups: (() => Promise<void>)[]): Promise<Storage> {
  const base = levEnv(files, o);
  if (engine === 'embedded') {
    const dir = mkdtempSync(join(tmpdir(), 'levee-bench-push-'));
    const cleanup = async () => rmSync(dir, { recursive: true, force: true });
    cleanups.push(cleanup);
    const env = { ...base, LEVEE_DATA_DIR: dir, LEVEE_QUEUE_ENGINE: 'database' };
    await runCli(['migrate'], env, 180_000);
    return {
      env,
      async seed() {
        // Levee is not running yet: the data directory's lock is free for the seeding.
        const db = await createPgliteDb({ dataDir: dir });
        try {
          return await seedDevices(db, o);
        } finally {
          await db.close();
        }
      },
      cleanup,
    };
  }
  const db = await createPostgresDatabase();
  const prefix = `levee-bench-push-${randomBytes(4).toString('hex')}:`;
  const cleanup = async () => {
    await db.drop();
    await deleteRedisPrefix(o.redisUrl, prefix);
  };
  cleanups.push(cleanup);
  const env = { ...base, DATABASE_URL: db.url, REDIS_URL: o.redisUrl, LEVEE_QUEUE_ENGINE: 'redis', LEVEE_REDIS_KEY_PREFIX: prefix };
  await runCli(['migrate'], env, 180_000);
  return {
    env,
    async seed() {
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      try {
        return await seedDevices(pgQueryable(c), o);
      } finally {
        await c.end();
      }
    },
    cleanup,
  };
}

function levEnv(files: Record<string, string>, o: RunOptions): NodeJS.ProcessEnv {
  return {
    ...inheritedEnv(),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    LEVEE_SHUTDOWN_GRACE_MS: '2000',
    LEVEE_SERVER_KEY: SERVER_KEY,
    LEVEE_APNS_KEY_FILE: files.key!,
    LEVEE_APNS_KEY_ID: TEAM.keyId,
    LEVEE_APNS_TEAM_ID: TEAM.teamId,
    LEVEE_APNS_BUNDLE_ID: TEAM.bundleId,
    LEVEE_APNS_URL: files.apnsUrl!,
    LEVEE_FCM_SERVICE_ACCOUNT_FILE: files.account!,
    LEVEE_FCM_URL: files.fcmUrl!,
    LEVEE_PUSH_CA_FILE: files.ca!,
    // Only the bench talks to the API (one POST and a poll): keep the limits out of the way.
    LEVEE_RATE_LIMIT_IP_PER_MINUTE: '10000000',
    LEVEE_RATE_LIMIT_IP_BURST: '1000000',
    ...o.serverEnv,
  };
}

/** Writes the key, service-account and CA files Levee reads, from what the mock process announced. */
export function providerFiles(ready: MockReady, dir: string): Record<string, string> {
  const files = { key: join(dir, 'apns.p8'), account: join(dir, 'fcm.json'), ca: join(dir, 'ca.pem') };
  writeFileSync(files.key, ready.teamPrivateKey, { mode: 0o600 });
  writeFileSync(files.account, JSON.stringify(ready.serviceAccount), { mode: 0o600 });
  writeFileSync(files.ca, ready.ca);
  return { ...files, apnsUrl: ready.apnsUrl, fcmUrl: ready.fcmUrl };
}

async function api<T>(method: string, url: string, body?: unknown): Promise<{ status: number; body: T }> {
  const r = await fetch(url, {
    method,
    headers: { 'x-server-key': SERVER_KEY, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await r.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: r.status, body: parsed as T };
}

interface Progress {
  id: string;
  state: string;
  targeted: number;
  sent: number;
  failed: number;
  pruned: number;
  pending: number;
}

const PUSH_BODY = { audience: { all: true }, title: 'Levee bench', body: 'One push to every device', data: { screen: 'inbox' } };

/** Polls the push's progress (bounded) until it is done; returns the last progress. */
async function untilDone(url: string, id: string, timeoutMs: number, pollMs: number, onPoll?: (p: Progress, getMs: number) => void): Promise<Progress> {
  const deadline = Date.now() + timeoutMs;
  let last: Progress | undefined;
  for (;;) {
    const a = performance.now();
    const r = await api<Progress>('GET', `${url}/v1/push/${id}`).catch(() => undefined);
    if (r?.status === 200) {
      last = r.body;
      onPoll?.(last, performance.now() - a);
      if (last.state === 'done') return last;
    }
    if (Date.now() > deadline) throw new Error(`push ${id} not done within ${timeoutMs} ms (last progress: ${JSON.stringify(last)})`);
    await sleep(pollMs);
  }
}

export async function runEngine(engine: EngineName, mock: MockProcess, files: Record<string, string>, o: RunOptions, cleanups: (() => Promise<void>)[]): Promise<EngineResult> {
  const t0 = performance.now();
  const ownCleanups: (() => Promise<void>)[] = [];
  const children: Child[] = [];
  // On a fatal error or the run's watchdog: the children stopped, the storage removed.
  cleanups.push(async () => {
    for (const c of children) await c.stop();
    for (const c of ownCleanups.splice(0).reverse()) await c();
  });
  try {
    log(`${engine}: preparing storage and seeding ${o.devices.toLocaleString('en-US')} devices…`);
    const storage = await prepareStorage(engine, o, files, ownCleanups);
    const seeded = await storage.seed();
    log(`${engine}: seeded ${seeded.devices.toLocaleString('en-US')} devices under ${seeded.users} users in ${seeded.seconds.toFixed(1)} s`);

    let apiChild: Child;
    let pushChild: Child;
    const profileDir = o.profileDir ? join(o.profileDir, engine) : undefined;
    if (profileDir) mkdirSync(profileDir, { recursive: true });
    // (--cpu-prof is not allowed in NODE_OPTIONS on Node 20: it goes on the command line.)
    const nodeArgs = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
    if (engine === 'embedded') {
      const port = await freePort();
      apiChild = await startChild('levee (embedded, every role)', [...nodeArgs, 'bin/levee.js', 'start'], { ...storage.env, PORT: String(port) }, port);
      children.push(apiChild);
      pushChild = apiChild;
    } else {
      const [p1, p2] = [await freePort(), await freePort()];
      apiChild = await startChild('levee (api, worker)', ['bin/levee.js', 'start', '--roles', 'api,worker'], { ...storage.env, PORT: String(p1) }, p1);
      children.push(apiChild);
      pushChild = await startChild('levee (push)', [...nodeArgs, 'bin/levee.js', 'start', '--roles', 'push'], { ...storage.env, PORT: String(p2) }, p2);
      children.push(pushChild);
    }
    const procs = engine === 'embedded' ? [{ child: apiChild, roles: 'api, worker, push' }] : [{ child: apiChild, roles: 'api, worker' }, { child: pushChild, roles: 'push' }];

    // Warm-up: a push to a few devices opens the provider connections, signs the APNs token,
    // fetches the FCM access token and warms the code paths — as on a server that has been running.
    if (o.warmup > 0) {
      await mock.expect(`${engine}-warmup`, 0);
      const w = await api<Progress>('POST', `${apiChild.url}/v1/push`, { ...PUSH_BODY, audience: { userIds: [seeded.warmupUserId] } });
      if (w.status !== 202) throw new Error(`warm-up push: ${w.status} ${JSON.stringify(w.body)}`);
      const p = await untilDone(apiChild.url, w.body.id, 60_000, 100);
      if (p.sent !== o.warmup) throw new Error(`warm-up push: ${JSON.stringify(p)} (expected ${o.warmup} sent)`);
    }
    // Idle baseline (what the processes burn doing nothing: queue polling, timers).
    await sleep(1_000);
    const idle0 = procs.map((p) => cpuSecondsOf(p.child.pid));
    await sleep(2_000);
    const idleCores = procs.map((p, k) => (cpuSecondsOf(p.child.pid) - idle0[k]!) / 2);

    const label = `${engine}-main`;
    await mock.expect(label, o.devices);
    let reachedAt = 0;
    const off = mock.onMessage((m) => {
      if (m.type === 'reached' && m.label === label) reachedAt = m.at;
    });
    const snap = () => ({ procs: procs.map((p) => cpuSecondsOf(p.child.pid)), postgres: cpuSecondsOfCommand('postgres'), redis: cpuSecondsOfCommand('redis-server'), mock: cpuSecondsOf(mock.pid), machine: machineCpu() });
    const before = snap();
    const maxRss = procs.map(() => 0);
    const rssBefore = procs.map((p) => memoryOf(p.child.pid).rssMb);
    const sampleRss = () =>
      procs.forEach((p, k) => {
        try {
          maxRss[k] = Math.max(maxRss[k]!, memoryOf(p.child.pid).rssMb);
        } catch {
          /* exited */
        }
      });

    log(`${engine}: POST /v1/push to all ${o.devices.toLocaleString('en-US')} devices…`);
    const monoUs = () => Number(process.hrtime.bigint() / 1000n);
    const windowFromUs = monoUs();
    const tPost = Date.now();
    const sent = await api<Progress>('POST', `${apiChild.url}/v1/push`, PUSH_BODY);
    const t202 = Date.now();
    if (sent.status !== 202) throw new Error(`POST /v1/push: ${sent.status} ${JSON.stringify(sent.body)}`);
    const timeline: TimelinePoint[] = [];
    let lastCpu = { t: t202, cpu: cpuSecondsOf(pushChild.pid) };
    let doneSeenAt = 0;
    let progress: Progress | undefined;
    let completed = true;
    let lastLog = t202;
    try {
      progress = await untilDone(apiChild.url, sent.body.id, o.sendTimeoutSeconds * 1000, o.pollMs, (p, getMs) => {
        const now = Date.now();
        const cpu = cpuSecondsOf(pushChild.pid);
        timeline.push({ t: (now - t202) / 1000, state: p.state, targeted: p.targeted, sent: p.sent, failed: p.failed, pruned: p.pruned, pushCores: (cpu - lastCpu.cpu) / Math.max(0.001, (now - lastCpu.t) / 1000), getMs });
        lastCpu = { t: now, cpu };
        sampleRss();
        if (p.state === 'done') doneSeenAt = now;
        if (now - lastLog >= 10_000) {
          lastLog = now;
          log(`${engine}:   ${((now - t202) / 1000).toFixed(0)} s: ${p.state}, targeted ${p.targeted}, sent ${p.sent}, failed ${p.failed}`);
        }
      });
    } catch (e) {
      completed = false;
      log(`${engine}: ${(e as Error).message}`);
    }
    const after = snap();
    const windowToUs = monoUs();
    // Everything the providers accepted was accepted before the push was recorded as done; a
    // short wait lets the 'reached' message cross the IPC channel.
    for (let i = 0; i < 20 && reachedAt === 0; i++) await sleep(50);
    off();
    const report = await mock.report();
    const elapsed = ((doneSeenAt || Date.now()) - tPost) / 1000;
    const figures = (k: number): ProcessFigures => {
      const p = procs[k]!;
      const cpu = after.procs[k]! - before.procs[k]!;
      let peak = NaN;
      try {
        peak = memoryOf(p.child.pid).peakMb;
      } catch {
        /* exited */
      }
      return { name: p.child.name, roles: p.roles, cpuSeconds: cpu, cpuUsPerNotification: (cpu / o.devices) * 1e6, idleCores: idleCores[k]!, peakRssMb: peak, maxRssDuringPushMb: maxRss[k]!, rssBeforeMb: rssBefore[k]! };
    };
    const pushIndex = procs.length - 1;
    const outcomes: Record<string, number> = {};
    try {
      const metrics = await (await fetch(`${pushChild.url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
      for (const m of metrics.matchAll(/^levee_push_notifications_total\{([^}]*)\} (\d+)/gm)) {
        const provider = /provider="([^"]+)"/.exec(m[1]!)?.[1];
        const outcome = /outcome="([^"]+)"/.exec(m[1]!)?.[1];
        outcomes[`${provider} ${outcome}`] = Number(m[2]);
      }
    } catch {
      /* metrics are a nice-to-have */
    }
    const delivered = report.apns.delivered + report.fcm.delivered;
    const lastAcceptedMs = report.lastAt ? report.lastAt - t202 : NaN;
    const firstAcceptedMs = report.firstAt ? report.firstAt - t202 : NaN;
    const result: EngineResult = {
      engine,
      description: engine === 'embedded' ? 'one process, every role; PGlite (in-process) for data and jobs' : 'PostgreSQL for data, Redis for jobs; api+worker and push in separate processes',
      devices: o.devices,
      seeded,
      apiMs: t202 - tPost,
      firstAcceptedMs,
      lastAcceptedMs,
      doneSeenMs: doneSeenAt ? doneSeenAt - t202 : NaN,
      completed: completed && delivered >= o.devices,
      rate: delivered / (lastAcceptedMs / 1000),
      sendingRate: report.lastAt > report.firstAt ? delivered / ((report.lastAt - report.firstAt) / 1000) : NaN,
      progress: (progress ?? {}) as unknown as Record<string, unknown>,
      mock: report,
      push: figures(pushIndex),
      others: procs.length > 1 ? [figures(0)] : [],
      cores: {
        postgres: (after.postgres - before.postgres) / elapsed,
        redis: (after.redis - before.redis) / elapsed,
        mock: (after.mock - before.mock) / elapsed,
        machine: (after.machine.busy - before.machine.busy) / elapsed,
        steal: (after.machine.steal - before.machine.steal) / elapsed,
      },
      mockCpuUsPerNotification: ((after.mock - before.mock) / Math.max(1, delivered)) * 1e6,
      outcomes,
      timeline,
      seconds: (performance.now() - t0) / 1000,
    };
    if (profileDir) {
      // The profile is written when the process exits.
      for (const c of children.reverse().splice(0)) await c.stop();
      // CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile: thread 0 is the main thread (the others are workers).
      const file = readdirSync(profileDir).filter((f) => /\.0\.\d+\.cpuprofile$/.test(f)).sort().at(-1);
      if (file) result.profile = { ...summariseProfile(join(profileDir, file), { fromUs: windowFromUs, toUs: windowToUs }), file: join(profileDir, file) };
      else log(`${engine}: no CPU profile was written in ${profileDir}`);
    }
    log(
      `${engine}: ${delivered.toLocaleString('en-US')} accepted, last ${(lastAcceptedMs / 1000).toFixed(2)} s after the 202 → ${Math.round(result.rate)}/s; push role ${result.push.cpuUsPerNotification.toFixed(1)} µs CPU/notification, peak RSS ${Math.round(result.push.peakRssMb)} MB; lost ${report.lost}, duplicated ${report.duplicated}`,
    );
    return result;
  } finally {
    for (const c of children.reverse()) await c.stop();
    for (const c of ownCleanups.splice(0).reverse()) await c().catch((e: unknown) => console.error(`${engine}: cleanup failed:`, e));
  }
}
