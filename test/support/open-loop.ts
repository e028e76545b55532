import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { connect, type Socket } from 'node:net';

// An open-model load generator for integration tests: requests go out on a fixed schedule whatever
// the server answers, and each latency is measured from the request's scheduled time, so a server
// (or generator) that falls behind cannot hide it (no coordinated omission). Each stream runs in a
// worker thread of its own: a busy stream (a storm of sign-ins) then cannot delay another stream's
// sends or the reading of its answers on a shared event loop. Every stream is bounded: its
// schedule is fixed up front and every request has a client-side timeout.
//
// The streams of one run share a start instant, in epoch milliseconds with sub-millisecond
// precision (performance.timeOrigin + performance.now(), comparable across threads).

export interface RequestTemplate {
  method: 'GET' | 'POST';
  path: string;
  headers?: Record<string, string>;
  /** Sent as JSON. */
  body?: unknown;
}

export interface StreamWindow {
  /** Milliseconds from the run's start. */
  from: number;
  to: number;
  /** Requests per second, evenly spaced; 0 sends nothing. */
  rate: number;
}

export interface StreamSpec {
  url: string;
  connections: number;
  /** Sent in turn, round robin. */
  requests: RequestTemplate[];
  /** Client-side timeout of each request: past it, the request counts as unanswered. */
  timeoutMs: number;
}

export interface Shot {
  /** Scheduled time, ms from the run's start. */
  at: number;
  /** How late the generator sent it (ms after `at`). */
  lag: number;
  /** From the scheduled time to the end of the response body (ms). */
  ms: number;
  /** 0: no response (`error`). */
  status: number;
  /** The problem+json `code` of a non-2xx response. */
  code?: string;
  retryAfter?: string;
  /** Which template was sent (index into `requests`). */
  template: number;
  error?: string;
}

export interface StreamResult {
  shots: Shot[];
  /** The worker's own event-loop delay while it ran (ms). */
  loopDelay: { p50: number; p99: number; max: number };
}

const epochNow = () => performance.timeOrigin + performance.now();

/** The schedule: evenly spaced arrivals within each window. */
export function arrivals(windows: StreamWindow[]): number[] {
  const out: number[] = [];
  for (const w of windows) {
    if (w.rate <= 0) continue;
    const step = 1000 / w.rate;
    for (let t = w.from; t < w.to; t += step) out.push(t);
  }
  return out.sort((a, b) => a - b);
}

interface Response {
  status: number;
  retryAfter?: string;
  /** Only for non-2xx answers. */
  body?: string;
}

/**
 * A minimal HTTP/1.1 client: keep-alive sockets, one request in flight on each, requests written
 * from bytes prepared up front, responses parsed just enough (status, Content-Length, Retry-After).
 * The generator shares the machine's cores with the server it measures, so its cost per request
 * matters: this one spends a fraction of what a general client (undici's request API: streams,
 * header objects, a timer and an AbortSignal per request) does. It reads answers with a
 * Content-Length or chunked bodies (no trailers); anything else counts as a failed request.
 */
class LeanPool {
  readonly #idle: Socket[] = [];
  readonly #waiting: { bytes: Buffer; done: (r: Response | Error) => void }[] = [];
  readonly #busy = new Map<Socket, { done: (r: Response | Error) => void; sentAt: number; buf: Buffer | undefined }>();
  #open = 0;
  readonly #sweep: NodeJS.Timeout;

