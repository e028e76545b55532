import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import { ROLES, SETTINGS, type Role } from '../config/settings.js';
import { rotateSigningKey } from '../auth/keys.js';
import { users } from '../auth/store.js';
import { isLeveeError } from '../lib/errors.js';
import { LeveeStartupError } from '../lib/startup-error.js';
import { createLogger } from '../observability/logger.js';
import { migrateDatabase, openDatabase } from '../roles/compose.js';
import { describeStorage, startLevee } from '../roles/start.js';

const HELP = `Levee — a mobile-app backend

Usage: levee <command> [options]

Commands:
  start [--roles api,worker,push]   Start Levee (default: all roles in one process)
  migrate                           Apply database migrations and declared indexes, then exit
  keys rotate                       Make a new access-token signing key (old tokens stay valid)
  admin grant|revoke <email>        Give or take the admin role of an account
  help, --help                      Show this help

Configuration comes from environment variables and ${'`'}levee.config.json${'`'} (LEVEE_CONFIG).
Main settings: ${Object.values(SETTINGS).slice(0, 6).map((s) => s.env).join(', ')}.
Every setting: docs/configuration.md`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, strict: true, options: { roles: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  const command = positionals[0] ?? 'help';
  if (values.help || command === 'help') {
    console.log(HELP);
    return 0;
  }
  const config = loadConfig(process.env, {}, values.roles !== undefined ? { roles: values.roles } : {});
  const logger = createLogger(config.logLevel);

  if (command === 'migrate') {
    const db = await openDatabase(config, logger);
    try {
      const { applied, current } = await migrateDatabase(db, config);
      console.log(applied.length ? `Applied ${applied.join(', ')}; schema at version ${current}.` : `Schema is up to date (version ${current}).`);
    } finally {
      await db.close();
    }
    return 0;
  }
  if (command === 'keys' && positionals[1] === 'rotate') {
    const db = await openDatabase(config, logger);
    try {
      await migrateDatabase(db, config);
      console.log(`New signing key ${await rotateSigningKey(db)}; previous keys verify until their tokens expire.`);
    } finally {
      await db.close();
    }
    return 0;
  }
  if (command === 'admin' && (positionals[1] === 'grant' || positionals[1] === 'revoke') && positionals[2]) {
    const db = await openDatabase(config, logger);
    try {
      await migrateDatabase(db, config);
      const role = positionals[1] === 'grant' ? 'admin' : 'user';
      if (!(await users.setRole(db, positionals[2], role))) {
        console.error(`levee: no account has the email ${positionals[2]}`);
        return 1;
      }
      console.log(`${positionals[2]} is now ${role === 'admin' ? 'an admin' : 'a user'} (from its next sign-in or token refresh).`);
    } finally {
      await db.close();
    }
    return 0;
  }
  if (command === 'start') {
    const roles: Role[] = config.roles;
    const running = await startLevee(config, roles, logger);
    const shutdown = (signal: string) => {
      running.stop(signal).then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    // `on`, not `once`: a second signal must not restore the default handler and kill the drain.
    process.on('SIGTERM', () => shutdown('SIGTERM'));
    process.on('SIGINT', () => shutdown('SIGINT'));
    const url = running.url.replace('[::1]', 'localhost');
    // Without the api role only the ops endpoints are served: no API or docs links to mislead.
    const api = roles.includes('api') ? `\n  API:      ${url}/v1\n  Docs:     ${url}/docs` : '';
    console.log(`Levee is running (roles: ${roles.join(', ')})${api}
  Health:   ${url}/healthz, ${url}/readyz
  Data:     ${describeStorage(config)}${config.configFile ? `\n  Config:   ${config.configFile}` : ''}`);
    return -1; // keep running
  }
  console.error(`levee: unknown command "${positionals.join(' ')}". Commands: start, migrate, keys rotate, admin grant|revoke <email>, help. Roles: ${ROLES.join(', ')}.`);
  return 2;
}

/** An error reported by the PostgreSQL server itself (pg's DatabaseError): a SQLSTATE and a severity. */
const isPostgresError = (err: unknown): err is Error & { code: string } => {
  const code = (err as { code?: unknown } | null)?.code;
  return err instanceof Error && typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && 'severity' in err;
};

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    if (err instanceof LeveeStartupError) {
      console.error(`levee: ${err.message.split('\n').join('\nlevee: ')}`);
    } else if ((err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || (err as { code?: string }).code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      console.error(`levee: ${(err as Error).message} (see levee --help)`);
      process.exit(2);
    } else if (isLeveeError(err) && err.code === 'database_unavailable') {
      console.error(`levee: DATABASE_URL: PostgreSQL is unreachable: ${(err.cause as Error | undefined)?.message ?? err.message}`);
    } else if (isPostgresError(err)) {
      // The server answered but refused (no such database, authentication failed, …).
      console.error(`levee: DATABASE_URL: PostgreSQL refused: ${err.message} (SQLSTATE ${err.code})`);
    } else {
      console.error('levee: failed to start:', err);
    }
    process.exit(1);
  },
);
