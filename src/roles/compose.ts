import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { createAccessTokens } from '../auth/access-tokens.js';
import { createIdTokenVerifier } from '../auth/id-tokens.js';
import { createKeyRing } from '../auth/keys.js';
import { createAuthService } from '../auth/service.js';
import type { Config } from '../config/load.js';
import { indexDdl } from '../data/fields.js';
import { createDocumentService } from '../data/service.js';
import { createPgliteDb } from '../db/adapters/pglite.js';
import { createPostgresDb } from '../db/adapters/postgres.js';
import { migrate } from '../db/migrate.js';
import type { Db } from '../db/port.js';
import { systemClock, type Clock } from '../lib/clock.js';

// The composition root: the one place that reads configuration and builds adapters and services.

export async function openDatabase(config: Config, logger?: Logger): Promise<Db> {
  if (config.databaseUrl) {
    return createPostgresDb({
      url: config.databaseUrl,
      poolSize: config.dbPoolSize,
      acquireTimeoutMs: config.dbAcquireTimeoutMs,
      statementTimeoutMs: config.dbStatementTimeoutMs,
      onError: (err) => logger?.warn({ err: err.message }, 'idle database connection lost'),
    });
  }
  return createPgliteDb({ dataDir: resolve(config.dataDir) });
}

/** Schema migrations plus the indexes the configuration declares. */
export async function migrateDatabase(db: Db, config: Config) {
  return migrate(db, undefined, [...config.collections.values()].flatMap(indexDdl));
}

export async function composeServices(config: Config, db: Db, clock: Clock = systemClock) {
  const keys = await createKeyRing({ db, clock, accessTokenTtlSeconds: config.accessTokenTtlSeconds });
  const tokens = createAccessTokens({ keys, clock, issuer: config.jwtIssuer, ttlSeconds: config.accessTokenTtlSeconds });
  const auth = createAuthService({
    db,
    clock,
    tokens,
    config: { sessionTtlDays: config.sessionTtlDays, adminEmails: config.adminEmails },
    apple: createIdTokenVerifier('apple', { jwksUrl: config.appleJwksUrl, issuers: [config.appleIssuer], audiences: config.appleAudiences }),
    google: createIdTokenVerifier('google', { jwksUrl: config.googleJwksUrl, issuers: config.googleIssuers, audiences: config.googleAudiences }),
  });
  const docs = createDocumentService({ db, clock, collections: config.collections });
  return { keys, tokens, auth, docs };
}

export type Services = Awaited<ReturnType<typeof composeServices>>;
