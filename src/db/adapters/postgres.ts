import { createHash } from 'node:crypto';
import pg from 'pg';
import { LeveeError } from '../../lib/errors.js';
import type { Db, Queryable, QueryResult } from '../port.js';

export interface PostgresOptions {
  url: string;
  /** Most connections this process holds. */
  poolSize: number;
  /** Longest wait for a free connection before failing with database_unavailable. */
  acquireTimeoutMs: number;
  /** Server-side statement_timeout for every statement. */
  statementTimeoutMs: number;
  applicationName?: string;
  onError?: (err: Error) => void;
}

// SQLSTATE classes that mean "the server is not able to serve us right now", not "your SQL is wrong".
const UNAVAILABLE_STATES = new Set(['57014', '57P01', '57P02', '57P03', '53300', '08000', '08003', '08006', '08001', '08004']);
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH']);

export function mapPgError(e: unknown): unknown {
  if (e instanceof LeveeError) return e;
  const err = e as { code?: string; message?: string };
  const msg = err?.message ?? '';
  if (
    (err?.code && (UNAVAILABLE_STATES.has(err.code) || NETWORK_CODES.has(err.code))) ||
    /timeout exceeded when trying to connect|Connection terminated|connection timeout|Client has encountered a connection error|Query read timeout/i.test(msg)
  ) {
    return new LeveeError('database_unavailable', undefined, { cause: e, retryAfter: 1 });
  }
  return e;
}

const wrap = async <T>(p: Promise<T>): Promise<T> => {
  try {
    return await p;
  } catch (e) {
    throw mapPgError(e);
  }
};

// Parameterised statements run as named prepared statements, so PostgreSQL parses and plans each
// text once per connection instead of on every call (a large share of a primary-key lookup's cost).
// pg keeps prepared statements per connection forever, so only the first PREPARED_MAX distinct
// texts get a name; the rest (unusual filter combinations) run unnamed.
const PREPARED_MAX = 500;
const statementNames = new Map<string, string>();
function statement(text: string, values: readonly unknown[] | undefined): pg.QueryConfig {
  if (!values?.length) return { text };
  let name = statementNames.get(text);
  if (!name && statementNames.size < PREPARED_MAX) {
    name = `levee_${createHash('sha1').update(text).digest('base64url').slice(0, 16)}`;
    statementNames.set(text, name);
  }
  return name ? { name, text, values: values as unknown[] } : { text, values: values as unknown[] };
}

const clientQueryable = (c: pg.PoolClient): Queryable => ({
  query: <T>(sql: string, params?: readonly unknown[]) =>
    wrap(c.query(statement(sql, params))).then((r) => ({ rows: r.rows as T[], rowCount: r.rowCount ?? 0 })),
  exec: (script) => wrap(c.query(script)).then(() => undefined),
});

export function createPostgresDb(opts: PostgresOptions): Db {
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.poolSize,
    connectionTimeoutMillis: opts.acquireTimeoutMs,
    idleTimeoutMillis: 30_000,
    statement_timeout: opts.statementTimeoutMs,
    // No pg `query_timeout`: it arms a timer per query (measured: −31 % feed throughput). The
    // server bounds statements; TCP keepalive detects a server that vanished within ~10 s.
    keepAliveInitialDelayMillis: 10_000,
    application_name: opts.applicationName ?? 'levee',
    keepAlive: true,
  });
  // An idle client losing its connection (server restart) must not crash the process.
  pool.on('error', (err) => opts.onError?.(err));

  return {
    engine: 'postgres',
    async query<T>(sql: string, params?: readonly unknown[]): Promise<QueryResult<T>> {
      const r = await wrap(pool.query(statement(sql, params)));
      return { rows: r.rows as T[], rowCount: r.rowCount ?? 0 };
    },
    exec: (script) => wrap(pool.query(script)).then(() => undefined),
    async transaction(fn) {
      const client = await wrap(pool.connect());
      let broken: Error | undefined;
      try {
        await wrap(client.query('BEGIN'));
        const result = await fn(clientQueryable(client));
        await wrap(client.query('COMMIT'));
        return result;
      } catch (e) {
        await client.query('ROLLBACK').catch((rollbackErr: Error) => {
          broken = rollbackErr;
        });
        throw e;
      } finally {
        // A client whose ROLLBACK failed is in an unknown state: destroy it rather than reuse it.
        client.release(broken);
      }
    },
    ping: () => wrap(pool.query('SELECT 1')).then(() => undefined),
    close: () => pool.end(),
  };
}
