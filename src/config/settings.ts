// Every setting Levee reads: its environment variable, its key in the config file, default, parser
// and documentation. This list is the single source: config/load.ts reads it, docs/configuration.md
// is generated from it (npm run docs:config), and a test checks the two are in step.

export type Parser<T> = (raw: unknown) => T;

export interface Setting<T> {
  env: string;
  default: T;
  doc: string;
  parse: Parser<T>;
}

class BadValue extends Error {}
export const badValue = (msg: string): never => {
  throw new BadValue(msg);
};
export const isBadValue = (e: unknown): e is Error => e instanceof BadValue;

const str = (raw: unknown): string => (typeof raw === 'string' ? raw.trim() : typeof raw === 'number' ? String(raw) : badValue('must be a string'));

const int = (min: number, max: number): Parser<number> => (raw) => {
  const s = typeof raw === 'number' ? String(raw) : str(raw);
  if (!/^-?\d+$/.test(s)) badValue(`must be a whole number, got "${s}"`);
  const n = Number(s);
  if (n < min || n > max) badValue(`must be between ${min} and ${max}, got ${n}`);
  return n;
};

const oneOf = <T extends string>(...values: T[]): Parser<T> => (raw) => {
  const s = str(raw);
  return (values as string[]).includes(s) ? (s as T) : badValue(`must be one of ${values.join(', ')}, got "${s}"`);
};

const url = (...protocols: string[]): Parser<string | undefined> => (raw) => {
  const s = str(raw);
  if (s === '') return undefined;
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return badValue('is not a valid URL');
  }
  if (!protocols.includes(u.protocol)) badValue(`must start with ${protocols.map((p) => `${p}//`).join(' or ')}`);
  return s;
};

const list = (raw: unknown): string[] =>
  Array.isArray(raw) ? raw.map(str).filter(Boolean) : str(raw).split(',').map((s) => s.trim()).filter(Boolean);

export const ROLES = ['api', 'worker', 'push'] as const;
export type Role = (typeof ROLES)[number];

const roles: Parser<Role[]> = (raw) => {
  const items = list(raw);
  if (items.length === 0) badValue(`must name at least one of ${ROLES.join(', ')}`);
  for (const r of items) if (!(ROLES as readonly string[]).includes(r)) badValue(`unknown role "${r}" (roles: ${ROLES.join(', ')})`);
  return [...new Set(items)] as Role[];
};

export const SETTINGS = {
  port: { env: 'PORT', default: 8080, doc: 'TCP port the HTTP server listens on.', parse: int(0, 65535) },
  host: { env: 'HOST', default: '127.0.0.1', doc: 'Interface to listen on; `0.0.0.0` to accept connections from other hosts.', parse: str },
  dataDir: { env: 'LEVEE_DATA_DIR', default: './.levee', doc: 'Where the embedded database (and later local files) live. Locked by one process at a time.', parse: str },
  databaseUrl: {
    env: 'DATABASE_URL',
    default: undefined as string | undefined,
    doc: 'A `postgres://` URL switches from the embedded database to PostgreSQL 15+. Nothing else changes.',
    parse: url('postgres:', 'postgresql:'),
  },
  redisUrl: {
    env: 'REDIS_URL',
    default: undefined as string | undefined,
    doc: 'A `redis://` URL for shared state across instances (rate limits, realtime fan-out, job queue).',
    parse: url('redis:', 'rediss:'),
  },
  roles: { env: 'LEVEE_ROLES', default: [...ROLES] as Role[], doc: 'Process roles to run, comma-separated: `api`, `worker`, `push`. `levee start --roles` overrides it.', parse: roles },
  dbPoolSize: { env: 'LEVEE_DB_POOL_SIZE', default: 10, doc: 'PostgreSQL: most connections per process.', parse: int(1, 1000) },
  dbAcquireTimeoutMs: { env: 'LEVEE_DB_ACQUIRE_TIMEOUT_MS', default: 2000, doc: 'PostgreSQL: longest wait for a free pooled connection before answering 503.', parse: int(1, 600_000) },
  dbStatementTimeoutMs: { env: 'LEVEE_DB_STATEMENT_TIMEOUT_MS', default: 5000, doc: 'PostgreSQL: `statement_timeout` for every statement.', parse: int(1, 3_600_000) },
  logLevel: { env: 'LOG_LEVEL', default: 'info' as const, doc: 'pino log level.', parse: oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent') },
  bodyLimitBytes: { env: 'LEVEE_BODY_LIMIT_BYTES', default: 1_048_576, doc: 'Largest accepted request body; larger bodies get 413.', parse: int(1024, 100 * 1_048_576) },
  shutdownGraceMs: { env: 'LEVEE_SHUTDOWN_GRACE_MS', default: 10_000, doc: 'On SIGTERM, how long in-flight requests may take to finish before their connections are closed.', parse: int(0, 600_000) },
  accessTokenTtlSeconds: { env: 'LEVEE_ACCESS_TOKEN_TTL_SECONDS', default: 900, doc: 'Lifetime of access tokens (JWT). Revoking a session takes effect for its access tokens within this time.', parse: int(30, 86_400) },
  sessionTtlDays: { env: 'LEVEE_SESSION_TTL_DAYS', default: 90, doc: 'A device session (and its refresh tokens) ends after this many days without use.', parse: int(1, 3650) },
  jwtIssuer: { env: 'LEVEE_JWT_ISSUER', default: 'levee', doc: '`iss` of access tokens.', parse: str },
  adminEmails: { env: 'LEVEE_ADMIN_EMAILS', default: [] as string[], doc: 'Comma-separated emails that get the `admin` role when they sign in with Apple or Google and the provider has verified the email. Password accounts are made admin with `levee admin grant <email>`.', parse: (raw: unknown) => list(raw).map((e) => e.toLowerCase()) },
  appleAudiences: { env: 'LEVEE_APPLE_AUDIENCES', default: [] as string[], doc: 'Sign in with Apple: accepted `aud` values (your bundle id / services id). Empty disables it.', parse: list },
  appleJwksUrl: { env: 'LEVEE_APPLE_JWKS_URL', default: 'https://appleid.apple.com/auth/keys', doc: "Sign in with Apple: Apple's JWKS.", parse: (raw: unknown) => url('https:', 'http:')(raw) ?? badValue('must not be empty') },
  appleIssuer: { env: 'LEVEE_APPLE_ISSUER', default: 'https://appleid.apple.com', doc: 'Sign in with Apple: expected `iss`.', parse: str },
  googleAudiences: { env: 'LEVEE_GOOGLE_AUDIENCES', default: [] as string[], doc: 'Sign in with Google: accepted `aud` values (your OAuth client ids). Empty disables it.', parse: list },
  googleJwksUrl: { env: 'LEVEE_GOOGLE_JWKS_URL', default: 'https://www.googleapis.com/oauth2/v3/certs', doc: "Sign in with Google: Google's JWKS.", parse: (raw: unknown) => url('https:', 'http:')(raw) ?? badValue('must not be empty') },
  googleIssuers: { env: 'LEVEE_GOOGLE_ISSUERS', default: ['https://accounts.google.com', 'accounts.google.com'], doc: 'Sign in with Google: accepted `iss` values.', parse: list },
} satisfies Record<string, Setting<unknown>>;

export type Settings = { -readonly [K in keyof typeof SETTINGS]: ReturnType<(typeof SETTINGS)[K]['parse']> };
