import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import type { Logger } from 'pino';
import { users } from '../../src/auth/store.js';
import { parseCollections } from '../../src/config/collections.js';
import type { Config } from '../../src/config/load.js';
import { SETTINGS, type Settings } from '../../src/config/settings.js';
import { buildApp } from '../../src/http/app.js';
import { systemClock, type Clock } from '../../src/lib/clock.js';
import { createLogger } from '../../src/observability/logger.js';
import { createMetrics, type Metrics } from '../../src/observability/metrics.js';
import { composeProtection, composeRealtime, composeServices, migrateDatabase, type Services } from '../../src/roles/compose.js';
import type { Realtime } from '../../src/realtime/index.js';
import { createOps, type Lifecycle } from '../../src/roles/ops.js';
import type { Engine, TestDatabase } from './engines.js';
import type { PgliteDb } from '../../src/db/adapters/pglite.js';
import { openJobQueues } from '../../src/jobs/engines.js';
import type { JobQueues } from '../../src/jobs/port.js';
import { queueSpecs } from '../../src/jobs/queues.js';
import { createPushService } from '../../src/push/service.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { composeFiles, composeFilesWorker, type FilesComposed } from '../../src/roles/compose-media.js';
import { createStorage, guardStorage, isStorageOutage, storageUnavailable, type StorageConfig } from '../../src/files/index.js';

export const DEFAULT_COLLECTIONS = {
  posts: { read: 'public', write: 'owner', indexes: ['createdAt', 'status', 'score'], schema: { type: 'object', properties: { title: { type: 'string', maxLength: 200 }, status: { type: 'string' }, score: { type: 'number' } } } },
  notes: { read: 'owner', write: 'owner', indexes: ['createdAt'] },
  members: { read: 'authenticated', write: 'authenticated' },
  settings: { read: 'admin', write: 'admin' },
};

export function testConfig(overrides: Partial<Settings> = {}, collections: unknown = DEFAULT_COLLECTIONS): Config {
  const defaults = Object.fromEntries(Object.entries(SETTINGS).map(([k, s]) => [k, s.default])) as Settings;
  // Suites about other things must not be shed when the machine is busy (a loaded CI box, a burst
  // of injected requests, PGlite blocking the loop while it starts): generous admission, no
  // event-loop guard. test/http/admission.test.ts exercises the real defaults.
  const relaxed: Partial<Settings> = { admissionInitialLimit: 1000, admissionMinLimit: 1000, admissionMaxLimit: 1000, admissionQueueWaitMs: 10_000, maxEventLoopDelayMs: 0 };
  return { ...defaults, logLevel: 'silent', ...relaxed, ...overrides, configFile: undefined, collections: parseCollections(collections) };
}

