import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { reconnectDelay, type SharedRedis } from '../protection/redis.js';

// The change signal: "something was written, read the change log". It carries no data — the change
// log is the source of truth and the tailer reads it — so a lost poke costs latency (the tailer's
// idle poll catches up), never a change. That is what lets a poke be fire-and-forget: it never
// blocks or throws into the request that made it.

export interface ChangeSignal {
  /** After a write committed. Cheap, synchronous, never throws. */
  poke(): void;
  /** `fn` runs (asynchronously, coalesced) after pokes from this process or, with Redis, any instance. */
  onPoke(fn: () => void): void;
  /**
   * A notice for one user's realtime connections (e.g. "your file is ready"), from any role. Unlike
   * changes these are not in the change log: best effort, not replayed on resume — the state they
   * announce is always readable by polling. Never blocks or throws.
   */
  notifyUser(userId: string, event: UserEvent): void;
  onUserEvent(fn: (userId: string, event: UserEvent) => void): void;
  close(): Promise<void>;
}

export type UserEvent = { type: string } & Record<string, unknown>;

/** Embedded mode: one process, so the signal is a coalesced callback. */
export function createLocalSignal(): ChangeSignal {
  const listeners: (() => void)[] = [];
  const userListeners: ((userId: string, event: UserEvent) => void)[] = [];
  let scheduled = false;
  const fire = () => {
    scheduled = false;
    for (const fn of listeners) fn();
  };
  return {
    poke() {
      if (scheduled || listeners.length === 0) return;
      scheduled = true;
      setImmediate(fire);
    },
    onPoke: (fn) => void listeners.push(fn),
    notifyUser(userId, event) {
      if (userListeners.length > 0) setImmediate(() => userListeners.forEach((fn) => fn(userId, event)));
    },
    onUserEvent: (fn) => void userListeners.push(fn),
    async close() {
      listeners.length = 0;
      userListeners.length = 0;
    },
  };
}

export interface RedisSignalOptions {
  /** Publishes go through the shared client (its breaker and short command timeout). */
  redis: SharedRedis;
  /** For the subscriber's own connection: a subscribed connection can run no other command. */
  url: string;
  channel: string;
  logger: Logger;
  /** At most one publish per this many ms; pokes in between ride on the next one. */
  coalesceMs?: number;
  onDropped?: () => void;
}

/**
 * With REDIS_URL: pokes are published on one channel, user notices on another, and every API
 * process subscribes to both. The subscriber connection is opened by the first `onPoke` or
 * `onUserEvent` (API processes only; a worker only publishes).
 * Local listeners are called directly as well, so this process does not wait on Redis for its own
 * writes, and its own messages coming back are ignored.
 */
export function createRedisSignal(opts: RedisSignalOptions): ChangeSignal {
  const local = createLocalSignal();
  const id = randomUUID();
  const coalesceMs = opts.coalesceMs ?? 2;
  const log = opts.logger.child({ component: 'realtime-signal' });
  let subscriber: Redis | undefined;
  let lastPublish = 0;
  let timer: NodeJS.Timeout | undefined;

  const userChannel = `${opts.channel}:users`;
  const publish = () => {
    timer = undefined;
    lastPublish = Date.now();
    // Redis down or its circuit open: dropped (and counted); the idle poll covers it.
    if (!opts.redis.available()) return opts.onDropped?.();
    opts.redis.run((c) => c.publish(opts.channel, id)).catch(() => opts.onDropped?.());
  };

  /** Opens the subscriber connection once (API processes only; a worker only publishes). */
  const subscribe = () => {
    if (subscriber) return;
    subscriber = new Redis(opts.url, { retryStrategy: reconnectDelay, maxRetriesPerRequest: null, connectTimeout: 2_000 });
    let lastError = '';
    subscriber.on('error', (err: Error) => {
      if (err.message !== lastError) log.warn({ err: err.message }, 'realtime subscriber: redis connection error');
      lastError = err.message;
    });
    // Resubscribed after a reconnect (ioredis does that); whatever was published meanwhile is
    // read now rather than at the next idle poll.
    subscriber.on('ready', () => {
      lastError = '';
      local.poke();
    });
    subscriber.on('message', (channel: string, message: string) => {
      if (channel === opts.channel) {
        if (message !== id) local.poke();
        return;
      }
      try {
        const m = JSON.parse(message) as { from?: string; userId?: unknown; event?: UserEvent };
        if (m.from !== id && typeof m.userId === 'string' && typeof m.event?.type === 'string') local.notifyUser(m.userId, m.event);
      } catch {
        // not one of ours
      }
    });
    subscriber.subscribe(opts.channel, userChannel).catch((err: Error) => log.warn({ err: err.message }, 'realtime subscriber: subscribe failed (retried on reconnect)'));
  };

  return {
    poke() {
      local.poke();
      if (timer) return;
      const wait = lastPublish + coalesceMs - Date.now();
      if (wait <= 0) publish();
      else timer = setTimeout(publish, wait);
    },
    notifyUser(userId, event) {
      local.notifyUser(userId, event);
      if (!opts.redis.available()) return opts.onDropped?.();
      const message = JSON.stringify({ from: id, userId, event });
      opts.redis.run((c) => c.publish(userChannel, message)).catch(() => opts.onDropped?.());
    },
    onUserEvent(fn) {
      local.onUserEvent(fn);
      subscribe();
    },
    onPoke(fn) {
      local.onPoke(fn);
      subscribe();
    },
    async close() {
      clearTimeout(timer);
      await local.close();
      if (subscriber) {
        const s = subscriber;
        subscriber = undefined;
        let t: NodeJS.Timeout | undefined;
        await Promise.race([s.quit().catch(() => {}), new Promise((ok) => (t = setTimeout(ok, 500)))]);
        clearTimeout(t);
        s.disconnect();
      }
    },
  };
}
