import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { bulkhead } from 'cockatiel';
import { currentDeadline, deadlineExceeded, withinBudget } from '../../protection/deadline.js';
import type { Db, Queryable } from '../port.js';
import { lockDirectory } from './dir-lock.js';

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
export async function createPgliteDb(opts: PgliteOptions = {}): Promise<Db> {
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
  return {
    engine: 'pglite',
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