export interface TestApp {
  app: FastifyInstance;
  database: TestDatabase;
  config: Config;
  services: Services;
  lifecycle: Lifecycle;
  queues: JobQueues | undefined;
  metrics: Metrics;
  realtime: Realtime | undefined;
  /** Media, when the suite asked for `files`: the composed files layer and the worker's image job. */
  files: FilesComposed | undefined;
  processFile: ((payload: unknown) => Promise<unknown>) | undefined;
  /** File ids whose image job was enqueued (without `queues`, nothing runs them: call processFile). */
  enqueued: string[];
  /** Local storage's directory (files: true). */
  filesDir: string | undefined;
  /** app.inject with a JSON body and an optional bearer token. */
  call(method: InjectOptions['method'], url: string, opts?: { token?: string; body?: unknown; headers?: Record<string, string> }): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

export async function createTestApp(engine: Engine, opts: { overrides?: Partial<Settings>; collections?: unknown; clock?: Clock; logger?: Logger; queues?: boolean; realtime?: boolean; files?: boolean | { storage: StorageConfig } } = {}): Promise<TestApp> {
  const database = await engine.create();
  const config = testConfig(opts.overrides, opts.collections ?? DEFAULT_COLLECTIONS);
  const clock = opts.clock ?? systemClock;
  await migrateDatabase(database.db, config);
  const metrics = createMetrics(['api']);
  const services = await composeServices(config, database.db, metrics, clock, opts.logger);
  const lifecycle: Lifecycle = { draining: false };
  const ops = createOps({ db: database.db, metrics, lifecycle, roles: ['api'] });
  // The job queues, on the same engine, when a suite asks for them (the others skip their set-up).
  const queues = opts.queues
    ? await openJobQueues(engine.name === 'pglite' ? { kind: 'pglite', session: (database.db as PgliteDb).session } : { kind: 'postgres', url: database.url!, poolSize: 4 }, queueSpecs(), metrics.registry)
    : undefined;
  const push = queues ? createPushService({ db: services.db, clock, queues, topics: config.pushTopics }) : undefined;
  // Realtime (the change-log tailer and /v1/realtime) when a suite asks for it.
  const realtime = opts.realtime ? composeRealtime(config, services, metrics, opts.logger ?? createLogger('silent')) : undefined;
  await realtime?.start();
  // Media when a suite asks for it: local storage in a temp directory (or the storage given, e.g. s3rver).
  const filesDir = opts.files === true ? mkdtempSync(join(tmpdir(), 'levee-files-')) : undefined;
  const enqueued: string[] = [];
  let files: FilesComposed | undefined;
  let processFile: TestApp['processFile'];
  if (opts.files) {
    const storageConfig: StorageConfig = opts.files === true ? { engine: 'local', dir: filesDir! } : opts.files.storage;
    const storage = guardStorage(await createStorage(storageConfig), services.dependency({ name: `storage_${storageConfig.engine}`, concurrency: 64, queue: 256, isFailure: isStorageOutage, unavailable: storageUnavailable }));
    files = await composeFiles(config, services, {
      storage,
      clock,
      queues,
      enqueue: queues
        ? undefined
        : async (id) => {
            enqueued.push(id);
          },
    });
    processFile = composeFilesWorker(config, services.db, storage, clock).processFile;
  }
  const app = await buildApp({ clock, logger: opts.logger ?? createLogger('silent'), metrics, ops, ...services, queues, push, protection: composeProtection(config, metrics), bodyLimitBytes: config.bodyLimitBytes, trustProxy: config.trustProxy, realtime, files });
  await app.ready();
  return {
    app,
    database,
    config,
    services,
    lifecycle,
    queues,
    metrics,
    call: (method, url, o = {}) =>
      app.inject({
        method,
        url,
        headers: { ...(o.token ? { authorization: `Bearer ${o.token}` } : {}), ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}), ...o.headers },
        ...(o.body !== undefined ? { payload: JSON.stringify(o.body) } : {}),
      }),
    realtime,
    files,
    processFile,
    enqueued,
    filesDir,
    async close() {
      await app.close();
      await files?.close();
      if (filesDir) rmSync(filesDir, { recursive: true, force: true });
      await realtime?.stop();
      await services.signal.close();
      services.keys.stop();
      await services.redis?.close();
      await services.passwords.close();
      await queues?.close();
      await database.drop();
    },
  };
}

let seq = 0;
export const uniqueEmail = (tag = 'user') => `${tag}.${process.pid}.${Date.now()}.${seq++}@example.com`;

export async function signUp(t: TestApp, email = uniqueEmail(), password = 'correct horse 1') {
  const res = await t.call('POST', '/v1/auth/signup', { body: { email, password } });
  if (res.statusCode !== 201) throw new Error(`signup failed: ${res.statusCode} ${res.body}`);
  return { ...(res.json() as { user: { id: string; role: string; isAnonymous: boolean }; accessToken: string; refreshToken: string }), email, password };
}

/** What `levee admin grant <email>` does, then a fresh sign-in so the token carries the role. */
export async function makeAdmin(t: TestApp, account?: { email: string; password: string }) {
  const a = account ?? (await signUp(t, uniqueEmail('admin')));
  if (!(await users.setRole(t.database.db, a.email, 'admin'))) throw new Error('no such account');
  const res = await t.call('POST', '/v1/auth/signin', { body: { email: a.email, password: a.password } });
  if (res.statusCode !== 200) throw new Error(`signin failed: ${res.statusCode} ${res.body}`);
  return { ...(res.json() as { user: { id: string; role: string }; accessToken: string; refreshToken: string }), email: a.email, password: a.password };
}
