import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
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
  return {
    engine: 'pglite',
    ...self,
    transaction: (fn) => pg.transaction((tx) => fn(txQueryable(tx))),
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
