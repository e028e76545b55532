import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket } from 'ws';
import type { Connected, FromClients, StartClients, ToClients } from './protocol.js';

// A WebSocket client process of the sync benchmark (forked by fanout.ts with `--import tsx`):
// opens its share of the connections to Levee's /v1/realtime, subscribes each, then times, per
// connection, the arrival of the change the orchestrator armed it for. It runs in a process of its
// own so that the clients' work does not share the server's event loop (nor the orchestrator's).
//
// Receipt times are CLOCK_MONOTONIC (process.hrtime): on Linux one clock for every process of the
// machine, nanosecond resolution, never stepped — the orchestrator's "just before the POST" reads
// the same clock. A receipt is timed when ws hands the message to this process's JavaScript: it
// includes the kernel's loopback delivery and this event loop's turn, not any parsing (the marker
// is found with Buffer.includes; a change is never JSON-parsed here).

if (!process.send) throw new Error('clients.ts is started by bench/sync/fanout.ts (it talks over IPC)');
const send = (m: FromClients) => process.send!(m);
const now = () => Number(process.hrtime.bigint()) / 1e6;

interface Conn {
  ws: WebSocket;
  subscribed: boolean;
  /** Index among subscribed connections (receipt slot), -1 before. */
  slot: number;
}

const conns: Conn[] = [];
let subscribedCount = 0;
let inFlight = 0;
let refusedTotal = 0;
let messages = 0;
const closed: Record<string, number> = {};

// The armed marker and the receipt clock.
let marker: Buffer | undefined;
let markerText = '';
let times = new Float64Array(0);
let received = 0;
let allSent = false;

function onMessage(c: Conn, data: Buffer) {
  messages++;
  if (!c.subscribed || !marker || c.slot < 0 || times[c.slot] !== 0) return;
  if (!data.includes(marker)) return;
  times[c.slot] = now();
  received++;
  if (!allSent && received >= subscribedCount) {
    allSent = true;
    send({ type: 'all', marker: markerText });
  }
}

const SUBSCRIBED = Buffer.from('"type":"subscribed"');

/** One connection, subscribed: retries refusals (honouring Retry-After) and errors, a bounded number of times. */
async function connectOne(s: StartClients, deadline: number, stats: Pick<Connected, 'refused' | 'errors' | 'retryAfterWaits' | 'retryAfterSeconds'>): Promise<boolean> {
  for (let attempt = 1; attempt <= s.maxAttempts && Date.now() < deadline; attempt++) {
    const outcome = await new Promise<{ ok: true } | { ok: false; retryAfter: number }>((resolve) => {
      const ws = new WebSocket(s.url, { perMessageDeflate: false, skipUTF8Validation: true, handshakeTimeout: 30_000 });
      const c: Conn = { ws, subscribed: false, slot: -1 };
      let settled = false;
      const settle = (v: { ok: true } | { ok: false; retryAfter: number }) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(v);
      };
      const timer = setTimeout(() => {
        stats.errors['no subscribed within 30 s'] = (stats.errors['no subscribed within 30 s'] ?? 0) + 1;
        ws.terminate();
        settle({ ok: false, retryAfter: 1 });
      }, 30_000);
      ws.on('unexpected-response', (_req, res) => {
        const status = String(res.statusCode);
        stats.refused[status] = (stats.refused[status] ?? 0) + 1;
        refusedTotal++;
        const retryAfter = Math.min(30, Number(res.headers['retry-after']) || 1);
        res.resume();
        ws.terminate();
        stats.retryAfterWaits++;
        stats.retryAfterSeconds += retryAfter;
        settle({ ok: false, retryAfter });
      });
      ws.on('error', (err) => {
        if (settled) return;
        const key = (err as NodeJS.ErrnoException).code ?? err.message.slice(0, 80);
        stats.errors[key] = (stats.errors[key] ?? 0) + 1;
        settle({ ok: false, retryAfter: 1 });
      });
      ws.on('open', () => ws.send(JSON.stringify(s.subscribe)));
      ws.on('message', (data: Buffer) => {
        if (!c.subscribed) {
          if (data.includes(SUBSCRIBED)) {
            c.subscribed = true;
            c.slot = subscribedCount++;
            conns.push(c);
            settle({ ok: true });
          } else if (!settled) {
            stats.errors[`before subscribed: ${data.toString('utf8').slice(0, 80)}`] = (stats.errors[`before subscribed: ${data.toString('utf8').slice(0, 80)}`] ?? 0) + 1;
          }
          return;
        }
        onMessage(c, data);
      });
      ws.on('close', (code) => {
        if (c.subscribed) closed[String(code)] = (closed[String(code)] ?? 0) + 1;
        else settle({ ok: false, retryAfter: 1 });
      });
    });
    if (outcome.ok) return true;
    await sleep(outcome.retryAfter * 1000 * (0.75 + Math.random() * 0.5));
  }
  return false;
}

async function start(s: StartClients) {
  const t0 = now();
  const deadline = Date.now() + s.timeoutMs;
  const stats = { refused: {} as Record<string, number>, errors: {} as Record<string, number>, retryAfterWaits: 0, retryAfterSeconds: 0 };
  let next = 0;
  let failed = 0;
  const progress = setInterval(() => send({ type: 'progress', subscribed: subscribedCount, inFlight, refusedTotal }), 1000);
  await Promise.all(
    Array.from({ length: Math.min(s.concurrency, s.count) }, async () => {
      while (next < s.count && Date.now() < deadline) {
        next++;
        inFlight++;
        const ok = await connectOne(s, deadline, stats);
        inFlight--;
        if (!ok) failed++;
      }
    }),
  );
  clearInterval(progress);
  failed += s.count - next;
  const limits = /^Max open files\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  send({ type: 'connected', pid: process.pid, subscribed: subscribedCount, failed, seconds: (now() - t0) / 1000, ...stats, openFileLimit: Number(limits?.[1] ?? NaN) });
}

process.on('message', (m: ToClients) => {
  switch (m.type) {
    case 'start':
      start(m).catch((e: unknown) => send({ type: 'error', message: String((e as Error)?.stack ?? e) }));
      break;
    case 'arm':
      markerText = m.marker;
      marker = Buffer.from(m.marker);
      times = new Float64Array(subscribedCount);
      received = 0;
      allSent = false;
      send({ type: 'armed', marker: m.marker });
      break;
    case 'collect':
      send({ type: 'receipts', marker: markerText, times: Array.from(times) });
      break;
    case 'status':
      send({ type: 'status', open: conns.filter((c) => c.ws.readyState === WebSocket.OPEN).length, closed: { ...closed }, messages });
      break;
    case 'close':
      for (const c of conns) c.ws.terminate();
      setTimeout(() => process.exit(0), 200);
      break;
  }
});
process.on('disconnect', () => process.exit(0));
