import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createPostgresDatabase, engines } from '../support/engines.js';
import { connectionRefused, http, killAll, partialRequest, runLevee, startLevee, waitFor } from '../support/process.js';

// Process roles as real processes. Roles in separate processes share one PostgreSQL (the embedded
// database is one process's), so these suites need it: skipped without it, failing in CI.

const pgSkip = (await engines()).find((e) => e.name === 'postgres')!.skip;

describe('process roles on PostgreSQL', { skip: pgSkip }, () => {
  let database: { url: string; drop(): Promise<void> };
  before(async () => {
    database = await createPostgresDatabase();
    // Migrated once up front, so the processes below start without racing to migrate.
    const r = await runLevee(['migrate'], { env: { DATABASE_URL: database.url } });
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    await killAll();
    await database?.drop();
  });

  it('--roles worker alone serves /healthz, /readyz and /metrics from a bare server, and no API', async () => {
    const p = await startLevee(['--roles', 'worker'], { env: { DATABASE_URL: database.url } });
    assert.match(p.stdout, /running \(roles: worker\)/);
    assert.doesNotMatch(p.stdout, /API:|Docs:/, 'a worker has no API to advertise');
    assert.match(p.stdout, /Data:\s+PostgreSQL \(127\.0\.0\.1:5432\)/);

    const health = await http(`${p.url}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(health.json().roles, ['worker']);
    const ready = await http(`${p.url}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.json().checks, { draining: 'ok', database: 'ok', migrations: 'ok' });
    const metrics = await http(`${p.url}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(metrics.body, /^# HELP /m);
    const api = await http(`${p.url}/v1/auth/signup`, { method: 'POST', body: { email: 'w@example.com', password: 'correct horse 1' } });
    assert.equal(api.status, 404);

    // Draining: a probe arriving on an open connection reads not-ready; new connections are refused.
    const probe = await partialRequest(p.url, { method: 'GET', path: '/readyz', holdBackBytes: 2 });
    await http(`${p.url}/healthz`); // the server has read the probe's head by now
    p.kill('SIGTERM');
    await waitFor('the ops listener to close', () => connectionRefused(p.url), 5_000, 50);
    probe.finish();
    const draining = await probe.response;
    assert.equal(draining.status, 503, JSON.stringify(draining));
    assert.equal(JSON.parse(draining.body).checks.draining, 'draining');
    assert.deepEqual(await p.waitForExit(15_000), { code: 0, signal: null }, p.stderr);
  });

  it('--roles api,worker,push runs every role in one process; --roles push alone runs only push', async () => {
    const all = await startLevee(['--roles', 'api,worker,push'], { env: { DATABASE_URL: database.url } });
    assert.match(all.stdout, /running \(roles: api, worker, push\)/);
    assert.deepEqual((await http(`${all.url}/healthz`)).json().roles, ['api', 'worker', 'push']);
    const up = await http(`${all.url}/v1/auth/signup`, { method: 'POST', body: { email: `all.${Date.now()}@example.com`, password: 'correct horse 1' } });
    assert.equal(up.status, 201, up.body);

    const push = await startLevee(['--roles', 'push'], { env: { DATABASE_URL: database.url } });
    assert.deepEqual((await http(`${push.url}/healthz`)).json().roles, ['push']);
    assert.equal((await http(`${push.url}/readyz`)).status, 200);

    all.kill('SIGTERM');
    push.kill('SIGTERM');
    assert.equal((await all.waitForExit(15_000)).code, 0, all.stderr);
    assert.equal((await push.waitForExit(15_000)).code, 0, push.stderr);
  });

  it('an unreachable DATABASE_URL fails start-up within the bound instead of hanging', async () => {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    const r = await runLevee(['start', '--roles', 'worker'], { env: { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/levee' }, timeoutMs: 20_000 });
    assert.equal(r.code, 1, r.stderr);
    const lines = r.stderr.split('\n').filter(Boolean);
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /^levee: DATABASE_URL: PostgreSQL is unreachable: .*ECONNREFUSED/);
  });
});
