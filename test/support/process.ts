import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SETTINGS } from '../../src/config/settings.js';

// Real `levee` child processes for the integration suites: spawn with a clean environment, wait
// (always with a deadline) for output, readiness or exit, talk raw HTTP, and kill whatever is left
// when the suite ends (`after(killAll)`), so no test leaks a process.

export const LEVEE_BIN = fileURLToPath(new URL('../../bin/levee.js', import.meta.url));

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface LeveeProcess {
  child: ChildProcess;
  pid: number;
  readonly stdout: string;
  readonly stderr: string;
  /** Settles when the process has exited. */
  exited: Promise<Exit>;
  /** Resolves with the first match of `re` in stdout (or stderr with `stream: 'stderr'`). */
  waitForOutput(re: RegExp, timeoutMs?: number, stream?: 'stdout' | 'stderr'): Promise<RegExpMatchArray>;
  /** Resolves with the exit code and signal; rejects (and kills the process) after `timeoutMs`. */
  waitForExit(timeoutMs?: number): Promise<Exit>;
  kill(signal?: NodeJS.Signals): void;
}

export interface RunningLevee extends LeveeProcess {
  /** Base URL from the start banner's Health line, e.g. http://127.0.0.1:41234 */
  url: string;
}

const live = new Set<LeveeProcess>();

/** Temp directories made by tempDir(): removed when the test file's process exits. */
const dirs = new Set<string>();

process.once('exit', () => {
  // A last resort: a suite that forgot after(killAll) still leaks no process.
  for (const p of live) p.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

export function tempDir(prefix = 'levee-it-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.add(d);
  return d;
}

/**
 * The environment of a child: this process's environment without any Levee setting (so the
 * developer's shell cannot leak into a test), then LOG_LEVEL=warn, PORT=0 and HOST=127.0.0.1, then
 * `env` on top (`undefined` removes a variable).
 */
export function childEnv(env: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...process.env };
  for (const s of Object.values(SETTINGS)) delete out[s.env];
  delete out.LEVEE_CONFIG;
  delete out.NODE_TEST_CONTEXT; // else a child node process thinks it is a test-runner worker
  Object.assign(out, { LOG_LEVEL: 'warn', PORT: '0', HOST: '127.0.0.1' });
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete out[k];
    else out[k] = v;
  }
  return out;
}

const deadline = <T>(p: Promise<T>, ms: number, what: () => string): Promise<T> => {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what()}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
};

/**
 * Spawns `node bin/levee.js …args`. The working directory defaults to a fresh temp directory, so
 * the repository's own levee.config.json is not picked up by accident.
 */
