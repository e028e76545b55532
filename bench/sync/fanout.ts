import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket } from 'ws';
import { summariseProfile, type ProfileSummary } from '../profile.js';
import { cpuSecondsOf, memoryOf, REPO, type Child } from '../support.js';
import type { AllReceived, Connected, FromClients, Receipts, Status, ToClients } from './protocol.js';
import { log, openFileLimit, scrapeMemory, scrapeMetric, signIn, startApi, type EngineName, type Storage } from './server.js';
import { median, monoMs, percentile } from './stats.js';

// Part 3: realtime fan-out. A fresh `levee start --roles api`; N WebSocket clients (in client
// processes of their own) connect to /v1/realtime and subscribe to `posts`; the server's memory is
// read before and after they connect (memory per idle connection); then one document is written
// at a time with POST /v1/collections/posts/documents and each client's receipt of it is timed
// from just before the POST (one monotonic clock for all processes: see clients.ts).

export interface FanOutOptions {
  clients: number;
  processes: number;
  /** Handshakes in flight per client process while connecting. */
  concurrency: number;
  writes: number;
  /** ms between writes (the previous one fully received or timed out first). */
  gapMs: number;
  /** ms a write may take to reach every client before it is counted as not received. */
  writeTimeoutMs: number;
  connectTimeoutSeconds: number;
  /** s to wait after the last connection subscribed before the memory samples. */
  settleSeconds: number;
  samples: number;
  /** A directory for the API process's V8 CPU profile (node --cpu-prof) over the writes; undefined: none. */
  profileDir?: string | undefined;
}

export interface MemorySample {
  /** VmRSS from /proc, bytes. */
  rss: number;
  /** From the process's /metrics (prom-client defaults), bytes. */
  metricsRss: number;
  heapUsed: number;
  external: number;
}

export interface WriteResult {
  /** ms: the POST's round trip. */
  postMs: number;
  received: number;
  expected: number;
  /** ms from just before the POST to the first, median, 99th percentile and last receipt (NaN if not all received). */
  firstMs: number;
  p50Ms: number;
  p99Ms: number;
  p100Ms: number;
  /** API process CPU seconds from just before the POST to the last receipt (or the timeout). */
  serverCpuSeconds: number;
  /** Client processes' CPU seconds over the same window. */
  clientCpuSeconds: number;
  /** Events the server counted as delivered for this write (levee_realtime_events_delivered_total). */
  serverDelivered: number;
}

export interface FanOutResult {
  clients: number;
  processes: number;
  subscribed: number;
  failed: number;
  connectSeconds: number;
  refused: Record<string, number>;
  errors: Record<string, number>;
  retryAfterWaits: number;
  openFileLimits: { server: number; clients: number[]; bench: number };
  memory: {
    before: MemorySample;
    after: MemorySample;
    /** (after − before) ÷ subscribed connections, KiB. */
    rssKiBPerConnection: number;
    heapKiBPerConnection: number;
    externalKiBPerConnection: number;
    serverConnectionsGauge: number;
  };
  warmupWrite: WriteResult;
  writes: WriteResult[];
  /** Medians and worst over the measured writes, ms. */
  p99Median: number;
  p99Worst: number;
  p100Median: number;
  p100Worst: number;
  firstMedian: number;
  /** Connections closed while subscribed, by close code; and messages the clients received in all. */
  closedWhileSubscribed: Record<string, number>;
  slowConsumerDisconnects: number;
  /** Idle CPU of the API process with all connections open (cores), before the writes. */
  serverIdleCores: number;
  /** With BENCH_SYNC_PROFILE=1: the API process's CPU profile over the measured writes. */
  profile?: ProfileSummary & { file: string };
}

class ClientProcess {
  readonly proc: ChildProcess;
  private listeners = new Set<(m: FromClients) => void>();
  exitInfo: string | undefined;

  constructor(readonly index: number) {
    this.proc = fork(join(REPO, 'bench/sync/clients.ts'), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.proc.on('message', (m: FromClients) => {
      if (m.type === 'error') console.error(`client process ${index}: ${m.message}`);
      for (const l of [...this.listeners]) l(m);
    });
    this.proc.on('exit', (code, signal) => (this.exitInfo = `code ${code} signal ${signal}`));
  }

  get pid(): number {
    return this.proc.pid!;
  }

  next<T extends FromClients>(accept: (m: FromClients) => m is T, timeoutMs: number, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const done = (e: Error | undefined, m?: T) => {
        clearTimeout(timer);
        clearInterval(watch);
        this.listeners.delete(listener);
        if (e) reject(e);
        else resolve(m!);
      };
      const listener = (m: FromClients) => {
        if (accept(m)) done(undefined, m);
      };
      const timer = setTimeout(() => done(new Error(`client process ${this.index}: no ${what} within ${timeoutMs} ms`)), timeoutMs);
      const watch = setInterval(() => this.exitInfo && done(new Error(`client process ${this.index} exited (${this.exitInfo})`)), 200);
      this.listeners.add(listener);
    });
  }

  onMessage(l: (m: FromClients) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  send(m: ToClients): void {
    if (!this.exitInfo) this.proc.send(m);
  }

  async stop(): Promise<void> {
    if (this.exitInfo) return;
    const exited = new Promise<void>((r) => this.proc.once('exit', () => r()));
    try {
      this.send({ type: 'close' });
    } catch {
      /* channel closed */
    }
    if (!(await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]))) this.kill();
  }

  kill(): void {
    if (!this.exitInfo) this.proc.kill('SIGKILL');
  }
}

