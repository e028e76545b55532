import { connect, createServer, type Server, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { newSecret } from '../../src/lib/ids.js';
import { CI } from './engines.js';

// Redis-backed suites run against the Redis at LEVEE_TEST_REDIS_URL (default 127.0.0.1:6379). Without
// one they are skipped (and say so); with LEVEE_CI=1 that is an error instead. Each run writes under
// its own key prefix and deletes it afterwards.

export const REDIS_TEST_URL = process.env.LEVEE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

let reachable: Promise<boolean> | undefined;
export function redisReachable(): Promise<boolean> {
  reachable ??= (async () => {
    const c = new Redis(REDIS_TEST_URL, { lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null });
    c.on('error', () => {});
    try {
      await c.connect();
      return (await c.ping()) === 'PONG';
    } catch {
      return false;
    } finally {
      c.disconnect();
    }
  })();
  return reachable;
}

/** `false` when Redis suites can run here, else the reason to skip them. Throws in CI. */
export async function redisSkip(): Promise<string | false> {
  if (await redisReachable()) return false;
  if (CI) throw new Error(`LEVEE_CI is set but Redis is not reachable at ${REDIS_TEST_URL}: Redis suites must run in CI`);
  return `Redis not reachable at ${REDIS_TEST_URL}`;
}

export const uniquePrefix = () => `levee-test:${process.pid}:${newSecret(6)}:`;

/** Deletes every key under `prefix`. */
export async function deletePrefix(prefix: string): Promise<void> {
  const c = new Redis(REDIS_TEST_URL, { maxRetriesPerRequest: 0 });
  try {
    let cursor = '0';
    do {
      const [next, keys] = await c.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      if (keys.length) await c.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    c.disconnect();
  }
}

/** A port nothing listens on (connections are refused). */
export async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok));
  const port = (s.address() as { port: number }).port;
  await new Promise((ok) => s.close(ok));
  return port;
}

/** A TCP server that accepts connections and never answers: a hung Redis. */
export async function silentServer(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((sock) => {
    sockets.add(sock);
    sock.on('error', () => {});
    sock.on('close', () => sockets.delete(sock));
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const port = (server.address() as { port: number }).port;
  return {
    url: `redis://127.0.0.1:${port}`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((ok) => server.close(ok));
    },
  };
}

/**
 * A TCP proxy to the test Redis that can freeze: while frozen, nothing passes either way (a Redis
 * that hangs mid-connection, after it was ready). Thawing lets the held bytes through.
 */
export async function freezableProxy(): Promise<{ url: string; freeze(): void; thaw(): void; close(): Promise<void> }> {
  const target = new URL(REDIS_TEST_URL);
  const pairs = new Set<[Socket, Socket]>();
  let frozen = false;
  const link = ([a, b]: [Socket, Socket]) => {
    a.pipe(b);
    b.pipe(a);
  };
  const server = createServer((client) => {
    const upstream = connect(Number(target.port || 6379), target.hostname);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    for (const s of pair) {
      s.on('error', () => {});
      s.on('close', () => {
        pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      });
    }
    if (!frozen) link(pair);
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const port = (server.address() as { port: number }).port;
  return {
    url: `redis://127.0.0.1:${port}`,
    freeze() {
      frozen = true;
      for (const [a, b] of pairs) {
        a.unpipe(b);
        b.unpipe(a);
        a.pause();
        b.pause();
      }
    },
    thaw() {
      frozen = false;
      for (const pair of pairs) link(pair);
    },
    async close() {
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      await new Promise((ok) => server.close(ok));
    },
  };
}
