import pg from 'pg';
import { createPgliteDb } from '../../src/db/adapters/pglite.js';
import { createPostgresDb } from '../../src/db/adapters/postgres.js';
import type { Db } from '../../src/db/port.js';
import { newSecret } from '../../src/lib/ids.js';

// Every data-layer and HTTP suite runs once per engine through the same code. PostgreSQL suites
// each get a fresh database, dropped afterwards. Without a reachable PostgreSQL the PostgreSQL
// suites are skipped (and say so); with LEVEE_CI=1 that is an error instead.

export const POSTGRES_ADMIN_URL = process.env.LEVEE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const CI = process.env.LEVEE_CI === '1' || process.env.CI === 'true';

export interface TestDatabase {
  db: Db;
  /** Connection URL (PostgreSQL only): for child processes and raw clients. */
  url?: string;
  drop(): Promise<void>;
}

export interface Engine {
  name: 'pglite' | 'postgres';
  /** Set when the engine cannot run here: the reason, for `describe(…, { skip })`. */
  skip: string | false;
  create(opts?: { poolSize?: number; statementTimeoutMs?: number }): Promise<TestDatabase>;
}

let reachable: Promise<boolean> | undefined;
export function postgresReachable(): Promise<boolean> {
  reachable ??= (async () => {
    const c = new pg.Client({ connectionString: POSTGRES_ADMIN_URL, connectionTimeoutMillis: 2000 });
    try {
      await c.connect();
      await c.query('SELECT 1');
      return true;
    } catch {
      return false;
    } finally {
      await c.end().catch(() => {});
    }
  })();
  return reachable;
}

export async function createPostgresDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `levee_test_${newSecret(6).toLowerCase().replace(/[^a-z0-9]/g, 'x')}`;
  const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(POSTGRES_ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

export async function engines(): Promise<Engine[]> {
  const pgUp = await postgresReachable();
  if (!pgUp && CI) throw new Error(`LEVEE_CI is set but PostgreSQL is not reachable at ${POSTGRES_ADMIN_URL}: real-engine suites must run in CI`);
  return [
    {
      name: 'pglite',
      skip: false,
      async create() {
        const db = await createPgliteDb();
        return { db, drop: () => db.close() };
      },
    },
    {
      name: 'postgres',
      skip: pgUp ? false : `PostgreSQL not reachable at ${POSTGRES_ADMIN_URL}`,
      async create(opts = {}) {
        const { url, drop } = await createPostgresDatabase();
        const db = createPostgresDb({ url, poolSize: opts.poolSize ?? 10, acquireTimeoutMs: 2000, statementTimeoutMs: opts.statementTimeoutMs ?? 5000 });
        return {
          db,
          url,
          async drop() {
            await db.close();
            await drop();
          },
        };
      },
    },
  ];
}
