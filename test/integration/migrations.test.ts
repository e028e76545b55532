import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { loadMigrations, migrate, MIGRATION_LOCK_KEY } from '../../src/db/migrate.js';
import { LeveeStartupError } from '../../src/lib/startup-error.js';
import { createPostgresDatabase, engines, type TestDatabase } from '../support/engines.js';
import { http, killAll, runLevee, spawnLevee, tempDir, waitFor, type LeveeProcess } from '../support/process.js';

// Migrations: the checksum guard on both engines (in-process), and processes racing to migrate one
// fresh PostgreSQL (real `levee` processes, made to collide by holding the migration lock).

const allEngines = await engines();

for (const engine of allEngines) {
  describe(`migrations on ${engine.name}`, { skip: engine.skip }, () => {
    let database: TestDatabase;
    const dir = tempDir('levee-migrations-');
    before(async () => {
      database = await engine.create();
    });
    after(() => database?.drop());

    const tableExists = async (name: string) =>
      (await database.db.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [name])).rows[0]!.t !== null;

    it('applies pending migrations once, in order', async () => {
      writeFileSync(join(dir, '0001_first.sql'), 'CREATE TABLE it_first (id int PRIMARY KEY);');
      writeFileSync(join(dir, 'README.md'), 'not a migration');
      assert.deepEqual(await migrate(database.db, loadMigrations(dir)), { applied: ['0001_first'], current: 1 });
      assert.deepEqual(await migrate(database.db, loadMigrations(dir)), { applied: [], current: 1 });
      writeFileSync(join(dir, '0002_second.sql'), 'CREATE TABLE it_second (id int PRIMARY KEY);');
      assert.deepEqual(await migrate(database.db, loadMigrations(dir)), { applied: ['0002_second'], current: 2 });
      assert.ok(await tableExists('it_second'));
      const { rows } = await database.db.query<{ version: number }>('SELECT version FROM levee_migrations ORDER BY version');
      assert.deepEqual(rows.map((r) => r.version), [1, 2]);
    });

    it('refuses a migration whose file changed after it was applied, and applies nothing else', async () => {
      writeFileSync(join(dir, '0001_first.sql'), 'CREATE TABLE it_first (id int PRIMARY KEY, extra text);');
      writeFileSync(join(dir, '0003_third.sql'), 'CREATE TABLE it_third (id int PRIMARY KEY);');
      await assert.rejects(migrate(database.db, loadMigrations(dir)), (e: Error) => {
        assert.ok(e instanceof LeveeStartupError, `a start-up error (one line from the CLI), got ${e.name}`);
        assert.match(e.message, /^migration 0001_first\.sql was changed after it was applied/);
        assert.match(e.message, /new migration/);
        return true;
      });
      assert.equal(await tableExists('it_third'), false, 'a refused run applies nothing');
      const { rows } = await database.db.query<{ version: number }>('SELECT version FROM levee_migrations ORDER BY version');
      assert.deepEqual(rows.map((r) => r.version), [1, 2]);
    });
  });
}

const pgSkip = allEngines.find((e) => e.name === 'postgres')!.skip;