  constructor(
    readonly host: string,
    readonly port: number,
    readonly connections: number,
    readonly timeoutMs: number,
  ) {
    // One timer for every request's client-side timeout.
    this.#sweep = setInterval(() => {
      const now = performance.now();
      for (const [socket, req] of this.#busy) if (now - req.sentAt > this.timeoutMs) socket.destroy(new Error(`no complete answer within ${this.timeoutMs} ms`));
    }, 100);
  }

  send(bytes: Buffer): Promise<Response> {
    return new Promise((resolve, reject) => {
      const done = (r: Response | Error) => (r instanceof Error ? reject(r) : resolve(r));
      const socket = this.#idle.pop();
      if (socket) this.#write(socket, bytes, done);
      else if (this.#open < this.connections) this.#connect(bytes, done);
      else this.#waiting.push({ bytes, done });
    });
  }

  #connect(bytes: Buffer, done: (r: Response | Error) => void) {
    this.#open++;
    const socket = connect({ host: this.host, port: this.port, noDelay: true });
    this.#write(socket, bytes, done);
    socket.on('data', (chunk: Buffer) => this.#data(socket, chunk));
    let error: Error | undefined;
    socket.on('error', (e) => (error = e)); // reported through 'close'
    socket.on('close', () => {
      this.#open--;
      const i = this.#idle.indexOf(socket);
      if (i >= 0) this.#idle.splice(i, 1);
      const req = this.#busy.get(socket);
      this.#busy.delete(socket);
      req?.done(error ?? new Error('connection closed before a complete answer'));
      const next = this.#waiting.shift();
      if (next) this.#connect(next.bytes, next.done);
    });
  }

  #write(socket: Socket, bytes: Buffer, done: (r: Response | Error) => void) {
    this.#busy.set(socket, { done, sentAt: performance.now(), buf: undefined });
    socket.write(bytes);
  }

  #data(socket: Socket, chunk: Buffer) {
    const req = this.#busy.get(socket);
    if (!req) return socket.destroy(); // an answer nobody asked for
    const buf = (req.buf = req.buf ? Buffer.concat([req.buf, chunk]) : chunk);
    const headEnd = buf.indexOf('\r\n\r\n');
    if (headEnd < 0) return;
    const head = buf.toString('latin1', 0, headEnd);
    const length = /\r\ncontent-length: *(\d+)/i.exec(head)?.[1];
    let body: Buffer | undefined;
    if (length !== undefined) {
      if (buf.length < headEnd + 4 + Number(length)) return;
      body = buf.subarray(headEnd + 4, headEnd + 4 + Number(length));
    } else if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
      body = dechunk(buf, headEnd + 4);
      if (!body) return;
    } else {
      return socket.destroy(new Error(`an answer with neither Content-Length nor chunks: ${head.slice(0, 200)}`));
    }
    this.#busy.delete(socket);
    const status = Number(head.slice(9, 12));
    const res: Response = { status };
    if (status < 200 || status >= 300) {
      res.body = body.toString('utf8');
      const retryAfter = /\r\nretry-after: *([^\r]*)/i.exec(head)?.[1];
      if (retryAfter !== undefined) res.retryAfter = retryAfter;
    }
    if (/\r\nconnection: *close/i.test(head)) socket.destroy();
    else {
      const next = this.#waiting.shift();
      if (next) this.#write(socket, next.bytes, next.done);
      else this.#idle.push(socket);
    }
    req.done(res);
  }

  close() {
    clearInterval(this.#sweep);
    for (const s of [...this.#idle, ...this.#busy.keys()]) s.destroy();
  }
}

/** The body of a chunked message starting at `at`, or undefined while it is incomplete. */
function dechunk(buf: Buffer, at: number): Buffer | undefined {
  const parts: Buffer[] = [];
  for (let pos = at; ; ) {
    const eol = buf.indexOf('\r\n', pos);
    if (eol < 0) return undefined;
    const size = parseInt(buf.toString('latin1', pos, eol), 16);
    if (size === 0) return buf.length >= eol + 4 ? Buffer.concat(parts) : undefined; // no trailers
    if (buf.length < eol + 2 + size + 2) return undefined;
    parts.push(buf.subarray(eol + 2, eol + 2 + size));
    pos = eol + 2 + size + 2;
  }
}

/** The bytes of one request. */
function requestBytes(url: URL, r: RequestTemplate): Buffer {
  const body = r.body === undefined ? undefined : Buffer.from(JSON.stringify(r.body));
  const headers = { host: url.host, ...r.headers, ...(body ? { 'content-type': 'application/json', 'content-length': String(body.length) } : {}) };
  const head = `${r.method} ${r.path} HTTP/1.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
  return body ? Buffer.concat([Buffer.from(head, 'latin1'), body]) : Buffer.from(head, 'latin1');
}

/** Runs one stream over `windows` from `startAt` (epoch ms) until every request has an outcome. */
export async function runStream(spec: StreamSpec, windows: StreamWindow[], startAt: number): Promise<StreamResult> {
  const url = new URL(spec.url);
  const pool = new LeanPool(url.hostname, Number(url.port), spec.connections, spec.timeoutMs);
  const bytes = spec.requests.map((r) => requestBytes(url, r));
  const schedule = arrivals(windows);
  const shots: Shot[] = [];
  let pending = 0;
  let allSent = false;
  let finished: () => void = () => {};
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();

  const fire = (at: number, n: number) => {
    const template = n % bytes.length;
    const lag = epochNow() - startAt - at;
    pending++;
    pool.send(bytes[template]!).then(
      (res) => {
        const shot: Shot = { at, lag, ms: epochNow() - startAt - at, status: res.status, template };
        if (res.body !== undefined) {
          try {
            shot.code = String((JSON.parse(res.body) as { code?: unknown }).code);
          } catch {
            shot.code = `(not JSON: ${res.body.slice(0, 80)})`;
          }
        }
        if (res.retryAfter !== undefined) shot.retryAfter = res.retryAfter;
        return shot;
      },
      (e: Error): Shot => ({ at, lag, ms: epochNow() - startAt - at, status: 0, template, error: e.message }),
    ).then((shot) => {
      shots.push(shot);
      if (--pending === 0 && allSent) finished();
    });
  };

  const drained = new Promise<void>((resolve) => (finished = resolve));
  await new Promise<void>((done) => {
    let i = 0;
    const tick = () => {
      const t = epochNow() - startAt;
      // A generator far behind still yields to I/O between batches.
      for (let n = 0; i < schedule.length && schedule[i]! <= t && n < 500; n++, i++) fire(schedule[i]!, i);
      if (i >= schedule.length) return done();
      setTimeout(tick, Math.max(0, schedule[i]! - (epochNow() - startAt) - 0.5));
    };
    setTimeout(tick, Math.max(0, startAt - epochNow()));
  });
  allSent = true;
  if (pending > 0) await drained; // bounded: every request has the client timeout
  delay.disable();
  pool.close();
  const ms = (ns: number) => ns / 1e6;
  return { shots: shots.sort((a, b) => a.at - b.at), loopDelay: { p50: ms(delay.percentile(50)), p99: ms(delay.percentile(99)), max: ms(delay.max) } };
}

type FromWorker = { type: 'ready' } | { type: 'done'; result: StreamResult } | { type: 'error'; message: string };

export interface StreamWorker {
  /** Resolves once the worker has loaded (so a shared start instant is not spent on start-up). */
  ready: Promise<void>;
  /** Runs the stream over `windows` from `startAt` (epoch ms); resolves with its shots. One run at a time. */
  run(startAt: number, windows: StreamWindow[]): Promise<StreamResult>;
  terminate(): Promise<void>;
}

/** The current time as the streams count it: pass `startAt = epoch() + lead` to StreamWorker.run. */
export const epoch = epochNow;

/**
 * One stream in a worker thread. Node 20 does not apply the parent's `--import tsx` to workers,
 * so the worker registers tsx itself before importing this file.
 */
export function startStreamWorker(spec: StreamSpec): StreamWorker {
  const tsx = import.meta.resolve('tsx/esm/api');
  const self = import.meta.url;
  const worker = new Worker(`import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(self)}); })`, {
    eval: true,
    workerData: { openLoopStream: spec },
  });
  let onMessage: (m: FromWorker) => void = () => {};
  let failed: Error | undefined;
  const failure = new Promise<never>((_, reject) => {
    worker.once('error', (e) => reject((failed = e)));
    worker.once('exit', (code) => reject((failed ??= new Error(`stream worker exited (${code})`))));
  });
  failure.catch(() => {});
  worker.on('message', (m: FromWorker) => onMessage(m));
  const next = (type: FromWorker['type']) =>
    Promise.race([
      failure,
      new Promise<FromWorker>((resolve, reject) => {
        onMessage = (m) => (m.type === 'error' ? reject(new Error(m.message)) : m.type === type ? resolve(m) : undefined);
      }),
    ]);
  const ready = next('ready').then(() => undefined);
  return {
    ready,
    async run(startAt, windows) {
      if (failed) throw failed;
      const done = next('done');
      worker.postMessage({ type: 'run', startAt, windows });
      return ((await done) as Extract<FromWorker, { type: 'done' }>).result;
    },
    async terminate() {
      await worker.terminate();
    },
  };
}

// The worker's side.
const stream = (workerData as { openLoopStream?: StreamSpec } | null)?.openLoopStream;
if (!isMainThread && stream && parentPort) {
  const port = parentPort;
  port.on('message', (m: { type: 'run'; startAt: number; windows: StreamWindow[] }) => {
    runStream(stream, m.windows, m.startAt).then(
      (result) => port.postMessage({ type: 'done', result } satisfies FromWorker),
      (e: unknown) => port.postMessage({ type: 'error', message: String((e as Error)?.stack ?? e) } satisfies FromWorker),
    );
  });
  port.postMessage({ type: 'ready' } satisfies FromWorker);
}
