// The database port. One SQL dialect (PostgreSQL) on two engines: PGlite in-process (embedded)
// and a pooled connection to a real PostgreSQL server. Services only see this interface.
//
// Contract:
// - `query` runs one parameterised statement; `exec` runs a parameterless, possibly multi-statement
//   script (migrations). Rows come back with timestamptz as Date, jsonb parsed, uuid as string;
//   cast bigint to int in SQL when a number is wanted (the engines disagree on int8).
// - `transaction` runs `fn` inside BEGIN/COMMIT on one connection and rolls back if it throws.
//   On PGlite it serialises every other query until it ends (PGlite is a single session).
// - Failures to reach the database (refused, pool wait over its bound, statement timeout) surface
//   as LeveeError('database_unavailable'); SQL errors keep their SQLSTATE in `code`.

export interface QueryResult<T> {
  rows: T[];
  rowCount: number;
}

export interface Queryable {
  query<T = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<T>>;
  exec(script: string): Promise<void>;
}

export interface Db extends Queryable {
  readonly engine: 'pglite' | 'postgres';
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** A cheap round trip, for readiness. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** SQLSTATE codes the services branch on. */
export const SQLSTATE = {
  uniqueViolation: '23505',
  queryCanceled: '57014',
} as const;

export const sqlState = (e: unknown): string | undefined =>
  typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'string'
    ? (e as { code: string }).code
    : undefined;
