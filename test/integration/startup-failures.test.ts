import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import pg from 'pg';
import { MIGRATION_LOCK_KEY, migrate } from '../../src/db/migrate.js';
import { createLogger } from '../../src/observability/logger.js';
import { startLevee } from '../../src/roles/start.js';
import { testConfig } from '../support/app.js';
import { engines } from '../support/engines.js';

describe('a start that fails half-way', () => {
  it('releases the database and its directory lock (the port was taken)', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'levee-failstart-'));
    const blocker = createServer();
    await new Promise<void>((ok) => blocker.listen(0, '127.0.0.1', ok));
    const port = (blocker.address() as { port: number }).port;
    try {
      const config = testConfig({ dataDir, port, host: '127.0.0.1' });
      await assert.rejects(startLevee(config, ['api', 'worker'], createLogger('silent')), /EADDRINUSE/);
      assert.equal(existsSync(join(dataDir, 'levee.lock')), false, 'the lock was released');
      const running = await startLevee({ ...config, port: 0 }, ['api'], createLogger('silent'));
      await running.stop();
    } finally {
      blocker.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

const postgres = (await engines()).find((e) => e.name === 'postgres')!;
describe('migrations on PostgreSQL with a short statement_timeout', { skip: postgres.skip }, () => {
  it('a process waits for another one’s migrations longer than statement_timeout instead of failing', async () => {
    const database = await postgres.create({ statementTimeoutMs: 200 });
    const holder = new pg.Client({ connectionString: database.url });
    await holder.connect();
    try {
      await holder.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
      const started = Date.now();
      const migrating = migrate(database.db);
      await new Promise((r) => setTimeout(r, 800));
      await holder.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
      const { current } = await migrating;
      assert.ok(current >= 1);
      assert.ok(Date.now() - started >= 800, 'it really waited on the lock');
    } finally {
      await holder.end();
      await database.drop();
    }
  });
});
