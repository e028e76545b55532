import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { bulkhead } from 'cockatiel';
import { currentDeadline, deadlineExceeded, withinBudget } from '../../protection/deadline.js';
import type { Db, Queryable } from '../port.js';
import { lockDirectory } from './dir-lock.js';

/** Raw access to the one PGlite session, for BullMQ's pg.Pool-shaped front (jobs/pglite-pool.ts). */
export interface PgliteSession {
  /** One statement in its turn on the session; parameterless SQL may hold several statements. */
  run(sql: string, params?: readonly unknown[]): Promise<{ rows: unknown[]; rowCount: number }>;
  /** Holds the session for a transaction: nothing else runs on it until `release`. */
  hold(): Promise<{ run: PgliteSession['run']; release(): void }>;
  /** Subscribes to NOTIFY on `channel`; resolves to the unsubscribe. */
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
}

export interface PgliteDb extends Db {
  readonly engine: 'pglite';
  readonly session: PgliteSession;
}

export interface PgliteOptions {
  /** Data directory; undefined keeps everything in memory (tests). */
  dataDir?: string;
}

type PgliteTx = Parameters<Parameters<PGlite['transaction']>[0]>[0];

const txQueryable = (tx: PgliteTx): Queryable => ({
  query: async <T>(sql: string, params?: readonly unknown[]) => {
    const r = await tx.query<T>(sql, params as unknown[]);
    // pg reports the row count of a SELECT too; PGlite's affectedRows is 0 there.
    return { rows: r.rows, rowCount: r.affectedRows || r.rows.length };
  },
  exec: (script) => tx.exec(script).then(() => undefined),
});

/**
 * PGlite is PostgreSQL compiled to WASM running inside this process: one session, queries run one
 * at a time. Nothing in PGlite stops two processes from opening the same directory (and corrupting
 * it), so we hold an exclusive lock on the directory for as long as it is open.
 */
export async function createPgliteDb(opts: PgliteOptions = {}): Promise<PgliteDb> {
  let unlock = () => {};
  if (opts.dataDir) {
    mkdirSync(opts.dataDir, { recursive: true });
    unlock = lockDirectory(opts.dataDir);
  }
  let pg: PGlite;
  try {
    pg = await PGlite.create(opts.dataDir ? { dataDir: `${opts.dataDir}/pgdata` } : {});
  } catch (e) {
    unlock();
    throw e;
  }
  const self = txQueryable(pg as unknown as PgliteTx);
  // PGlite runs one statement (or transaction) at a time and its own queue cannot be left. This
  // lane in front of it can: a request whose deadline passes while waiting for the session gets
  // `timeout` and its statement is skipped when its turn comes. (Bounded: 10,000 waiters.)
  const lane = bulkhead(1, 10_000);
  const inLane = <T>(fn: () => Promise<T>): Promise<T> =>
    withinBudget(lane.execute(fn, currentDeadline()?.signal), 'the database', Infinity, () => deadlineExceeded('the database'));
  // Statements with parameters go through the extended protocol (one statement); parameterless ones
  // through exec, which also takes BullMQ's multi-statement migrations.
  const raw = async (sql: string, params?: readonly unknown[]) => {
    if (params?.length) {
      const r = await pg.query(sql, params as unknown[]);
      return { rows: r.rows, rowCount: r.affectedRows || r.rows.length };
    }
    const results = await pg.exec(sql);
    const last = results.at(-1);
    return { rows: last?.rows ?? [], rowCount: last ? last.affectedRows || last.rows.length : 0 };
  };
  const session: PgliteSession = {
    run: (sql, params) => inLane(() => raw(sql, params)),
    hold: () =>
      new Promise((resolve, reject) => {
        lane
          .execute(() => new Promise<void>((release) => resolve({ run: raw, release: () => release() })))
          .catch(reject);
      }),
    listen: (channel, onPayload) => inLane(() => pg.listen(channel, onPayload)).then((unsub) => () => inLane(() => unsub())),
  };
  return {
    engine: 'pglite',
    session,
    query: (sql, params) => inLane(() => self.query(sql, params)),
    exec: (script) => inLane(() => self.exec(script)),
    transaction: (fn) => inLane(() => pg.transaction((tx) => fn(txQueryable(tx)))),
    ping: () => pg.query('SELECT 1').then(() => undefined),
    async close() {
      try {
        if (!pg.closed) await pg.close();
      } finally {
        unlock();
      }
    },
  };
}
