import type { ServerResponse } from 'node:http';
import type { WebSocket } from 'ws';
import type { RealtimeEvent } from './event.js';

// A connected client as the hub sees it, whatever carries it (WebSocket, or Server-Sent Events for
// clients that cannot hold a socket). The hub writes the event's pre-serialized bytes and checks
// how much is still queued, so a slow client is cut off before it costs unbounded memory.

export interface Peer {
  readonly transport: 'ws' | 'sse';
  /** Bytes queued for this client and not yet taken by the kernel. */
  buffered(): number;
  write(e: RealtimeEvent): void;
  /** A control message: `subscribed`, `error`, `pong`. */
  message(m: { type: string; [k: string]: unknown }): void;
  /** Ends the connection: WebSocket close code and reason; SSE sends them as a last `close` event. */
  close(code: number, reason: string): void;
}

/** How long a closed connection may take to flush what is queued (and, for WebSocket, finish the close handshake) before its socket is destroyed. */
const LINGER_MS = 5_000;

export function webSocketPeer(ws: WebSocket): Peer {
  return {
    transport: 'ws',
    buffered: () => ws.bufferedAmount,
    write: (e) => ws.send(e.wsBytes(), { binary: false }),
    message: (m) => ws.send(JSON.stringify(m)),
    close: (code, reason) => {
      ws.close(code, reason);
      setTimeout(() => ws.terminate(), LINGER_MS).unref();
    },
  };
}

export function ssePeer(res: ServerResponse): Peer {
  const send = (type: string, m: object) => {
    if (!res.writableEnded) res.write(`event: ${type}\ndata: ${JSON.stringify(m)}\n\n`);
  };
  return {
    transport: 'sse',
    buffered: () => res.writableLength,
    write: (e) => {
      if (!res.writableEnded) res.write(e.sseBytes());
    },
    message: (m) => send(m.type, m),
    close: (code, reason) => {
      if (res.writableEnded) return;
      send('close', { type: 'close', code, reason });
      res.end();
      setTimeout(() => res.destroy(), LINGER_MS).unref();
    },
  };
}