/** Client processes still running, for the benchmark's way out (SIGINT, watchdog, errors). */
export const liveClientProcesses = new Set<ClientProcess>();
export function killClientProcesses(): void {
  for (const p of liveClientProcesses) p.kill();
}

async function sampleMemory(api: Child, n: number): Promise<MemorySample> {
  const samples: MemorySample[] = [];
  for (let i = 0; i < n; i++) {
    if (i > 0) await sleep(1000);
    const m = await scrapeMemory(api.url);
    samples.push({ rss: memoryOf(api.pid).rssMb * 1024 * 1024, metricsRss: m?.rss ?? NaN, heapUsed: m?.heapUsed ?? NaN, external: m?.external ?? NaN });
  }
  // The median of a few samples: one GC or one allocation burst does not decide the figure.
  return {
    rss: median(samples.map((s) => s.rss)),
    metricsRss: median(samples.map((s) => s.metricsRss)),
    heapUsed: median(samples.map((s) => s.heapUsed)),
    external: median(samples.map((s) => s.external)),
  };
}

/** A few WebSocket clients in this process: they load the realtime code paths before the baseline. */
async function warmUpConnections(url: string, n: number, subscribe: object): Promise<WebSocket[]> {
  const out: WebSocket[] = [];
  for (let i = 0; i < n; i++) {
    const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: 10_000 });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('warm-up WebSocket: no subscribed within 10 s')), 10_000);
      ws.once('unexpected-response', (_req, res) => {
        clearTimeout(timer);
        reject(new Error(`warm-up WebSocket: HTTP ${res.statusCode} (is realtime there? GET /v1/realtime)`));
      });
      ws.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      ws.on('open', () => ws.send(JSON.stringify(subscribe)));
      ws.on('message', (data: Buffer) => {
        if (data.includes('"type":"subscribed"')) {
          clearTimeout(timer);
          resolve();
        } else if (data.includes('"type":"error"')) {
          clearTimeout(timer);
          reject(new Error(`warm-up WebSocket: ${data.toString('utf8').slice(0, 300)}`));
        }
      });
    });
    out.push(ws);
  }
  return out;
}

