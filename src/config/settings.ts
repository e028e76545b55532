// Every setting Levee reads: its environment variable, its key in the config file, default, parser
// and documentation. This list is the single source: config/load.ts reads it, docs/configuration.md
// is generated from it (npm run docs:config), and a test checks the two are in step.

import { parseBuckets, type BucketConfig } from '../files/config.js';

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

const onOff: Parser<boolean> = (raw) => {
  if (typeof raw === 'boolean') return raw;
  const s = str(raw).toLowerCase();
  if (['on', 'true', '1', 'yes'].includes(s)) return true;
  if (['off', 'false', '0', 'no'].includes(s)) return false;
  return badValue(`must be on or off, got "${s}"`);
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
  queueRedisUrl: {
    env: 'QUEUE_REDIS_URL',
    default: undefined as string | undefined,
    doc: 'A Redis for the job queue alone (recommended at scale: jobs then never compete with rate limits and realtime for one Redis). Defaults to `REDIS_URL`.',
    parse: url('redis:', 'rediss:'),
  },
  queueEngine: {
    env: 'LEVEE_QUEUE_ENGINE',
    default: 'auto' as const,
    doc: 'Where jobs live: `auto` (Redis when `QUEUE_REDIS_URL` or `REDIS_URL` is set, else the database), `redis`, or `database` (PostgreSQL, or the embedded database).',
    parse: oneOf('auto', 'redis', 'database'),
  },
  queueDbPoolSize: { env: 'LEVEE_QUEUE_DB_POOL_SIZE', default: 6, doc: 'PostgreSQL job queue: connections per process, apart from the request pool (each consuming queue keeps one for LISTEN).', parse: int(2, 1000) },
  redisCommandTimeoutMs: { env: 'LEVEE_REDIS_COMMAND_TIMEOUT_MS', default: 100, doc: 'Longest wait for one Redis reply. Past it (or while Redis is unreachable) rate limits and sign-in throttling decide per process: a request never waits on Redis longer than this.', parse: int(5, 10_000) },
  redisKeyPrefix: { env: 'LEVEE_REDIS_KEY_PREFIX', default: 'levee:', doc: 'Prefix of every Redis key Levee writes, so deployments can share one Redis.', parse: str },
  trustProxy: {
    env: 'LEVEE_TRUST_PROXY',
    default: false as boolean | number | string[],
    doc: 'Behind a load balancer or reverse proxy, take the client IP (used by per-IP rate limits, sign-in throttling and session records) from `X-Forwarded-For`: `on` trusts every hop, a number trusts that many hops, a comma-separated list trusts those addresses/CIDRs. `off` uses the TCP peer address — behind a proxy that is the proxy, and every client shares one per-IP limit.',
    parse: (raw: unknown): boolean | number | string[] => {
      if (typeof raw === 'boolean') return raw;
      if (Array.isArray(raw)) return list(raw);
      const s = str(raw).toLowerCase();
      if (['off', 'false', 'no', '0', ''].includes(s)) return false;
      if (['on', 'true', 'yes'].includes(s)) return true;
      if (/^\d+$/.test(s)) return int(1, 100)(s);
      return list(raw);
    },
  },
  rateLimitIpPerMinute: { env: 'LEVEE_RATE_LIMIT_IP_PER_MINUTE', default: 1200, doc: 'Requests per minute per client IP (an IPv6 /64 counts as one) on `/v1`, checked before authentication. A token bucket: this is the refill rate.', parse: int(1, 10_000_000) },
  rateLimitIpBurst: { env: 'LEVEE_RATE_LIMIT_IP_BURST', default: 600, doc: 'Requests a client IP may send at once after a quiet period (the bucket size).', parse: int(1, 10_000_000) },
  rateLimitUserPerMinute: { env: 'LEVEE_RATE_LIMIT_USER_PER_MINUTE', default: 600, doc: 'Requests per minute per signed-in user on `/v1`, checked after authentication; callers without a token count by IP.', parse: int(1, 10_000_000) },
  rateLimitUserBurst: { env: 'LEVEE_RATE_LIMIT_USER_BURST', default: 300, doc: 'Requests a user may send at once after a quiet period (the bucket size).', parse: int(1, 10_000_000) },
  rateLimitSignupPerMinute: { env: 'LEVEE_RATE_LIMIT_SIGNUP_PER_MINUTE', default: 20, doc: 'Sign-ups per minute per client IP (each hashes a password); the burst is the same number.', parse: int(1, 1_000_000) },
  rateLimitAnonymousPerMinute: { env: 'LEVEE_RATE_LIMIT_ANONYMOUS_PER_MINUTE', default: 60, doc: 'Anonymous accounts created per minute per client IP; the burst is the same number. Raise it when many first launches share an address (carrier NAT, events).', parse: int(1, 1_000_000) },
  rateLimitPasswordChangePerMinute: { env: 'LEVEE_RATE_LIMIT_PASSWORD_CHANGE_PER_MINUTE', default: 5, doc: 'Password changes per minute per user (each checks and hashes a password); the burst is the same number.', parse: int(1, 1_000_000) },
  signInAccountFailures: { env: 'LEVEE_SIGNIN_ACCOUNT_FAILURES', default: 10, doc: 'Failed password sign-ins for one account (email) within the window that block it: further attempts get 429 `too_many_sign_in_attempts`, before any password check, for one window from the failure that reached the limit. A successful sign-in clears the count.', parse: int(1, 1_000_000) },
  signInAccountWindowMinutes: { env: 'LEVEE_SIGNIN_ACCOUNT_WINDOW_MINUTES', default: 15, doc: 'Window over which an account\'s failed sign-ins are counted, and how long a blocked account stays blocked.', parse: int(1, 10_080) },
  signInIpFailures: { env: 'LEVEE_SIGNIN_IP_FAILURES', default: 100, doc: 'Failed password sign-ins from one client IP (any accounts) within the window that block sign-in from it.', parse: int(1, 1_000_000) },
  signInIpWindowMinutes: { env: 'LEVEE_SIGNIN_IP_WINDOW_MINUTES', default: 60, doc: 'Window over which an IP\'s failed sign-ins are counted, and how long a blocked IP stays blocked.', parse: int(1, 10_080) },
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
  serverKey: {
    env: 'LEVEE_SERVER_KEY',
    default: undefined as string | undefined,
    doc: 'Secret for backend-to-backend calls (sending pushes) in the `X-Server-Key` header. At least 32 characters; unset, only admins may send pushes.',
    parse: (raw: unknown) => {
      const v = String(raw);
      if (v.length < 32) throw new Error('must be at least 32 characters');
      return v;
    },
  },
  pushTopics: {
    env: 'LEVEE_PUSH_TOPICS',
    default: [] as string[],
    doc: 'Comma-separated push topics devices may subscribe to and pushes may target (e.g. `news,offers`). Names: letters, digits, `_`, `-`, `.`, up to 64.',
    parse: (raw: unknown) =>
      list(raw).map((t) => {
        if (!/^[A-Za-z0-9_.-]{1,64}$/.test(t)) throw new Error(`"${t}" is not a topic name (letters, digits, _ - ., up to 64)`);
        return t;
      }),
  },
  webPushAllowedHosts: {
    env: 'LEVEE_WEBPUSH_ALLOWED_HOSTS',
    default: ['fcm.googleapis.com', '*.push.services.mozilla.com', '*.notify.windows.com', 'web.push.apple.com'] as string[],
    doc: 'Hosts a Web Push subscription endpoint may point at (`*.` matches subdomains). The push role POSTs to these endpoints, so anything else is refused at registration (no requests to internal hosts).',
    parse: list,
  },
  apnsKeyFile: { env: 'LEVEE_APNS_KEY_FILE', default: undefined as string | undefined, doc: 'APNs: the .p8 token-signing key from your Apple developer account (Certificates, IDs & Profiles → Keys). With the key id, team id and bundle id, enables APNs.', parse: str },
  apnsKeyId: { env: 'LEVEE_APNS_KEY_ID', default: undefined as string | undefined, doc: 'APNs: the key id of that .p8 key (10 characters).', parse: str },
  apnsTeamId: { env: 'LEVEE_APNS_TEAM_ID', default: undefined as string | undefined, doc: 'APNs: your Apple developer team id.', parse: str },
  apnsBundleId: { env: 'LEVEE_APNS_BUNDLE_ID', default: undefined as string | undefined, doc: "APNs: the app's bundle id (sent as apns-topic).", parse: str },
  apnsUrl: { env: 'LEVEE_APNS_URL', default: 'https://api.push.apple.com', doc: 'APNs endpoint; `https://api.sandbox.push.apple.com` for development builds.', parse: url('https:') },
  fcmServiceAccountFile: { env: 'LEVEE_FCM_SERVICE_ACCOUNT_FILE', default: undefined as string | undefined, doc: "FCM: the Firebase service-account key file (JSON). Its `token_uri` is where access tokens come from. Enables FCM.", parse: str },
  fcmUrl: { env: 'LEVEE_FCM_URL', default: 'https://fcm.googleapis.com', doc: 'FCM HTTP v1 endpoint.', parse: url('https:') },
  vapidPublicKey: { env: 'LEVEE_VAPID_PUBLIC_KEY', default: undefined as string | undefined, doc: 'Web Push: the VAPID public key (base64url; `npx web-push generate-vapid-keys`). With the private key and subject, enables Web Push.', parse: str },
  vapidPrivateKey: { env: 'LEVEE_VAPID_PRIVATE_KEY', default: undefined as string | undefined, doc: 'Web Push: the VAPID private key (base64url).', parse: str },
  vapidSubject: { env: 'LEVEE_VAPID_SUBJECT', default: undefined as string | undefined, doc: 'Web Push: a `mailto:` or `https:` contact for push services.', parse: str },
  pushCaFile: { env: 'LEVEE_PUSH_CA_FILE', default: undefined as string | undefined, doc: 'An extra CA certificate (PEM) to trust for push providers — e.g. a local mock provider or a corporate proxy.', parse: str },
  pushDbPoolSize: { env: 'LEVEE_PUSH_DB_POOL_SIZE', default: 4, doc: 'PostgreSQL: connections of the push role, apart from the API\'s pool, so a campaign never takes a connection a request needs.', parse: int(1, 1000) },
  pushProviderConcurrency: { env: 'LEVEE_PUSH_PROVIDER_CONCURRENCY', default: 500, doc: 'Push role: notifications in flight per provider (its bulkhead); more wait in the send queue.', parse: int(1, 100_000) },
  pushProviderRatePerSecond: { env: 'LEVEE_PUSH_PROVIDER_RATE_PER_SECOND', default: 20_000, doc: 'Push role: most notifications per second per provider and process.', parse: int(1, 1_000_000) },
  syncTombstoneDays: { env: 'LEVEE_SYNC_TOMBSTONE_DAYS', default: 30, doc: 'Sync: how long deleted documents are remembered in the change log. A client whose cursor is older gets `410 cursor_expired` and resyncs from scratch.', parse: int(1, 3650) },
  syncPullLimit: { env: 'LEVEE_SYNC_PULL_LIMIT', default: 1000, doc: 'Sync: most changes one pull returns (a client asks for fewer with `limit`).', parse: int(10, 100_000) },
  syncPushMaxMutations: { env: 'LEVEE_SYNC_PUSH_MAX_MUTATIONS', default: 500, doc: 'Sync: most offline mutations in one push; larger batches get 413.', parse: int(1, 10_000) },
  realtimePollMs: { env: 'LEVEE_REALTIME_POLL_MS', default: 1000, doc: 'Realtime: how often each API process reads the change log when no write has signalled it. Changes normally arrive within milliseconds (each write signals every process, through Redis when `REDIS_URL` is set); this bounds the delay when a signal is lost.', parse: int(10, 60_000) },
  realtimePingIntervalMs: { env: 'LEVEE_REALTIME_PING_INTERVAL_MS', default: 30_000, doc: 'Realtime: the server pings every connection this often (SSE: a comment line); a WebSocket that has not answered the previous ping is closed.', parse: int(100, 600_000) },
  realtimeMaxBufferedBytes: { env: 'LEVEE_REALTIME_MAX_BUFFERED_BYTES', default: 1_048_576, doc: 'Realtime: bytes that may wait to be sent to one connection. A client that reads slower than changes arrive is disconnected (WebSocket close 4008, with its resume position) instead of growing the server\'s memory.', parse: int(1024, 256 * 1_048_576) },
  realtimeMaxFrameBytes: { env: 'LEVEE_REALTIME_MAX_FRAME_BYTES', default: 16_384, doc: 'Realtime: largest WebSocket message a client may send; larger ones close the connection (1009).', parse: int(256, 1_048_576) },
  realtimeMaxSubscriptions: { env: 'LEVEE_REALTIME_MAX_SUBSCRIPTIONS', default: 32, doc: 'Realtime: collections one connection may subscribe to (the user channel counts as one); past it, error `too_many_subscriptions` and close 1008.', parse: int(1, 10_000) },
  realtimeMessagesPerSecond: { env: 'LEVEE_REALTIME_MESSAGES_PER_SECOND', default: 10, doc: 'Realtime: messages per second a client may send on one connection (bursts of twice this). Over it each message gets error `rate_limited`; a client that keeps going is closed (1008).', parse: int(1, 100_000) },
  realtimeMaxConnections: { env: 'LEVEE_REALTIME_MAX_CONNECTIONS', default: 20_000, doc: 'Realtime: most open WebSocket and SSE connections per process; past it new ones get 503 with `Retry-After`.', parse: int(1, 10_000_000) },
  realtimeAcceptPerSecond: { env: 'LEVEE_REALTIME_ACCEPT_PER_SECOND', default: 500, doc: 'Realtime: new connections admitted per second per process (a token bucket), so a reconnect storm after a restart is spread out; the rest get 503 with a jittered `Retry-After` (1–5 s) before the upgrade.', parse: int(1, 1_000_000) },
  realtimeAcceptBurst: { env: 'LEVEE_REALTIME_ACCEPT_BURST', default: 1000, doc: 'Realtime: new connections admitted at once after a quiet period (the bucket size).', parse: int(1, 1_000_000) },
  realtimeCatchUpConcurrency: { env: 'LEVEE_REALTIME_CATCH_UP_CONCURRENCY', default: 4, doc: 'Realtime: catch-up reads (what a resuming client missed) running at once per process; identical reads are shared. The rest wait in a queue.', parse: int(1, 1000) },
  realtimeCatchUpQueue: { env: 'LEVEE_REALTIME_CATCH_UP_QUEUE', default: 10_000, doc: 'Realtime: catch-up reads that may wait; past it a resuming client gets error `overloaded` and close 1013, and reconnects later.', parse: int(0, 10_000_000) },
  adminEmails: { env: 'LEVEE_ADMIN_EMAILS', default: [] as string[], doc: 'Comma-separated emails that get the `admin` role when they sign in with Apple or Google and the provider has verified the email. Password accounts are made admin with `levee admin grant <email>`.', parse: (raw: unknown) => list(raw).map((e) => e.toLowerCase()) },
  appleAudiences: { env: 'LEVEE_APPLE_AUDIENCES', default: [] as string[], doc: 'Sign in with Apple: accepted `aud` values (your bundle id / services id). Empty disables it.', parse: list },
  appleJwksUrl: { env: 'LEVEE_APPLE_JWKS_URL', default: 'https://appleid.apple.com/auth/keys', doc: "Sign in with Apple: Apple's JWKS.", parse: (raw: unknown) => url('https:', 'http:')(raw) ?? badValue('must not be empty') },
  appleIssuer: { env: 'LEVEE_APPLE_ISSUER', default: 'https://appleid.apple.com', doc: 'Sign in with Apple: expected `iss`.', parse: str },
  googleAudiences: { env: 'LEVEE_GOOGLE_AUDIENCES', default: [] as string[], doc: 'Sign in with Google: accepted `aud` values (your OAuth client ids). Empty disables it.', parse: list },
  googleJwksUrl: { env: 'LEVEE_GOOGLE_JWKS_URL', default: 'https://www.googleapis.com/oauth2/v3/certs', doc: "Sign in with Google: Google's JWKS.", parse: (raw: unknown) => url('https:', 'http:')(raw) ?? badValue('must not be empty') },
  protection: {
    env: 'LEVEE_PROTECTION',
    default: true,
    doc: '`off` removes admission control, rate limits and the event-loop guard (for benchmarks that compare against an unprotected server). Deadlines, breakers and bounded pools always stay.',
    parse: onOff,
  },
  requestDeadlineMs: { env: 'LEVEE_REQUEST_DEADLINE_MS', default: 5000, doc: 'Default budget of a request (routes may declare less): waiting for admission, the database and outbound calls all come out of it. Past it the request gets 504 `timeout`.', parse: int(50, 600_000) },
  requestDeadlineMaxMs: { env: 'LEVEE_REQUEST_DEADLINE_MAX_MS', default: 30_000, doc: 'Upper bound on any route\'s declared deadline.', parse: int(50, 3_600_000) },
  maxEventLoopDelayMs: { env: 'LEVEE_MAX_EVENT_LOOP_DELAY_MS', default: 1000, doc: 'Last line of defence (@fastify/under-pressure): while the mean event-loop delay is above this, requests get 503. 0 disables it.', parse: int(0, 60_000) },
  admissionInitialLimit: { env: 'LEVEE_ADMISSION_INITIAL_LIMIT', default: 32, doc: 'Admission control: concurrent requests allowed at start, before the limit adapts to measured latency.', parse: int(1, 100_000) },
  admissionMinLimit: { env: 'LEVEE_ADMISSION_MIN_LIMIT', default: 8, doc: 'Admission control: the adaptive limit never goes below this.', parse: int(1, 100_000) },
  admissionMaxLimit: { env: 'LEVEE_ADMISSION_MAX_LIMIT', default: 256, doc: 'Admission control: the adaptive limit never goes above this.', parse: int(1, 100_000) },
  admissionQueueSize: { env: 'LEVEE_ADMISSION_QUEUE_SIZE', default: 128, doc: 'Admission control: requests that may wait for a slot; past it, the lowest-priority waiter is shed (503).', parse: int(0, 100_000) },
  admissionQueueWaitMs: { env: 'LEVEE_ADMISSION_QUEUE_WAIT_MS', default: 100, doc: 'Admission control: longest wait in the queue for `default` requests; `critical` may wait 3× this, `sheddable` a quarter.', parse: int(1, 60_000) },
  passwordHashConcurrency: { env: 'LEVEE_PASSWORD_HASH_CONCURRENCY', default: 0, doc: 'Password hashes (argon2id, ~20 ms of CPU each) computed at once; 0 means half the CPU cores (at least 1), so a sign-in storm cannot take the CPU from other requests.', parse: int(0, 256) },
  passwordHashNice: { env: 'LEVEE_PASSWORD_HASH_NICE', default: 10, doc: 'CPU priority of the password-hashing threads (a nice value, 0–19; Linux only): above 0, a sign-in storm hashes with the CPU that other requests leave over instead of taking it from them.', parse: int(0, 19) },
  passwordHashQueue: { env: 'LEVEE_PASSWORD_HASH_QUEUE', default: 4, doc: 'Sign-ins and sign-ups that may wait for a hashing slot; past it they are refused (503 with Retry-After) before their body is read.', parse: int(0, 100_000) },
  storage: { env: 'LEVEE_STORAGE', default: 'local' as const, doc: 'Where uploaded files live: `local` (a directory, see `LEVEE_FILES_DIR`) or `s3` (an S3-compatible bucket: AWS S3, MinIO, Cloudflare R2; see `LEVEE_S3_*`).', parse: oneOf('local', 's3') },
  filesDir: { env: 'LEVEE_FILES_DIR', default: undefined as string | undefined, doc: 'Local storage: the directory for files. Unset: `<LEVEE_DATA_DIR>/files`. Every API and worker process must see the same directory.', parse: (raw: unknown) => str(raw) || undefined },
  s3Bucket: { env: 'LEVEE_S3_BUCKET', default: undefined as string | undefined, doc: 'S3 storage: the bucket (required with `LEVEE_STORAGE=s3`).', parse: (raw: unknown) => str(raw) || undefined },
  s3Endpoint: { env: 'LEVEE_S3_ENDPOINT', default: undefined as string | undefined, doc: 'S3 storage: the endpoint of an S3-compatible service, e.g. `http://127.0.0.1:9000` (MinIO) or `https://<account>.r2.cloudflarestorage.com` (R2). Unset: AWS S3.', parse: url('http:', 'https:') },
  s3Region: { env: 'LEVEE_S3_REGION', default: 'us-east-1', doc: 'S3 storage: the region (`auto` for R2).', parse: (raw: unknown) => str(raw) || badValue('must not be empty') },
  s3AccessKeyId: { env: 'LEVEE_S3_ACCESS_KEY_ID', default: undefined as string | undefined, doc: 'S3 storage: access key id. Leave it and the secret unset to use the AWS SDK\'s default chain (environment, instance or task role).', parse: (raw: unknown) => str(raw) || undefined },
  s3SecretAccessKey: { env: 'LEVEE_S3_SECRET_ACCESS_KEY', default: undefined as string | undefined, doc: 'S3 storage: secret access key (with `LEVEE_S3_ACCESS_KEY_ID`).', parse: (raw: unknown) => str(raw) || undefined },
  s3ForcePathStyle: { env: 'LEVEE_S3_FORCE_PATH_STYLE', default: false, doc: 'S3 storage: path-style URLs (`http://host/bucket/key`); `on` for MinIO.', parse: onOff },
  s3TimeoutMs: { env: 'LEVEE_S3_TIMEOUT_MS', default: 5000, doc: 'S3 storage: bound on one metadata call (head, delete) or the start of a read.', parse: int(100, 600_000) },
  s3TransferTimeoutMs: { env: 'LEVEE_S3_TRANSFER_TIMEOUT_MS', default: 120_000, doc: 'S3 storage: bound on one whole put or copy.', parse: int(1000, 3_600_000) },
  s3Concurrency: { env: 'LEVEE_S3_CONCURRENCY', default: 64, doc: 'S3 storage: calls in flight per process (the bulkhead around S3); more wait in its queue.', parse: int(1, 10_000) },
  s3Queue: { env: 'LEVEE_S3_QUEUE', default: 256, doc: 'S3 storage: calls that may wait for a slot; past it they get 503 `storage_unavailable`.', parse: int(0, 100_000) },
  cdnBaseUrl: { env: 'LEVEE_CDN_BASE_URL', default: undefined as string | undefined, doc: 'Absolute base of the public file URLs clients receive, e.g. `https://cdn.example.com`: a CDN whose origin is Levee. Unset: URLs are paths on the API itself.', parse: url('https:', 'http:') },
  mediaProxy: { env: 'LEVEE_MEDIA_PROXY', default: false, doc: 'S3 storage: stream private downloads through Levee instead of redirecting (302) to a presigned S3 URL (when S3 is not reachable from clients, or to keep one origin). The local engine always streams.', parse: onOff },
  filesUrlSecret: {
    env: 'LEVEE_FILES_URL_SECRET',
    default: [] as string[],
    doc: 'Secrets that sign private file URLs, comma-separated, at least 32 characters each: the first signs, all verify (rotation). Unset: one is generated and kept in the database, shared by every instance.',
    parse: (raw: unknown) => list(raw).map((s) => (s.length >= 32 ? s : badValue('each secret must be at least 32 characters'))),
  },
  signedUrlTtlSeconds: { env: 'LEVEE_SIGNED_URL_TTL_SECONDS', default: 300, doc: 'Lifetime of a signed private file URL (and of the presigned S3 URL it redirects to).', parse: int(10, 7 * 86_400) },
  uploadQuotaBytes: { env: 'LEVEE_UPLOAD_QUOTA_BYTES', default: 1_073_741_824, doc: 'Bytes each user may store (every file not failed counts, uploads in progress included); `0`: no quota. Over it: 413 `quota_exceeded`.', parse: int(0, Number.MAX_SAFE_INTEGER) },
  uploadOneShotMaxBytes: { env: 'LEVEE_UPLOAD_ONESHOT_MAX_BYTES', default: 5_242_880, doc: 'Largest file taken by the one-shot upload (`POST /v1/files`); larger files must use the resumable (tus) upload.', parse: int(1, 1024 * 1_048_576) },
  uploadExpiryHours: { env: 'LEVEE_UPLOAD_EXPIRY_HOURS', default: 24, doc: 'Uploads not finished this long after they were created are discarded by housekeeping (their bytes deleted, their quota freed).', parse: int(1, 8760) },
  fileBuckets: {
    env: 'LEVEE_FILE_BUCKETS',
    default: undefined as BucketConfig[] | undefined,
    doc: 'File buckets as a JSON array (in the config file: `fileBuckets`, an array): `{"name", "public", "maxFileBytes", "allowedTypes": [...], "variants": [{"name", "width", "height"?, "fit"?: "inside"|"cover", "quality"?}]}`. Unset: `avatars` (public, 5 MB, images, 128 and 512 px WebP squares) and `attachments` (private, 100 MB, images, PDF, video; 256 and 1600 px wide WebP). See docs/media.md.',
    parse: (raw: unknown) => parseBuckets(raw),
  },
  imageMaxPixels: { env: 'LEVEE_IMAGE_MAX_PIXELS', default: 50_000_000, doc: 'Largest image (width × height) the worker processes, read from its header before decoding (against decompression bombs); larger images fail with `image_too_large`.', parse: int(1, 1_000_000_000) },
  imageConcurrency: { env: 'LEVEE_IMAGE_CONCURRENCY', default: 2, doc: 'Worker role: images processed at once per process (each uses libvips threads and memory).', parse: int(1, 256) },
  imageTimeoutMs: { env: 'LEVEE_IMAGE_TIMEOUT_MS', default: 30_000, doc: 'Worker role: budget for one image (all its variants); past it the job fails and is retried.', parse: int(100, 600_000) },
  googleIssuers: { env: 'LEVEE_GOOGLE_ISSUERS', default: ['https://accounts.google.com', 'accounts.google.com'], doc: 'Sign in with Google: accepted `iss` values.', parse: list },
} satisfies Record<string, Setting<unknown>>;

export type Settings = { -readonly [K in keyof typeof SETTINGS]: ReturnType<(typeof SETTINGS)[K]['parse']> };
