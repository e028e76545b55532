import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import type { Principal } from '../auth/access-tokens.js';
import type { CollectionConfig } from '../config/collections.js';
import type { Db } from '../db/port.js';
import { LeveeError } from '../lib/errors.js';
import type { CursorCodec } from '../sync/cursor.js';
import type { SyncService } from '../sync/service.js';
import { changeLog } from '../sync/store.js';
import { createConnectionAdmission, type ConnectionSlot } from './admission.js';
import { createCatchUpReader } from './catch-up.js';
import { CLOSE, createHub, type Subscription } from './hub.js';
import { ssePeer, webSocketPeer } from './peer.js';
import { parseClientMessage } from './protocol.js';
import type { ChangeSignal } from './signal.js';
import { createTailer } from './tailer.js';

export { createLocalSignal, createRedisSignal, type ChangeSignal } from './signal.js';
export { CLOSE, type Subscription } from './hub.js';

// Realtime: subscribers get every change they may read as it happens, each with its change-log
// position, and resume from that position after a disconnect. One tailer per process reads the
// change log (woken by the change signal, from this process or — with Redis — any other), the hub
// fans each change out, and each connection is bounded: its send buffer, its message rate, its
// subscriptions, its token's lifetime, and its liveness (ping/pong).

export interface RealtimeSettings {
  pollMs: number;
  pingIntervalMs: number;
  maxBufferedBytes: number;
  maxSubscriptions: number;
  maxFrameBytes: number;
  messagesPerSecond: number;
  maxConnections: number;
  acceptPerSecond: number;
  acceptBurst: number;
  catchUpConcurrency: number;
  catchUpQueue: number;
  catchUpBudgetMs: number;
}

export interface RealtimeMetrics {
  connections(transport: 'ws' | 'sse', delta: number): void;
  refused(reason: string): void;
  delivered(n: number): void;
  slowConsumer(): void;
  tailerLag(seconds: number): void;
}

export interface RealtimeDeps {
  db: Db;
  sync: SyncService;
  cursors: CursorCodec;
  collections: Map<string, CollectionConfig>;
  signal: ChangeSignal;
  settings: RealtimeSettings;
  logger: Logger;
  metrics?: RealtimeMetrics | undefined;
}

/** Who is connecting: the principal of the access token (if any) and when that token expires. */
export interface RealtimeAuth {
  principal: Principal | undefined;
  /** Epoch ms; the connection is closed (4001) then, so the client refreshes and resumes. */
  expiresAt?: number | undefined;
}

const CATCH_UP_PAGE = 500;

