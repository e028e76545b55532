import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createPgliteDb } from '../../src/db/adapters/pglite.js';
import type { Queryable } from '../../src/db/port.js';
import { createPostgresDatabase } from '../../test/support/engines.js';
import { deleteRedisPrefix, freePort, inheritedEnv, REPO, requestJson, startChild, type Child } from '../support.js';

// The sync benchmark's server side: one engine's storage (a fresh PostgreSQL database plus a Redis
// key prefix of its own, or an embedded data directory), the collections file, Levee's settings
// (limits that would throttle a single benchmark client raised), the API child process, and raw
// access to the same database for the ceilings.

export const log = (msg: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${msg}`);

export type EngineName = 'embedded' | 'postgres';

/**
 * `notes`: a user's own data (the offline-sync case), the pull backlog; `drafts`: the same kind,
 * written by the push part (so the backlog stays exactly what was seeded); `posts`: public, what
 * realtime fans out.
 */
export const COLLECTIONS = {
  collections: {
    notes: { read: 'owner', write: 'owner' },
    drafts: { read: 'owner', write: 'owner' },
    posts: { read: 'public', write: 'owner', indexes: ['createdAt'] },
  },
};

/** A raw client on the benchmarked engine, for the ceilings: the same SQL without Levee around it. */
export interface RawDb extends Queryable {
  close(): Promise<void>;
}

export interface Storage {
  engine: EngineName;
  env: NodeJS.ProcessEnv;
  /**
   * A raw client. PostgreSQL: any time (a connection of its own). Embedded: only while no Levee
   * process holds the data directory (PGlite is single-process), so the ceilings run after Levee stops.
   */
  raw(): Promise<RawDb>;
  cleanup(): Promise<void>;
}

function runCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['bin/levee.js', ...args], { cwd: REPO, env, timeout: timeoutMs, killSignal: 'SIGKILL' }, (e, stdout, stderr) =>
      e ? reject(new Error(`levee ${args.join(' ')} failed: ${e.message}\n${stdout}\n${stderr}`)) : resolve(stdout),
    );
  });
}

/**
 * Levee's settings for the benchmark: the collections, quiet logs, and every per-client limit out of
 * the way (one benchmark user sends hundreds of requests a minute and opens 10,000 sockets from
 * one address). `extra` (BENCH_SYNC_SERVER_ENV) comes last and wins.
 */
export function leveeEnv(configFile: string, extra: Record<string, string>): NodeJS.ProcessEnv {
  return {
    ...inheritedEnv(),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    LEVEE_CONFIG: configFile,
    LEVEE_SHUTDOWN_GRACE_MS: '2000',
    LEVEE_ACCESS_TOKEN_TTL_SECONDS: '86400',
    LEVEE_RATE_LIMIT_IP_PER_MINUTE: '10000000',
    LEVEE_RATE_LIMIT_IP_BURST: '1000000',
    LEVEE_RATE_LIMIT_USER_PER_MINUTE: '10000000',
    LEVEE_RATE_LIMIT_USER_BURST: '1000000',
    LEVEE_RATE_LIMIT_ANONYMOUS_PER_MINUTE: '1000000',
    ...REALTIME_ENV,
    ...extra,
  };
}

/**
 * Realtime's admission (connections per second, burst, per-process cap) raised so that the
 * benchmark's 10,000 sockets from one address connect in a few seconds; the clients still honour
 * a Retry-After if they are refused. Settings that this Levee does not know are ignored by it.
 */
export const REALTIME_ENV: Record<string, string> = {
  LEVEE_REALTIME_ACCEPT_PER_SECOND: '100000',
  LEVEE_REALTIME_ACCEPT_BURST: '100000',
  LEVEE_REALTIME_MAX_CONNECTIONS: '200000',
};

export async function prepareStorage(engine: EngineName, o: { redisUrl: string; serverEnv: Record<string, string> }, cleanups: (() => Promise<void>)[]): Promise<Storage> {
  const dir = mkdtempSync(join(tmpdir(), `levee-bench-sync-${engine}-`));
  const rmDir = async () => rmSync(dir, { recursive: true, force: true });
  cleanups.push(rmDir);
  const configFile = join(dir, 'levee.config.json');
  writeFileSync(configFile, JSON.stringify(COLLECTIONS, null, 2));
  const base = leveeEnv(configFile, o.serverEnv);

  if (engine === 'embedded') {
    const dataDir = join(dir, 'data');
    const env = { ...base, LEVEE_DATA_DIR: dataDir, LEVEE_QUEUE_ENGINE: 'database' };
    await runCli(['migrate'], env, 180_000);
    return {
      engine,
      env,
      async raw() {
        const db = await createPgliteDb({ dataDir });
        return { query: (sql, params) => db.query(sql, params), exec: (sql) => db.exec(sql), close: () => db.close() };
      },
      cleanup: rmDir,
    };
  }

  const db = await createPostgresDatabase();
  const prefix = `levee-bench-sync-${randomBytes(4).toString('hex')}:`;
  const cleanup = async () => {
    await db.drop();
    await deleteRedisPrefix(o.redisUrl, prefix);
  };
  cleanups.push(cleanup);
  const env = { ...base, DATABASE_URL: db.url, REDIS_URL: o.redisUrl, LEVEE_REDIS_KEY_PREFIX: prefix };
  await runCli(['migrate'], env, 180_000);
  return {
    engine,
    env,
    async raw() {
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      return {
        query: async <T>(sql: string, params?: readonly unknown[]) => {
          const r = await c.query(sql, params as unknown[]);
          return { rows: r.rows as T[], rowCount: r.rowCount ?? 0 };
        },
        exec: async (sql) => void (await c.query(sql)),
        close: () => c.end(),
      };
    },
    cleanup,
  };
}

/** One `levee start --roles api` on the engine (node args first, e.g. --cpu-prof). */
export async function startApi(storage: Storage, name: string, nodeArgs: string[] = []): Promise<Child> {
  const port = await freePort();
  return startChild(name, [...nodeArgs, 'bin/levee.js', 'start', '--roles', 'api'], { ...storage.env, PORT: String(port) }, port);
}

export interface BenchUser {
  userId: string;
  token: string;
}

/** An anonymous account (a device's first launch): its id and access token. */
export async function signIn(url: string): Promise<BenchUser> {
  const r = await requestJson<{ user: { id: string }; accessToken: string }>('POST', `${url}/v1/auth/anonymous`, { body: { deviceName: 'sync bench' } });
  if (r.status !== 201) throw new Error(`POST /v1/auth/anonymous: ${r.status} ${JSON.stringify(r.body)}`);
  return { userId: r.body.user.id, token: r.body.accessToken };
}

/** Soft and hard limit of open files of a process (Linux /proc/<pid>/limits). */
export function openFileLimit(pid: number | 'self' = 'self'): { soft: number; hard: number } {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
  const n = (s: string | undefined) => (s === 'unlimited' ? Infinity : Number(s));
  return { soft: n(m?.[1]), hard: n(m?.[2]) };
}

/** Scrapes the default Node metrics (prom-client) of a Levee process: RSS and heap used, in bytes. */
export async function scrapeMemory(url: string): Promise<{ rss: number; heapUsed: number; external: number } | undefined> {
  try {
    const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
    // Every metric carries the process's default labels (roles="api").
    const get = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, 'm').exec(text)?.[1] ?? NaN);
    return { rss: get('process_resident_memory_bytes'), heapUsed: get('nodejs_heap_size_used_bytes'), external: get('nodejs_external_memory_bytes') };
  } catch {
    return undefined;
  }
}

/** A Prometheus counter or gauge of a Levee process, summed over its labels (NaN when absent). */
export async function scrapeMetric(url: string, name: string): Promise<number> {
  try {
    const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
    let sum = NaN;
    for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, 'gm'))) sum = (Number.isNaN(sum) ? 0 : sum) + Number(m[1]);
    return sum;
  } catch {
    return NaN;
  }
}