describe('processes migrating one fresh PostgreSQL at once', { skip: pgSkip }, () => {
  const databases: { url: string; drop(): Promise<void> }[] = [];
  const fresh = async () => {
    const d = await createPostgresDatabase();
    databases.push(d);
    return d.url;
  };
  after(async () => {
    await killAll();
    await Promise.all(databases.map((d) => d.drop()));
  });

  /**
   * Holds the migration advisory lock in another session, starts `spawn()` processes, waits until
   * `count` of them are queued on the lock, then lets them go: they collide for certain, rather
   * than by the luck of start-up timing.
   */
  async function collide(url: string, count: number, spawn: () => LeveeProcess): Promise<LeveeProcess[]> {
    const holder = new pg.Client({ connectionString: url });
    await holder.connect();
    try {
      await holder.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
      const procs = Array.from({ length: count }, spawn);
      await waitFor(`${count} processes waiting on the migration lock`, async () => {
        const { rows } = await holder.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
          [MIGRATION_LOCK_KEY],
        );
        return rows[0]!.n === count;
      }, 20_000, 50);
      await holder.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
      return procs;
    } finally {
      await holder.end();
    }
  }

  const migrationRows = async (url: string) => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query<{ version: number; n: number }>('SELECT version, count(*)::int AS n FROM levee_migrations GROUP BY version ORDER BY version')).rows;
    } finally {
      await c.end();
    }
  };

  it('two `levee migrate` at the same moment both exit 0 and each migration is applied once', async () => {
    const url = await fresh();
    const procs = await collide(url, 2, () => spawnLevee(['migrate'], { env: { DATABASE_URL: url } }));
    const exits = await Promise.all(procs.map((p) => p.waitForExit(20_000)));
    for (const [i, e] of exits.entries()) assert.deepEqual(e, { code: 0, signal: null }, procs[i]!.stderr);
    const outs = procs.map((p) => p.stdout);
    assert.equal(outs.filter((o) => /Applied 0001_core/.test(o)).length, 1, outs.join('\n'));
    assert.equal(outs.filter((o) => /up to date/.test(o)).length, 1, outs.join('\n'));
    const rows = await migrationRows(url);
    assert.deepEqual(rows.map((r) => r.version), loadMigrations().map((m) => m.version));
    assert.ok(rows.every((r) => r.n === 1), JSON.stringify(rows));
  });

  it('two `levee start --roles api` at once both become ready and share accounts and signing keys', async () => {
    const url = await fresh();
    const procs = await collide(url, 2, () => spawnLevee(['start', '--roles', 'api'], { env: { DATABASE_URL: url } }));
    const urls = await Promise.all(
      procs.map(async (p) => (await p.waitForOutput(/Health:\s+(http:\/\/\S+?)\/healthz,/, 30_000))[1]!),
    );
    for (const u of urls) {
      await waitFor(`${u}/readyz`, async () => (await http(`${u}/readyz`)).status === 200, 20_000);
    }
    const [a, b] = urls as [string, string];
    const account = { email: `both.${Date.now()}@example.com`, password: 'correct horse 1' };
    const up = await http(`${a}/v1/auth/signup`, { method: 'POST', body: account });
    assert.equal(up.status, 201, up.body);
    // A token issued by one instance is accepted by the other, straight away.
    const me = await http(`${b}/v1/auth/me`, { headers: { authorization: `Bearer ${up.json().accessToken}` } });
    assert.equal(me.status, 200, me.body);
    const signin = await http(`${b}/v1/auth/signin`, { method: 'POST', body: account });
    assert.equal(signin.status, 200, signin.body);
    const meA = await http(`${a}/v1/auth/me`, { headers: { authorization: `Bearer ${signin.json().accessToken}` } });
    assert.equal(meA.status, 200, meA.body);

    assert.ok((await migrationRows(url)).every((r) => r.n === 1));
    for (const p of procs) p.kill('SIGTERM');
    for (const p of procs) assert.deepEqual(await p.waitForExit(15_000), { code: 0, signal: null }, p.stderr);
  });

  it('`levee migrate` on a database whose applied migration no longer matches its file exits 1 with one line', async () => {
    const url = await fresh();
    assert.equal((await runLevee(['migrate'], { env: { DATABASE_URL: url } })).code, 0);
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query(`UPDATE levee_migrations SET checksum = '0000000000000000' WHERE version = 1`);
    await c.end();
    const r = await runLevee(['migrate'], { env: { DATABASE_URL: url } });
    assert.equal(r.code, 1, r.stderr);
    const lines = r.stderr.split('\n').filter(Boolean);
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /^levee: migration 0001_core\.sql was changed after it was applied/);
    const start = await runLevee(['start'], { env: { DATABASE_URL: url } });
    assert.equal(start.code, 1, 'start-up refuses too');
    assert.match(start.stderr, /0001_core\.sql was changed/);
  });
});