export function createRealtime(deps: RealtimeDeps) {
  const { settings, logger, metrics } = deps;
  const log = logger.child({ component: 'realtime' });
  const everything = [...deps.collections.keys()].map((collection) => ({ collection }));
  const tailer = createTailer({
    read: (from, limit) => changeLog.pull(deps.db, everything, from, limit),
    encode: deps.cursors.encode,
    emit: (events) => hub.publish(events),
    pollMs: settings.pollMs,
    logger,
    onLag: metrics?.tailerLag,
  });
  const hub = createHub({
    collections: deps.collections,
    cursors: deps.cursors,
    catchUp: createCatchUpReader({
      readPage: deps.sync.readPage,
      encode: deps.cursors.encode,
      concurrency: settings.catchUpConcurrency,
      queueMax: settings.catchUpQueue,
      pageSize: CATCH_UP_PAGE,
      budgetMs: settings.catchUpBudgetMs,
    }),
    livePosition: () => tailer.position(),
    maxSubscriptions: settings.maxSubscriptions,
    maxBufferedBytes: settings.maxBufferedBytes,
    onDelivered: metrics?.delivered,
    onSlowConsumer: metrics?.slowConsumer,
  });
  const admission = createConnectionAdmission({ perSecond: settings.acceptPerSecond, burst: settings.acceptBurst, maxConnections: settings.maxConnections });

  // One timer for every connection's heartbeat, not one per connection.
  const heartbeats = new Set<() => void>();
  let heartbeatTimer: NodeJS.Timeout | undefined;

  /** Closes the connection when its access token expires: the client refreshes and resumes. */
  const expiry = (auth: RealtimeAuth, close: () => void) =>
    auth.expiresAt === undefined ? undefined : setTimeout(close, Math.max(0, Math.min(auth.expiresAt - Date.now(), 2 ** 31 - 1))).unref();
  const TOKEN_EXPIRED = 'token_expired: refresh the access token, reconnect and resume from your last position';

  /** Shutdown, first step: no new connections; open ones are told to reconnect elsewhere and resume. */
  function closeConnections() {
    admission.close();
    for (const c of [...hub.clients()]) hub.close(c, CLOSE.goingAway, 'server shutting down: reconnect elsewhere and resume from your last position');
  }

  const handleFailure = (what: string) => (err: unknown) => log.error({ err }, `realtime: ${what} failed`);

  return {
    settings,
    admission,
    hub,
    tailer,

    /** Reads the change log's head and starts following it. */
    async start() {
      await tailer.start();
      deps.signal.onPoke(() => tailer.poke());
      deps.signal.onUserEvent((userId, event) => hub.notifyUser(userId, event));
      heartbeatTimer = setInterval(() => heartbeats.forEach((beat) => beat()), settings.pingIntervalMs).unref();
    },

    /** Throws what a subscription would be refused with (checked before an SSE stream starts). */
    check: (principal: Principal | undefined, s: Subscription) => hub.check(principal, s),

    /** An upgraded WebSocket: speaks the client protocol until it closes. */
    acceptWebSocket(ws: WebSocket, auth: RealtimeAuth, slot: ConnectionSlot) {
      const client = hub.connect(webSocketPeer(ws), auth.principal);
      metrics?.connections('ws', 1);
      let alive = true;
      const beat = () => {
        // No pong since the last ping: the peer is gone (or its network is); free the connection.
        if (!alive) return ws.terminate();
        alive = false;
        ws.ping();
      };
      heartbeats.add(beat);
      ws.on('pong', () => (alive = true));
      const tokenTimer = expiry(auth, () => hub.close(client, CLOSE.tokenExpired, TOKEN_EXPIRED));

      // Per-connection message rate: a token bucket; over it, an error per message, and a client
      // that keeps going after a burst's worth of errors is closed (1008).
      const burst = settings.messagesPerSecond * 2;
      let tokens = burst;
      let refilled = Date.now();
      let strikes = 0;
      ws.on('message', (data, isBinary) => {
        if (client.closed) return;
        const now = Date.now();
        tokens = Math.min(burst, tokens + ((now - refilled) / 1000) * settings.messagesPerSecond);
        refilled = now;
        if (tokens < 1) {
          if (++strikes > burst) return hub.close(client, CLOSE.policy, 'message flood');
          return hub.error(client, new LeveeError('rate_limited', `At most ${settings.messagesPerSecond} messages a second`));
        }
        tokens--;
        const msg = parseClientMessage(data, isBinary);
        if (msg instanceof LeveeError) return hub.error(client, msg);
        if (msg.type === 'ping') return client.peer.message({ type: 'pong' });
        if (msg.type === 'unsubscribe') return hub.unsubscribe(client, msg);
        hub.subscribe(client, msg).catch((err: unknown) => {
          handleFailure('subscribe')(err);
          hub.close(client, CLOSE.internal, 'internal error: reconnect and resume from your last position');
        });
      });
      ws.on('close', () => {
        hub.disconnect(client);
        heartbeats.delete(beat);
        clearTimeout(tokenTimer);
        slot.release();
        metrics?.connections('ws', -1);
      });
    },

    /** An SSE response: headers are sent here; the subscription was checked by the caller. */
    acceptSse(res: ServerResponse, auth: RealtimeAuth, s: Subscription, slot: ConnectionSlot) {
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      // `retry:` is the browser's reconnection delay: jittered, so a restart's reconnects spread out.
      res.write(`retry: ${1000 + Math.floor(Math.random() * 4000)}\n\n`);
      const client = hub.connect(ssePeer(res), auth.principal);
      metrics?.connections('sse', 1);
      const beat = () => {
        if (client.closed) return;
        if (res.writableLength > settings.maxBufferedBytes) return hub.slowConsumer(client);
        res.write(': ping\n\n');
      };
      heartbeats.add(beat);
      const tokenTimer = expiry(auth, () => hub.close(client, CLOSE.tokenExpired, TOKEN_EXPIRED));
      res.once('close', () => {
        hub.disconnect(client);
        heartbeats.delete(beat);
        clearTimeout(tokenTimer);
        slot.release();
        metrics?.connections('sse', -1);
      });
      hub.subscribe(client, s).catch((err: unknown) => {
        handleFailure('subscribe')(err);
        hub.close(client, CLOSE.internal, 'internal error');
      });
    },

    closeConnections,

    /** Shutdown: closes what is still open and stops following the change log. */
    async stop() {
      closeConnections();
      clearInterval(heartbeatTimer);
      await tailer.stop();
    },
  };
}

export type Realtime = ReturnType<typeof createRealtime>;
