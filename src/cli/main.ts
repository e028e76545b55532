import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import { ROLES, SETTINGS, type Role } from '../config/settings.js';
import { rotateSigningKey } from '../auth/keys.js';
import { users } from '../auth/store.js';
import { isLeveeError } from '../lib/errors.js';
import { LeveeStartupError } from '../lib/startup-error.js';
import { createLogger } from '../observability/logger.js';
import { migrateDatabase, openDatabase, openQueues } from '../roles/compose.js';
import { Registry } from 'prom-client';
import { describeStorage, startLevee } from '../roles/start.js';

const HELP = `Levee — a mobile-app backend

Usage: levee <command> [options]

Commands:
  start [--roles api,worker,push]   Start Levee (default: all roles in one process)
  migrate                           Apply database migrations and declared indexes, then exit
  keys rotate                       Make a new access-token signing key (old tokens stay valid)
  admin grant|revoke <email>        Give or take the admin role of an account
  jobs                              Job queues: depth, delayed, running, dead letters, oldest waiting job
  jobs dead-letters <queue> [--limit n]   Jobs that used up their attempts, newest first
  jobs redrive <queue> <job id>|--all     Put dead-lettered jobs back on their queue with fresh attempts
  help, --help                      Show this help

Configuration comes from environment variables and ${'`'}levee.config.json${'`'} (LEVEE_CONFIG).
Main settings: ${Object.values(SETTINGS).slice(0, 6).map((s) => s.env).join(', ')}.
Every setting: docs/configuration.md`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, strict: true, options: { roles: { type: 'string' }, help: { type: 'boolean', short: 'h' }, limit: { type: 'string' }, all: { type: 'boolean' } } });
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
  if (command === 'jobs') return jobsCommand(config, logger, positionals.slice(1), values);
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
  console.error(`levee: unknown command "${positionals.join(' ')}". Commands: start, migrate, keys rotate, admin grant|revoke <email>, jobs, help. Roles: ${ROLES.join(', ')}.`);
  return 2;
}

/** `levee jobs …`: the same queues the running processes use (with the embedded engine, stop the server first: it locks the data directory). */
async function jobsCommand(config: ReturnType<typeof loadConfig>, logger: ReturnType<typeof createLogger>, args: string[], flags: { limit?: string | undefined; all?: boolean | undefined }): Promise<number> {
  const db = await openDatabase(config, logger);
  const queues = await openQueues(config, db, new Registry()).catch(async (e: unknown) => {
    await db.close();
    throw e;
  });
  try {
    const [sub, queue, id] = args;
    if (sub === undefined) {
      console.log(`Job queues (${queues.engine}):`);
      for (const name of queues.specs.keys()) {
        const s = await queues.stats(name);
        console.log(`  ${name}: ${s.waiting} waiting, ${s.delayed} delayed, ${s.active} running, ${s.deadLetters} dead letters; oldest waiting ${(s.oldestWaitingMs / 1000).toFixed(1)} s`);
      }
      return 0;
    }
    if (!queue || !queues.specs.has(queue)) {
      console.error(`levee: name a queue: ${[...queues.specs.keys()].join(', ')}`);
      return 2;
    }
    if (sub === 'dead-letters') {
      const limit = Number(flags.limit ?? 50);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
        console.error('levee: --limit must be a whole number from 1 to 1000');
        return 2;
      }
      const dead = await queues.deadLetters(queue, 0, limit);
      if (dead.length === 0) console.log(`No dead letters on ${queue}.`);
      for (const d of dead) console.log(`${d.id}\t${d.name}\t${d.attempts} attempts\t${d.failedAt?.toISOString() ?? '-'}\t${d.reason}`);
      return 0;
    }
    if (sub === 'redrive' && (id || flags.all)) {
      const ids = flags.all ? (await queues.deadLetters(queue, 0, 10_000)).map((d) => d.id) : [id!];
      let moved = 0;
      for (const one of ids) if (await queues.redrive(queue, one)) moved++;
      if (!flags.all && moved === 0) {
        console.error(`levee: no dead-lettered job ${id} on ${queue}`);
        return 1;
      }
      console.log(`Re-drove ${moved} job${moved === 1 ? '' : 's'} on ${queue}.`);
      return 0;
    }
    console.error('levee: jobs [dead-letters <queue> [--limit n] | redrive <queue> <job id>|--all]');
    return 2;
  } finally {
    await queues.close();
    await db.close();
  }
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