export function spawnLevee(args: string[], opts: { env?: Record<string, string | undefined>; cwd?: string } = {}): LeveeProcess {
  const child = spawn(process.execPath, [LEVEE_BIN, ...args], {
    cwd: opts.cwd ?? tempDir('levee-cwd-'),
    env: childEnv(opts.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const listeners = new Set<() => void>();
  const notify = () => listeners.forEach((l) => l());
  child.stdout!.setEncoding('utf8').on('data', (s: string) => {
    stdout += s;
    notify();
  });
  child.stderr!.setEncoding('utf8').on('data', (s: string) => {
    stderr += s;
    notify();
  });
  const exited = new Promise<Exit>((resolve) => {
    // 'close' (not 'exit'): every byte of stdout/stderr has been read by then.
    child.once('close', (code, signal) => {
      live.delete(proc);
      resolve({ code, signal });
      notify();
    });
  });
  const describe = () => `levee ${args.join(' ')} (pid ${child.pid})\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`;

  const proc: LeveeProcess = {
    child,
    pid: child.pid ?? -1,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    exited,
    waitForOutput(re, timeoutMs = 30_000, stream = 'stdout') {
      let done = false;
      return deadline(
        new Promise<RegExpMatchArray>((resolve, reject) => {
          const check = () => {
            if (done) return;
            const m = (stream === 'stdout' ? stdout : stderr).match(re);
            if (m) {
              done = true;
              listeners.delete(check);
              resolve(m);
            } else if (child.exitCode !== null || child.signalCode !== null) {
              void exited.then(() => {
                if (done) return;
                const again = (stream === 'stdout' ? stdout : stderr).match(re);
                done = true;
                listeners.delete(check);
                if (again) resolve(again);
                else reject(new Error(`process exited before printing ${re}: ${describe()}`));
              });
            }
          };
          listeners.add(check);
          check();
        }),
        timeoutMs,
        () => `${re} from ${describe()}`,
      ).finally(() => {
        done = true;
      });
    },
    async waitForExit(timeoutMs = 30_000) {
      try {
        return await deadline(exited, timeoutMs, () => `exit of ${describe()}`);
      } catch (e) {
        proc.kill('SIGKILL');
        throw e;
      }
    },
    kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
  live.add(proc);
  return proc;
}

/** Runs a command that is expected to exit by itself; returns its exit code and output. */
export async function runLevee(args: string[], opts: { env?: Record<string, string | undefined>; cwd?: string; timeoutMs?: number } = {}) {
  const p = spawnLevee(args, opts);
  const exit = await p.waitForExit(opts.timeoutMs ?? 30_000);
  return { ...exit, stdout: p.stdout, stderr: p.stderr, pid: p.pid };
}

/**
 * `levee start …`, resolved once the banner has printed its URL and /readyz answers 200. On a
 * timeout the process is killed and the error carries its output.
 */
export async function startLevee(args: string[], opts: { env?: Record<string, string | undefined>; cwd?: string; timeoutMs?: number } = {}): Promise<RunningLevee> {
  const timeoutMs = opts.timeoutMs ?? 40_000;
  const started = Date.now();
  const p = spawnLevee(['start', ...args], opts);
  try {
    const m = await p.waitForOutput(/Health:\s+(http:\/\/\S+?)\/healthz,/, timeoutMs);
    const url = m[1]!.replace('localhost', '127.0.0.1');
    await waitForReady(url, Math.max(1_000, timeoutMs - (Date.now() - started)));
    return Object.assign(p, { url });
  } catch (e) {
    p.kill('SIGKILL');
    throw e;
  }
}

export async function killAll(): Promise<void> {
  const procs = [...live];
  for (const p of procs) p.kill('SIGKILL');
  await Promise.all(procs.map((p) => deadline(p.exited, 10_000, () => `pid ${p.pid} to die`).catch(() => {})));
}

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  json(): any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/** One HTTP request on its own connection (no keep-alive pool to outlive the test), with a deadline. */
export function http(url: string, opts: { method?: string; body?: unknown; headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const req = request(
      url,
      {
        method: opts.method ?? 'GET',
        agent: false,
        headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...opts.headers },
        timeout: opts.timeoutMs ?? 10_000,
      },
      (res) => {
        let data = '';
        res.setEncoding('utf8').on('data', (c: string) => (data += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: data, json: () => JSON.parse(data) }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${opts.method ?? 'GET'} ${url} timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Polls `fn` until it returns a truthy value; rejects after `timeoutMs` with the last error. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 10_000, intervalMs = 100): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export function waitForReady(url: string, timeoutMs = 30_000): Promise<HttpResponse> {
  return waitFor(`${url}/readyz to answer 200`, async () => {
    const r = await http(`${url}/readyz`, { timeoutMs: 2_000 });
    return r.status === 200 ? r : undefined;
  }, timeoutMs);
}

/** Resolves true when a TCP connection to `url`'s port is refused, false when one is accepted. */
export function connectionRefused(url: string, timeoutMs = 2_000): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const s = connect({ host: hostname, port: Number(port) });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`connecting to ${url} neither succeeded nor failed within ${timeoutMs} ms`));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve(false);
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (e.code === 'ECONNREFUSED') resolve(true);
      else reject(e);
    });
  });
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((ok, fail) => server.once('error', fail).listen(0, '127.0.0.1', ok));
  const addr = server.address();
  await new Promise((ok) => server.close(ok));
  if (typeof addr !== 'object' || !addr) throw new Error('no port');
  return addr.port;
}

