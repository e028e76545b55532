import http2 from 'node:http2';
import type { SendResult } from './port.js';

// Helpers shared by the providers: Retry-After parsing and a small HTTP/2 client pool (APNs, FCM).

export function retryResult(reason: string, headers: http2.IncomingHttpHeaders): SendResult {
  const ms = retryAfterMs(headers['retry-after']);
  return ms === undefined ? { outcome: 'retry', reason } : { outcome: 'retry', reason, retryAfterMs: ms };
}

/** Retry-After as seconds or an HTTP date. */
export function retryAfterMs(value: string | string[] | undefined): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined || v.trim() === '') return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

export const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

// ---------------------------------------------------------------------------------------------
// A small HTTP/2 client pool, shared with the FCM provider. Each connection is used only after the
// server's first SETTINGS frame (before it Node assumes 100 streams, and the server refuses those
// beyond its real limit); sends go to the least-loaded connection with room, and the rest wait in a
// bounded queue here — Node would otherwise queue them inside the session without any bound. A
// connection that errors, closes or receives GOAWAY is dropped and replaced on demand; a stream the
// server refused (so never processed) is sent again once.

export interface H2Response {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: string;
}

export interface Http2PoolOptions {
  origin: string;
  connections: number;
  maxPending: number;
  connectTimeoutMs: number;
  ca?: string | string[];
  /** Response bodies beyond this are cut off as an error (default 64 KiB). */
  maxResponseBytes?: number;
}

export interface Http2Pool {
  request(headers: http2.OutgoingHttpHeaders, body: string, o: { timeoutMs: number; signal?: AbortSignal }): Promise<H2Response>;
  stats(): { connections: number; activeStreams: number; pending: number };
  close(): Promise<void>;
}

interface Conn {
  session: http2.ClientHttp2Session;
  ready: boolean;
  active: number;
}
interface Waiter {
  resolve(c: Conn): void;
  reject(e: Error): void;
}

