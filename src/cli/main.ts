import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import { ROLES, SETTINGS, type Role } from '../config/settings.js';
import { rotateSigningKey } from '../auth/keys.js';
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
  const config = loadConfig(process.env, values.roles !== undefined ? { roles: SETTINGS.roles.parse(values.roles) } : {});
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
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
    const url = running.url.replace('[::1]', 'localhost');
    console.log(`Levee is running (roles: ${roles.join(', ')})
  API:      ${url}/v1
  Docs:     ${url}/docs
  Health:   ${url}/healthz, ${url}/readyz
  Data:     ${describeStorage(config)}${config.configFile ? `\n  Config:   ${config.configFile}` : ''}`);
    return -1; // keep running
  }
  console.error(`levee: unknown command "${positionals.join(' ')}". Commands: start, migrate, keys rotate, help. Roles: ${ROLES.join(', ')}.`);
  return 2;
}

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
    } else {
      console.error('levee: failed to start:', err);
    }
    process.exit(1);
  },
);
