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
  close(): Promise<void>;
}

/** Embedded mode: one process, so the signal is a coalesced callback. */
export function createLocalSignal(): ChangeSignal {
  const listeners: (() => void)[] = [];
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
    async close() {
      listeners.length = 0;
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
 * With REDIS_URL: pokes are published on one channel and every API process subscribes to it. The
 * subscriber connection is opened by the first `onPoke` (API processes only; a worker only pokes).
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

  const publish = () => {
    timer = undefined;
    lastPublish = Date.now();
    // Redis down or its circuit open: dropped (and counted); the idle poll covers it.
    if (!opts.redis.available()) return opts.onDropped?.();
    opts.redis.run((c) => c.publish(opts.channel, id)).catch(() => opts.onDropped?.());
  };

  return {
    poke() {
      local.poke();
      if (timer) return;
      const wait = lastPublish + coalesceMs - Date.now();
      if (wait <= 0) publish();
      else timer = setTimeout(publish, wait);
    },
    onPoke(fn) {
      local.onPoke(fn);
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
      subscriber.on('message', (_channel: string, from: string) => {
        if (from !== id) local.poke();
      });
      subscriber.subscribe(opts.channel).catch((err: Error) => log.warn({ err: err.message }, 'realtime subscriber: subscribe failed (retried on reconnect)'));
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