export function createHttp2Pool(opts: Http2PoolOptions): Http2Pool {
  const slots: (Conn | undefined)[] = Array.from({ length: Math.max(1, opts.connections) }, () => undefined);
  const live = new Set<Conn>(); // includes connections already dropped from a slot but still draining
  const waiters = new Set<Waiter>();
  const retryAt = slots.map(() => 0); // after a failed connect, a slot waits a moment before the next try
  const maxBody = opts.maxResponseBytes ?? 65_536;
  let closed = false;

  const room = (c: Conn) => c.ready && !c.session.closed && c.active < (c.session.remoteSettings.maxConcurrentStreams ?? 100);

  const pick = (): Conn | undefined => {
    let best: Conn | undefined;
    for (const c of slots) if (c && room(c) && (!best || c.active < best.active)) best = c;
    // Open the next connection only once there is concurrency to spread over it.
    if (!best || best.active > 0) {
      // The back-off only slows growing the pool; with no working connection, sends need one now.
      const now = Date.now();
      const growing = slots.some((c) => c?.ready);
      const empty = slots.findIndex((c, i) => c === undefined && (!growing || retryAt[i]! <= now));
      if (empty >= 0) connect(empty);
    }
    return best;
  };

  const drain = () => {
    for (const w of waiters) {
      const c = pick();
      if (!c) return;
      c.active++;
      waiters.delete(w);
      w.resolve(c);
    }
  };

  const failWaiters = (e: Error) => {
    for (const w of waiters) w.reject(e);
    waiters.clear();
  };

  function connect(slot: number) {
    const session = http2.connect(opts.origin, { ...(opts.ca !== undefined ? { ca: opts.ca } : {}), maxOutstandingPings: 2 });
    const conn: Conn = { session, ready: false, active: 0 };
    slots[slot] = conn;
    live.add(conn);
    let lastError: Error | undefined;
    const timer = setTimeout(() => session.destroy(new Error(`no HTTP/2 SETTINGS from ${opts.origin} within ${opts.connectTimeoutMs} ms`)), opts.connectTimeoutMs);
    const drop = () => {
      if (slots[slot] === conn) slots[slot] = undefined;
    };
    session.on('error', (e) => {
      lastError = e;
    });
    session.on('remoteSettings', () => {
      clearTimeout(timer);
      conn.ready = true;
      drain(); // the first SETTINGS, or a raised stream limit
    });
    session.on('goaway', drop);
    session.on('close', () => {
      clearTimeout(timer);
      drop();
      live.delete(conn);
      if (closed) return;
      if (conn.ready) return drain(); // a working connection went away: replace it if sends wait
      retryAt[slot] = Date.now() + 1_000;
      // The connect failed. With no working connection left, answer the waiters now (TLS refused,
      // nothing listening) rather than at their timeout.
      if (!slots.some((c) => c?.ready)) failWaiters(lastError ?? new Error(`HTTP/2 connection to ${opts.origin} closed`));
    });
  }

  const acquire = (): Conn | Waiter => {
    if (closed) throw new Error('push provider closed');
    const c = pick();
    if (c) {
      c.active++;
      return c;
    }
    if (waiters.size >= opts.maxPending) throw new Error(`${opts.maxPending} sends already waiting for an HTTP/2 stream`);
    return { resolve: () => {}, reject: () => {} };
  };

  const release = (c: Conn) => {
    c.active--;
    drain();
  };

  function once(headers: http2.OutgoingHttpHeaders, body: string, o: { timeoutMs: number; signal?: AbortSignal }, deadline: number): Promise<H2Response> {
    return new Promise((resolve, reject) => {
      let conn: Conn | undefined;
      let waiter: Waiter | undefined;
      let stream: http2.ClientHttp2Stream | undefined;
      let settled = false;
      const finish = (e: Error | undefined, res?: H2Response) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        o.signal?.removeEventListener('abort', onAbort);
        if (waiter) waiters.delete(waiter);
        if (e && stream && !stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
        if (conn) release(conn);
        if (e) reject(e);
        else resolve(res!);
      };
      const onAbort = () => finish(new Error('send aborted'));
      const timer = setTimeout(() => finish(new Error(`no answer within ${o.timeoutMs} ms`)), Math.max(0, deadline - Date.now()));
      o.signal?.addEventListener('abort', onAbort, { once: true });
      if (o.signal?.aborted) return onAbort();

      const start = (c: Conn) => {
        conn = c;
        waiter = undefined;
        if (settled) return release(c);
        try {
          stream = c.session.request(headers, { endStream: false });
        } catch (e) {
          return finish(e as Error);
        }
        const chunks: Buffer[] = [];
        let size = 0;
        let status = 0;
        let resHeaders: http2.IncomingHttpHeaders = {};
        stream.on('error', (e) => finish(e)); // stays attached: a late error after finish is harmless
        stream.on('response', (h) => {
          status = Number(h[':status']);
          resHeaders = h;
        });
        stream.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxBody) finish(new Error(`response body over ${maxBody} bytes`));
          else chunks.push(chunk);
        });
        stream.on('end', () => finish(undefined, { status, headers: resHeaders, body: Buffer.concat(chunks).toString('utf8') }));
        stream.on('close', () => finish(new Error(`stream closed without an answer (code ${stream?.rstCode ?? '?'})`)));
        stream.end(body);
      };

      try {
        const got = acquire();
        if ('session' in got) return start(got);
        waiter = got;
        got.resolve = start;
        got.reject = (e) => finish(e);
        waiters.add(got);
      } catch (e) {
        finish(e as Error);
      }
    });
  }

  return {
    async request(headers, body, o) {
      const deadline = Date.now() + o.timeoutMs;
      try {
        return await once(headers, body, o, deadline);
      } catch (e) {
        // REFUSED_STREAM guarantees the server did not process it (a lowered stream limit, a GOAWAY).
        if ((e as { code?: string }).code === 'ERR_HTTP2_STREAM_ERROR' && /REFUSED_STREAM/.test(errorText(e))) return once(headers, body, o, deadline);
        throw e;
      }
    },
    stats: () => ({
      connections: slots.filter((c) => c !== undefined).length,
      activeStreams: [...live].reduce((n, c) => n + c.active, 0),
      pending: waiters.size,
    }),
    async close() {
      closed = true;
      failWaiters(new Error('push provider closed'));
      await Promise.all(
        [...live].map(
          (c) =>
            new Promise<void>((resolve) => {
              if (c.session.destroyed) return resolve();
              // Streams in flight get a moment to finish; a hung one must not hold up shutdown.
              const force = setTimeout(() => c.session.destroy(), 2_000);
              c.session.close(() => {
                clearTimeout(force);
                resolve();
              });
            }),
        ),
      );
    },
  };
}
