import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { LeveeStartupError } from '../lib/startup-error.js';
import type { Db } from './port.js';

// Versioned SQL migrations: migrations/NNNN_name.sql, applied in order, each recorded with a
// checksum. All pending migrations run in one transaction under a transaction-scoped advisory
// lock, so processes starting together on one PostgreSQL apply each migration exactly once and
// the losers wait, then find nothing to do.

const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));
/** Arbitrary, fixed: the advisory lock key every Levee process uses for migrations. */
export const MIGRATION_LOCK_KEY = 7_426_001;

export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

export function loadMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f))
    .sort()
    .map((file) => {
      const sql = readFileSync(`${dir}/${file}`, 'utf8');
      return {
        version: Number(file.slice(0, 4)),
        name: file.slice(5, -4),
        sql,
        checksum: createHash('sha256').update(sql).digest('hex').slice(0, 16),
      };
    });
}

export interface MigrateResult {
  applied: string[];
  current: number;
}

export async function migrate(db: Db, migrations = loadMigrations(), extraSql: string[] = []): Promise<MigrateResult> {
  return db.transaction(async (tx) => {
    // Waiting for another process's migrations, or building an index on a big table, may take
    // longer than the pool's statement_timeout: lift it for this transaction only.
    await tx.exec('SET LOCAL statement_timeout = 0');
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
    await tx.exec(`CREATE TABLE IF NOT EXISTS levee_migrations (
      version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await tx.query<{ version: number; checksum: string; name: string }>(
      'SELECT version, name, checksum FROM levee_migrations ORDER BY version',
    );
    const done = new Map(rows.map((r) => [r.version, r]));
    const applied: string[] = [];
    for (const m of migrations) {
      const prior = done.get(m.version);
      if (prior) {
        if (prior.checksum !== m.checksum) {
          const file = `${String(m.version).padStart(4, '0')}_${m.name}.sql`;
          throw new LeveeStartupError(
            `migration ${file} was changed after it was applied (checksum ${prior.checksum} in the database, ${m.checksum} on disk): restore the applied file and put the change in a new migration`,
          );
        }
        continue;
      }
      await tx.exec(m.sql);
      await tx.query('INSERT INTO levee_migrations (version, name, checksum) VALUES ($1, $2, $3)', [m.version, m.name, m.checksum]);
      applied.push(`${String(m.version).padStart(4, '0')}_${m.name}`);
    }
    // Schema derived from configuration (declared collection indexes): idempotent DDL.
    for (const sql of extraSql) await tx.exec(sql);
    return { applied, current: migrations.at(-1)?.version ?? 0 };
  });
}

/** True when every known migration is recorded in the database. */
export async function migrationsApplied(db: Db, migrations = loadMigrations()): Promise<boolean> {
  const latest = migrations.at(-1)?.version ?? 0;
  try {
    const { rows } = await db.query<{ v: number | null }>('SELECT max(version)::int AS v FROM levee_migrations');
    return (rows[0]?.v ?? 0) >= latest;
  } catch {
    return false;
  }
}
