import { LeveeError } from '../lib/errors.js';
import type { Dependency } from '../protection/dependency.js';
import type { Db } from './port.js';

/**
 * The database behind a circuit breaker: when connections keep failing (server down, restarting,
 * out of connections), requests get `database_unavailable` at once for a moment instead of each
 * waiting out a connect attempt; a trial call every `halfOpenAfterMs` notices the recovery.
 * Only failures to reach the database count — a slow or wrong query is not an outage.
 */
export function guardDb(db: Db, dependency: Dependency): Db {
  return {
    engine: db.engine,
    query: (sql, params) => dependency.run(() => db.query(sql, params)),
    exec: (script) => dependency.run(() => db.exec(script)),
    transaction: (fn) => dependency.run(() => db.transaction(fn)),
    ping: () => dependency.run(() => db.ping()),
    close: () => db.close(),
  };
}

export const isDatabaseOutage = (e: unknown) => e instanceof LeveeError && e.code === 'database_unavailable' && !/statement timeout|canceling statement/i.test(String((e.cause as Error | undefined)?.message));