async function postDocument(url: string, token: string, body: object): Promise<void> {
  const r = await fetch(`${url}/v1/collections/posts/documents`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await r.text();
  if (r.status !== 201) throw new Error(`POST /v1/collections/posts/documents: ${r.status} ${text.slice(0, 300)}`);
}

export async function runFanOut(storage: Storage, engine: EngineName, o: FanOutOptions, children: Child[]): Promise<FanOutResult> {
  const nodeArgs = o.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${o.profileDir}`] : [];
  const api = await startApi(storage, `levee api (${engine}, realtime)`, nodeArgs);
  children.push(api);
  const user = await signIn(api.url);
  const wsUrl = `${api.url.replace('http:', 'ws:')}/v1/realtime?access_token=${encodeURIComponent(user.token)}`;
  const subscribe = { type: 'subscribe', collections: ['posts'] };
  const need = o.clients + 200;
  const limits = { server: openFileLimit(api.pid).soft, clients: [] as number[], bench: openFileLimit().soft };
  if (limits.server < need) log(`warning: the API process may open ${limits.server} files (ulimit -n) and needs about ${need}: connections past it will fail (EMFILE)`);

  // Warm-up: a few connections and one write through the whole path, so that the baseline below
  // is a process that has already loaded and compiled realtime (as a running server has).
  const warm = await warmUpConnections(wsUrl, 5, subscribe);
  await postDocument(api.url, user.token, { title: 'warm-up', marker: 'warm-up' });
  await sleep(500);
  for (const ws of warm) ws.terminate();
  await sleep(o.settleSeconds * 1000);
  const before = await sampleMemory(api, o.samples);
  log(`${engine}: fan-out: server before connections: RSS ${(before.rss / 2 ** 20).toFixed(1)} MiB, heap used ${(before.heapUsed / 2 ** 20).toFixed(1)} MiB`);

  // ---- connect ------------------------------------------------------------------------------------
  const procs: ClientProcess[] = [];
  const per = Array.from({ length: o.processes }, (_, i) => Math.floor(o.clients / o.processes) + (i < o.clients % o.processes ? 1 : 0));
  try {
    for (let i = 0; i < o.processes; i++) {
      const p = new ClientProcess(i);
      procs.push(p);
      liveClientProcesses.add(p);
    }
    log(`${engine}: fan-out: ${o.clients.toLocaleString('en-US')} WebSocket clients in ${o.processes} process(es) connect and subscribe to posts (${o.concurrency} handshakes in flight per process)…`);
    const t0 = monoMs();
    const progressOff = procs.map((p) => {
      let last = 0;
      return p.onMessage((m) => {
        if (m.type === 'progress' && Date.now() - last > 5_000) {
          last = Date.now();
          log(`${engine}:   client process ${p.index}: ${m.subscribed} subscribed, ${m.inFlight} connecting, ${m.refusedTotal} refused so far`);
        }
      });
    });
    const connected = await Promise.all(
      procs.map((p, i) => {
        const ready = p.next((m): m is Connected => m.type === 'connected', (o.connectTimeoutSeconds + 30) * 1000, 'connected report');
        p.send({ type: 'start', url: wsUrl, count: per[i]!, concurrency: o.concurrency, subscribe, timeoutMs: o.connectTimeoutSeconds * 1000, maxAttempts: 20 });
        return ready;
      }),
    );
    progressOff.forEach((off) => off());
    const connectSeconds = (monoMs() - t0) / 1000;
    const subscribed = connected.reduce((a, c) => a + c.subscribed, 0);
    const failed = connected.reduce((a, c) => a + c.failed, 0);
    const merge = (key: 'refused' | 'errors') => connected.reduce<Record<string, number>>((acc, c) => {
      for (const [k, v] of Object.entries(c[key])) acc[k] = (acc[k] ?? 0) + v;
      return acc;
    }, {});
    limits.clients = connected.map((c) => c.openFileLimit);
    log(`${engine}: fan-out: ${subscribed.toLocaleString('en-US')} subscribed in ${connectSeconds.toFixed(1)} s, ${failed} failed; refused ${JSON.stringify(merge('refused'))}, errors ${JSON.stringify(merge('errors'))}`);
    if (subscribed === 0) throw new Error('no client subscribed');

    // ---- memory per idle connection --------------------------------------------------------------------
    await sleep(o.settleSeconds * 1000);
    const after = await sampleMemory(api, o.samples);
    const gauge = await scrapeMetric(api.url, 'levee_realtime_connections');
    const kib = (a: number, b: number) => (a - b) / 1024 / subscribed;
    const memory = {
      before,
      after,
      rssKiBPerConnection: kib(after.rss, before.rss),
      heapKiBPerConnection: kib(after.heapUsed, before.heapUsed),
      externalKiBPerConnection: kib(after.external, before.external),
      serverConnectionsGauge: gauge,
    };
    log(`${engine}: fan-out: server with ${subscribed.toLocaleString('en-US')} idle connections: RSS ${(after.rss / 2 ** 20).toFixed(1)} MiB → ${memory.rssKiBPerConnection.toFixed(1)} KiB per connection (heap ${memory.heapKiBPerConnection.toFixed(1)} KiB)`);
    const idle0 = cpuSecondsOf(api.pid);
    await sleep(2000);
    const serverIdleCores = (cpuSecondsOf(api.pid) - idle0) / 2;

    // ---- writes ----------------------------------------------------------------------------------------
    const oneWrite = async (k: number): Promise<WriteResult> => {
      const marker = `fanout-${k}-${randomBytes(6).toString('hex')}`;
      await Promise.all(procs.map((p) => {
        const ack = p.next((m): m is { type: 'armed'; marker: string } => m.type === 'armed' && m.marker === marker, 10_000, 'armed');
        p.send({ type: 'arm', marker });
        return ack;
      }));
      const all = procs.map((p) => p.next((m): m is AllReceived => m.type === 'all' && m.marker === marker, o.writeTimeoutMs, 'all received').then(() => true, () => false));
      const delivered0 = await scrapeMetric(api.url, 'levee_realtime_events_delivered_total');
      const cpu0 = { server: cpuSecondsOf(api.pid), clients: procs.reduce((a, p) => a + cpuSecondsOf(p.pid), 0) };
      const t = monoMs();
      await postDocument(api.url, user.token, { title: `fan-out write ${k}`, body: 'One write, every subscriber.', marker });
      const postMs = monoMs() - t;
      await Promise.all(all);
      const cpu1 = { server: cpuSecondsOf(api.pid), clients: procs.reduce((a, p) => a + cpuSecondsOf(p.pid), 0) };
      const receipts = await Promise.all(procs.map((p) => {
        const r = p.next((m): m is Receipts => m.type === 'receipts' && m.marker === marker, 30_000, 'receipts');
        p.send({ type: 'collect' });
        return r;
      }));
      const times = receipts.flatMap((r) => r.times);
      const got = times.filter((x) => x > 0).map((x) => x - t);
      const delivered1 = await scrapeMetric(api.url, 'levee_realtime_events_delivered_total');
      const complete = got.length === times.length;
      return {
        postMs,
        received: got.length,
        expected: times.length,
        firstMs: got.length ? Math.min(...got) : NaN,
        p50Ms: complete ? percentile(got, 50) : NaN,
        // Not received counts as infinitely late: p99 holds only while ≥ 99 % arrived.
        p99Ms: got.length >= Math.ceil(0.99 * times.length) ? percentile([...got, ...Array<number>(times.length - got.length).fill(Infinity)], 99) : NaN,
        p100Ms: complete ? Math.max(...got) : NaN,
        serverCpuSeconds: cpu1.server - cpu0.server,
        clientCpuSeconds: cpu1.clients - cpu0.clients,
        serverDelivered: delivered1 - delivered0,
      };
    };
    const show = (w: WriteResult) => `first ${w.firstMs.toFixed(1)} ms, p50 ${w.p50Ms.toFixed(1)}, p99 ${w.p99Ms.toFixed(1)}, 100 % ${w.p100Ms.toFixed(1)} ms (${w.received}/${w.expected}); POST ${w.postMs.toFixed(1)} ms; server CPU ${(w.serverCpuSeconds * 1000).toFixed(0)} ms`;
    const warmupWrite = await oneWrite(0);
    log(`${engine}: fan-out warm-up write: ${show(warmupWrite)}`);
    const writes: WriteResult[] = [];
    const windowFromUs = Number(process.hrtime.bigint() / 1000n);
    if (o.profileDir) log(`${engine}: (the API process runs with --cpu-prof: its figures include the profiler's overhead)`);
    for (let k = 1; k <= o.writes; k++) {
      await sleep(o.gapMs);
      const w = await oneWrite(k);
      writes.push(w);
      log(`${engine}: fan-out write ${k}: ${show(w)}`);
    }
    const statuses = await Promise.all(procs.map((p) => {
      const s = p.next((m): m is Status => m.type === 'status', 10_000, 'status');
      p.send({ type: 'status' });
      return s;
    }));
    const closedWhileSubscribed = statuses.reduce<Record<string, number>>((acc, s) => {
      for (const [k, v] of Object.entries(s.closed)) acc[k] = (acc[k] ?? 0) + v;
      return acc;
    }, {});
    const slowConsumerDisconnects = await scrapeMetric(api.url, 'levee_realtime_slow_consumer_disconnects_total');
    const windowToUs = Number(process.hrtime.bigint() / 1000n);
    let profile: FanOutResult['profile'];
    if (o.profileDir) {
      // The profile is written when the process exits; only the samples over the writes count.
      await api.stop();
      const file = readdirSync(o.profileDir).filter((f) => f.includes(`.${api.pid}.0.`) && f.endsWith('.cpuprofile')).sort().at(-1);
      if (file) profile = { ...summariseProfile(join(o.profileDir, file), { fromUs: windowFromUs, toUs: windowToUs }), file: join(o.profileDir, file) };
      else log(`${engine}: no CPU profile was written in ${o.profileDir}`);
    }
    // A write that did not reach everyone (NaN) counts as infinitely late in the medians and the worst.
    const late = (x: number) => (Number.isNaN(x) ? Infinity : x);
    const worst = (xs: number[]) => Math.max(...xs.map(late));
    return {
      clients: o.clients,
      processes: o.processes,
      subscribed,
      failed,
      connectSeconds,
      refused: merge('refused'),
      errors: merge('errors'),
      retryAfterWaits: connected.reduce((a, c) => a + c.retryAfterWaits, 0),
      openFileLimits: limits,
      memory,
      warmupWrite,
      writes,
      p99Median: median(writes.map((w) => late(w.p99Ms))),
      p99Worst: worst(writes.map((w) => w.p99Ms)),
      p100Median: median(writes.map((w) => late(w.p100Ms))),
      p100Worst: worst(writes.map((w) => w.p100Ms)),
      firstMedian: median(writes.map((w) => w.firstMs)),
      closedWhileSubscribed,
      slowConsumerDisconnects,
      serverIdleCores,
      ...(profile ? { profile } : {}),
    };
  } finally {
    await Promise.all(procs.map(async (p) => {
      await p.stop();
      liveClientProcesses.delete(p);
    }));
  }
}