export interface RawResponse {
  /** 0 when the connection ended without a (complete) status line. */
  status: number;
  head: string;
  body: string;
  /** How the connection ended: 'end' (server closed cleanly) or the socket error code. */
  ended: string;
}

/**
 * An HTTP/1.1 request written by hand on a raw socket, so a test can hold it in flight: it is sent
 * except for its last `holdBackBytes` bytes (Content-Length counts the whole body), `finish` sends
 * those, and `response` settles once a complete response (or the end of the connection) arrives;
 * after `timeoutMs` the socket is destroyed and it rejects. Holding back 2 bytes of a request
 * without a body leaves its head unfinished; holding back part of the body leaves the handler
 * waiting for it.
 */
export async function partialRequest(
  url: string,
  opts: { method: string; path: string; body?: string; holdBackBytes: number; headers?: Record<string, string>; timeoutMs?: number },
): Promise<{ socket: Socket; finish(): void; response: Promise<RawResponse> }> {
  const { hostname, port } = new URL(url);
  const socket = connect({ host: hostname, port: Number(port) });
  await new Promise<void>((ok, fail) => socket.once('connect', ok).once('error', fail));
  const body = Buffer.from(opts.body ?? '');
  const head = [
    `${opts.method} ${opts.path} HTTP/1.1`,
    `Host: ${hostname}:${port}`,
    ...(opts.body !== undefined ? ['Content-Type: application/json', `Content-Length: ${body.length}`] : []),
    ...Object.entries(opts.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
    '',
    '',
  ].join('\r\n');
  const raw = Buffer.concat([Buffer.from(head), body]);
  if (opts.holdBackBytes < 1 || opts.holdBackBytes > raw.length) throw new Error(`holdBackBytes must be between 1 and ${raw.length}`);
  socket.write(raw.subarray(0, raw.length - opts.holdBackBytes));
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const response = new Promise<RawResponse>((resolve, reject) => {
    let data = '';
    let settled = false;
    const timer = setTimeout(() => {
      socket.destroy();
      if (!settled) reject(new Error(`no end of response within ${timeoutMs} ms; got so far: ${JSON.stringify(data)}`));
      settled = true;
    }, timeoutMs);
    const split = () => {
      const at = data.indexOf('\r\n\r\n');
      return at < 0 ? undefined : { head: data.slice(0, at), rest: data.slice(at + 4) };
    };
    /** The body once it is complete (by Content-Length or the chunked terminator), else undefined. */
    const completeBody = (head: string, rest: string): string | undefined => {
      if (/\r\ntransfer-encoding: chunked/i.test(head)) {
        let body = '';
        let i = 0;
        for (;;) {
          const eol = rest.indexOf('\r\n', i);
          if (eol < 0) return undefined;
          const size = Number.parseInt(rest.slice(i, eol), 16);
          if (size === 0) return body;
          if (rest.length < eol + 2 + size + 2) return undefined;
          body += rest.slice(eol + 2, eol + 2 + size); // sizes are bytes: fine for the ASCII bodies tested here
          i = eol + 2 + size + 2;
        }
      }
      const len = /\r\ncontent-length: (\d+)/i.exec(head)?.[1];
      return len !== undefined && Buffer.byteLength(rest) >= Number(len) ? rest : undefined;
    };
    const done = (ended: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const parts = split();
      const head = parts?.head ?? data;
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
      resolve({ status, head, body: parts ? (completeBody(parts.head, parts.rest) ?? parts.rest) : '', ended });
    };
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => {
      data += c;
      // A complete response ends the wait without relying on the server closing the connection.
      const parts = split();
      if (parts && completeBody(parts.head, parts.rest) !== undefined) {
        done('complete');
        socket.destroy();
      }
    });
    socket.on('end', () => done('end'));
    socket.on('close', () => done('close'));
    socket.on('error', (e: NodeJS.ErrnoException) => done(e.code ?? 'error'));
  });
  return { socket, finish: () => socket.write(raw.subarray(raw.length - opts.holdBackBytes)), response };
}

