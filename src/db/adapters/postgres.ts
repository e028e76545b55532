import { createHash } from 'node:crypto';
import pg from 'pg';
import { LeveeError } from '../../lib/errors.js';
import { deadlineExceeded, remainingMs, withinBudget } from '../../protection/deadline.js';
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

/** The part of pg's (untyped) protocol Connection that sends a CancelRequest. */
interface CancelConnection {
  stream: { destroy(): void; on(event: 'close', fn: () => void): void };
  connect(port: number | string, host: string): void;
  cancel(processID: number, secretKey: number): void;
  on(event: 'connect' | 'error', fn: () => void): void;
}

const isConnectionError = (e: unknown) => e instanceof LeveeError && e.code === 'database_unavailable';

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

/**
 * Runs one statement on `client` within the request's remaining budget. statement_timeout bounds
 * every statement on the server; when the budget is shorter, a timer sends PostgreSQL a cancel
 * request (the protocol's CancelRequest, on its own short connection) and the caller gets
 * `timeout` at once. The client goes back to the pool when its query settles.
 */
async function runWithin<T>(client: pg.PoolClient, cfg: pg.QueryConfig, cancel: (c: pg.PoolClient) => void, statementTimeoutMs: number): Promise<pg.QueryResult<T & pg.QueryResultRow>> {
  const budget = remainingMs();
  if (budget <= 0) throw deadlineExceeded('the database');
  const running = wrap(client.query<T & pg.QueryResultRow>(cfg));
  if (budget >= statementTimeoutMs) return running;
  return withinBudget(running, 'the database', Infinity, () => {
    cancel(client);
    return deadlineExceeded('the database');
  });
}

export function createPostgresDb(opts: PostgresOptions): Db {
  const { host, port } = new pg.Client({ connectionString: opts.url });
  /** CancelRequest for the statement `client` is running; bounded, errors ignored (it is best effort). */
  const cancel = (client: pg.PoolClient) => {
    const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
    const con = new pg.Connection() as unknown as CancelConnection;
    const giveUp = setTimeout(() => con.stream.destroy(), 1000);
    con.on('connect', () => con.cancel(processID, secretKey));
    con.on('error', () => {});
    con.stream.on('close', () => clearTimeout(giveUp));
    if (host.startsWith('/')) con.connect(`${host}/.s.PGSQL.${port}`, '');
    else con.connect(port, host);
  };

  /** A pooled client, waiting no longer than the request's budget (nor the pool's acquire bound). */
  const acquire = async (): Promise<pg.PoolClient> => {
    const budget = remainingMs();
    if (budget <= 0) throw deadlineExceeded('a database connection');
    const pending = wrap(pool.connect());
    if (budget >= opts.acquireTimeoutMs) return pending;
    try {
      return await withinBudget(pending, 'a database connection');
    } catch (e) {
      // Gave up waiting: the connection still arrives later; give it straight back.
      pending.then((c) => c.release(), () => {});
      throw e;
    }
  };

  const clientQueryable = (c: pg.PoolClient): Queryable => ({
    query: <T>(sql: string, params?: readonly unknown[]) =>
      runWithin<T>(c, statement(sql, params), cancel, opts.statementTimeoutMs).then((r) => ({ rows: r.rows as T[], rowCount: r.rowCount ?? 0 })),
    exec: (script) => runWithin(c, { text: script }, cancel, opts.statementTimeoutMs).then(() => undefined),
  });

  /** One statement on a pooled connection, released when it settles (even after the caller gave up). */
  const once = async <T>(cfg: pg.QueryConfig): Promise<pg.QueryResult<T & pg.QueryResultRow>> => {
    const client = await acquire();
    const result = runWithin<T>(client, cfg, cancel, opts.statementTimeoutMs);
    result.then(
      () => client.release(),
      (e: unknown) => {
        // A cancelled statement leaves a healthy connection once its error arrives; a broken one is dropped.
        if (e instanceof LeveeError && e.code === 'timeout') client.query('SELECT 1').then(() => client.release(), (err: Error) => client.release(err));
        else client.release(isConnectionError(e) ? (e as Error) : undefined);
      },
    );
    return result;
  };

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
  // A checked-out client has no pool listener: a server shutting down (FATAL 57P01) or a dropped socket
  // while it sits between queries would otherwise be an unhandled 'error' event that kills the process.
  pool.on('connect', (client) => client.on('error', (err) => opts.onError?.(err)));

  return {
    engine: 'postgres',
    async query<T>(sql: string, params?: readonly unknown[]): Promise<QueryResult<T>> {
      const r = await once<T>(statement(sql, params));
      return { rows: r.rows as T[], rowCount: r.rowCount ?? 0 };
    },
    exec: (script) => once({ text: script }).then(() => undefined),
    async transaction(fn) {
      const client = await acquire();
      let broken: Error | undefined;
      try {
        const tx = clientQueryable(client);
        await tx.exec('BEGIN');
        const result = await fn(tx);
        await tx.exec('COMMIT');
        return result;
      } catch (e) {
        if (e instanceof LeveeError && (e.code === 'timeout' || e.code === 'database_unavailable')) {
          // The server is slow, gone or frozen: a ROLLBACK would wait on it too. Dropping the
          // connection rolls the transaction back on the server just as well.
          broken = e;
        } else {
          await withinBudget(wrap(client.query('ROLLBACK')), 'ROLLBACK', 1000).catch((rollbackErr: Error) => {
            broken = rollbackErr;
          });
        }
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
