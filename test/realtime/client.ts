import { request, type IncomingMessage } from 'node:http';
import WebSocket from 'ws';

// Protocol-shaped realtime clients for the tests: a WebSocket client that queues what it receives
// and an SSE client that parses the event stream; both wait with deadlines, never sleep-and-hope.

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Msg = Record<string, any>;

const withDeadline = <T>(p: Promise<T>, ms: number, what: string): Promise<T> => {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)))]).finally(() => clearTimeout(timer));
};

/** Consumes queued items in order: `next` resolves with the first item matching `pred`, dropping those before it. */
class Inbox<T> {
  items: T[] = [];
  #waiter: (() => void) | undefined;
  ended = false;
  push(item: T) {
    this.items.push(item);
    this.#waiter?.();
  }
  end() {
    this.ended = true;
    this.#waiter?.();
  }
  async next(pred: (m: T) => boolean, timeoutMs: number, what: string): Promise<T> {
    return withDeadline(
      (async () => {
        for (;;) {
          const i = this.items.findIndex(pred);
          if (i >= 0) {
            const [m] = this.items.splice(0, i + 1).slice(-1);
            return m!;
          }
          this.items.length = 0;
          if (this.ended) throw new Error(`connection ended before ${what}`);
          await new Promise<void>((ok) => (this.#waiter = ok));
          this.#waiter = undefined;
        }
      })(),
      timeoutMs,
      what,
    );
  }
}

export class WsClient {
  readonly inbox = new Inbox<Msg>();
  readonly closed: Promise<{ code: number; reason: string }>;
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => this.inbox.push(JSON.parse(data.toString())));
    this.closed = new Promise((ok) =>
      ws.once('close', (code, reason) => {
        this.inbox.end();
        ok({ code, reason: reason.toString() });
      }),
    );
    ws.on('error', () => {});
  }

  static open(base: string, opts: { token?: string; query?: string; autoPong?: boolean } = {}): Promise<WsClient> {
    const url = `${base.replace(/^http/, 'ws')}/v1/realtime${opts.query ? `?${opts.query}` : ''}`;
    const ws = new WebSocket(url, { headers: opts.token ? { authorization: `Bearer ${opts.token}` } : {}, autoPong: opts.autoPong ?? true, perMessageDeflate: false });
    const c = new WsClient(ws);
    return withDeadline(
      new Promise((ok, fail) => {
        ws.once('open', () => ok(c));
        ws.once('unexpected-response', (_req, res: IncomingMessage) => fail(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { status: res.statusCode, headers: res.headers })));
        ws.once('error', fail);
      }),
      10_000,
      `${url} to open`,
    );
  }

  send(m: unknown) {
    this.ws.send(typeof m === 'string' ? m : JSON.stringify(m));
  }

  next(pred: (m: Msg) => boolean = () => true, timeoutMs = 10_000, what = 'a message'): Promise<Msg> {
    return this.inbox.next(pred, timeoutMs, what);
  }

  /** Subscribes and waits for `subscribed`; returns it and the changes that came before it (catch-up). */
  async subscribe(sub: { collections?: string[]; user?: boolean; cursor?: string }, timeoutMs = 10_000) {
    this.send({ type: 'subscribe', ...sub });
    const caughtUp: Msg[] = [];
    const subscribed = await this.inbox.next(
      (m) => {
        if (m.type === 'change') caughtUp.push(m);
        return m.type === 'subscribed' || m.type === 'error';
      },
      timeoutMs,
      'subscribed',
    );
    return { subscribed, caughtUp };
  }

  change(pred: (m: Msg) => boolean = () => true, timeoutMs = 10_000) {
    return this.next((m) => m.type === 'change' && pred(m), timeoutMs, 'a change');
  }

  close() {
    this.ws.close();
    return this.closed;
  }
}

export interface SseEvent {
  id?: string;
  event: string;
  data: string;
}

export class SseClient {
  readonly inbox = new Inbox<SseEvent>();
  readonly ended: Promise<void>;
  private constructor(
    readonly res: IncomingMessage,
    readonly abort: () => void,
  ) {
    let buf = '';
    res.setEncoding('utf8');
    res.on('data', (s: string) => {
      buf += s;
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const e: SseEvent = { event: 'message', data: '' };
        let isComment = true;
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue;
          isComment = false;
          const [k, ...rest] = line.split(':');
          const v = rest.join(':').replace(/^ /, '');
          if (k === 'id') e.id = v;
          else if (k === 'event') e.event = v;
          else if (k === 'data') e.data += v;
        }
        if (!isComment) this.inbox.push(e);
      }
    });
    this.ended = new Promise((ok) => res.once('close', () => (this.inbox.end(), ok())));
  }

  static open(base: string, query: string, headers: Record<string, string> = {}): Promise<SseClient | { status: number; body: string; headers: IncomingMessage['headers'] }> {
    return withDeadline(
      new Promise((ok, fail) => {
        const req = request(`${base}/v1/realtime/events?${query}`, { headers: { accept: 'text/event-stream', ...headers }, agent: false }, (res) => {
          if (res.statusCode !== 200) {
            let body = '';
            res.setEncoding('utf8').on('data', (s: string) => (body += s));
            res.on('end', () => ok({ status: res.statusCode ?? 0, body, headers: res.headers }));
            return;
          }
          ok(new SseClient(res, () => req.destroy()));
        });
        req.on('error', fail);
        req.end();
      }),
      10_000,
      'the SSE stream to open',
    );
  }

  next(pred: (e: SseEvent) => boolean = () => true, timeoutMs = 10_000, what = 'an event'): Promise<SseEvent> {
    return this.inbox.next(pred, timeoutMs, what);
  }
}
