import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { LeveeError } from '../lib/errors.js';
import type { CreateDependency, Dependency } from './dependency.js';

// The Redis client for shared state (rate limits, sign-in throttling; later realtime fan-out and
// caches). Shared state is an optimisation of a decision every process can also make alone, so
// this client is built to never make a request wait on Redis:
// - no offline queue: while disconnected a command fails at once instead of waiting to be sent;
// - every command has a short timeout (LEVEE_REDIS_COMMAND_TIMEOUT_MS) and is not retried;
// - calls go through a dependency guard (bulkhead + circuit breaker): after a few consecutive
//   failures the circuit opens and callers skip Redis entirely until a trial call succeeds;
// - reconnection never stops, with capped exponential backoff; connection errors are logged
//   (throttled), never thrown.
// Callers catch the error `run` throws and decide locally (see rate-limits.ts, brute-force.ts).

export interface SharedRedisOptions {
  url: string;
  /** Longest wait for one command's reply. */
  commandTimeoutMs: number;
  /** Prefix of every key Levee writes (one Redis can serve several deployments). */
  keyPrefix: string;
  logger: Logger;
  createDependency: CreateDependency;
  /** Longest wait for a TCP connection (re)attempt. */
  connectTimeoutMs?: number;
}

export interface SharedRedis {
  readonly client: Redis;
  readonly keyPrefix: string;
  /** False while the circuit is open: callers skip Redis and decide locally. */
  available(): boolean;
  /**
   * Runs `fn` against Redis under the guard. Rejects (within the command timeout) when Redis is
   * unreachable, slow, failing or its circuit is open; the first failure of an outage is logged
   * once, and so is the recovery.
   */
  run<T>(fn: (client: Redis) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

const HALF_OPEN_AFTER_MS = 2_000;

/** Reconnect delay: exponential from 50 ms, capped at 2 s, with jitter so instances spread out. */
export const reconnectDelay = (attempt: number): number => Math.round(Math.min(50 * 2 ** Math.min(attempt, 10), 2_000) * (0.5 + Math.random() / 2));

export function createSharedRedis(opts: SharedRedisOptions): SharedRedis {
  const log = opts.logger.child({ dependency: 'redis' });
  const client = new Redis(opts.url, {
    enableOfflineQueue: false,
    commandTimeout: opts.commandTimeoutMs,
    maxRetriesPerRequest: 0,
    connectTimeout: opts.connectTimeoutMs ?? 2_000,
    retryStrategy: reconnectDelay,
    // Commands are refused at once until the server has answered the ready check (INFO, itself
    // bounded by the command timeout): a server that accepts connections but never answers costs
    // requests nothing.
    enableReadyCheck: true,
    lazyConnect: false,
  });

  let lastError = '';
  let lastErrorAt = 0;
  client.on('error', (err: Error) => {
    // ioredis reports every failed reconnection: log a changed error at once, a repeated one
    // at most every 30 s.
    const now = Date.now();
    if (err.message !== lastError || now - lastErrorAt > 30_000) log.warn({ err: err.message }, 'redis connection error');
    lastError = err.message;
    lastErrorAt = now;
  });
  client.on('ready', () => {
    if (lastError) log.info('redis connected');
    lastError = '';
  });

  const dependency: Dependency = opts.createDependency({
    name: 'redis',
    // Replies take well under a millisecond: this many in flight means Redis is struggling, and
    // waiting in a queue for it would only add latency. Past it, callers decide locally.
    concurrency: 256,
    queue: 0,
    failuresToOpen: 5,
    halfOpenAfterMs: HALF_OPEN_AFTER_MS,
    unavailable: (reason) => new LeveeError('unavailable', `Redis is unavailable (${reason})`),
  });

  let down = false;
  // The breaker only moves from open to half-open when a call is attempted after the delay, so
  // "skip while open" must itself let a call through once the delay has passed — else the
  // circuit would never close again. `openedAt` is when it (re)opened, as far as calls saw.
  let openedAt = 0;
  return {
    client,
    keyPrefix: opts.keyPrefix,
    available: () => dependency.state() !== 'open' || Date.now() - openedAt >= HALF_OPEN_AFTER_MS,
    async run(fn) {
      try {
        const result = await dependency.run(() => fn(client));
        if (down) {
          down = false;
          log.info('redis answers again: shared state is back');
        }
        return result;
      } catch (e) {
        if (!down) {
          down = true;
          log.warn({ err: (e as Error).message }, 'redis unavailable: deciding per process until it answers again');
        }
        // Opened by this failure, or re-opened by a failed trial call.
        if (dependency.state() === 'open' && Date.now() - openedAt >= HALF_OPEN_AFTER_MS) openedAt = Date.now();
        throw e;
      }
    },
    async close() {
      if (client.status === 'ready') {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([client.quit().catch(() => {}), new Promise((ok) => (timer = setTimeout(ok, 500)))]);
        clearTimeout(timer);
      }
      client.disconnect();
    },
  };
}
