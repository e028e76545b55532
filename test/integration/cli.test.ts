import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { killAll, runLevee, tempDir } from '../support/process.js';

// The command line and start-up validation, as a user meets them: real `levee` processes.

/** stderr split into its non-empty lines. */
const lines = (s: string) => s.split('\n').filter((l) => l.trim() !== '');

describe('levee command line', { concurrency: true }, () => {
  after(killAll);

  it('--help prints usage listing start and migrate, and exits 0', async () => {
    const r = await runLevee(['--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Usage: levee <command>/);
    assert.match(r.stdout, /^\s+start\b.*--roles/m);
    assert.match(r.stdout, /^\s+migrate\b/m);
    assert.equal(r.stderr, '');
  });

  it('an unknown command exits non-zero with one line naming it and the known commands', async () => {
    const r = await runLevee(['frobnicate']);
    assert.notEqual(r.code, 0);
    assert.equal(r.stdout, '');
    const err = lines(r.stderr);
    assert.equal(err.length, 1, r.stderr);
    assert.match(err[0]!, /unknown command "frobnicate"/);
    assert.match(err[0]!, /start/);
    assert.match(err[0]!, /migrate/);
  });

  it('an unknown option exits non-zero and points at --help', async () => {
    const r = await runLevee(['start', '--port', '9']);
    assert.notEqual(r.code, 0);
    const err = lines(r.stderr);
    assert.equal(err.length, 1, r.stderr);
    assert.match(err[0]!, /--port/);
    assert.match(err[0]!, /--help/);
  });
});

describe('configuration errors stop start-up with one clear line each', { concurrency: true }, () => {
  after(killAll);

  it('PORT=abc: exit 1, one line naming PORT, nothing started', async () => {
    const dataDir = join(tempDir(), 'data');
    const r = await runLevee(['start'], { env: { PORT: 'abc', LEVEE_DATA_DIR: dataDir } });
    assert.equal(r.code, 1, r.stderr);
    const err = lines(r.stderr);
    assert.equal(err.length, 1, r.stderr);
    assert.match(err[0]!, /^levee: PORT .*whole number.*"abc"/);
    assert.doesNotMatch(r.stdout, /running/);
    assert.equal(existsSync(dataDir), false, 'the data directory must not be created when the configuration is bad');
  });

  it('DATABASE_URL=mysql://x names DATABASE_URL and what it must be', async () => {
    const r = await runLevee(['start'], { env: { DATABASE_URL: 'mysql://x' } });
    assert.equal(r.code, 1, r.stderr);
    const err = lines(r.stderr);
    assert.equal(err.length, 1, r.stderr);
    assert.match(err[0]!, /^levee: DATABASE_URL .*postgres:\/\//);
  });

  it('a bad collections rule in the LEVEE_CONFIG file names collections.<name>.read', async () => {
    const dir = tempDir();
    const file = join(dir, 'levee.config.json');
    writeFileSync(file, JSON.stringify({ collections: { posts: { read: 'everyone', write: 'owner' } } }));
    const r = await runLevee(['start'], { env: { LEVEE_CONFIG: file } });
    assert.equal(r.code, 1, r.stderr);
    const err = lines(r.stderr);
    assert.equal(err.length, 1, r.stderr);
    assert.match(err[0]!, /collections\.posts\.read/);
    assert.match(err[0]!, /public, authenticated, owner, admin/);
    assert.match(err[0]!, /"everyone"/);
  });

  it('several bad values: one line for each, and no stack trace', async () => {
    const dir = tempDir();
    const file = join(dir, 'levee.config.json');
    writeFileSync(file, JSON.stringify({ collections: { posts: { read: 'everyone' } } }));
    const r = await runLevee(['start'], {
      env: { LEVEE_CONFIG: file, PORT: 'abc', DATABASE_URL: 'mysql://x', LEVEE_SHUTDOWN_GRACE_MS: '-5', LOG_LEVEL: 'loud' },
    });
    assert.equal(r.code, 1, r.stderr);
    const err = lines(r.stderr);
    assert.equal(err.length, 5, r.stderr);
    assert.ok(err.every((l) => l.startsWith('levee: ')), r.stderr);
    for (const name of ['PORT', 'DATABASE_URL', 'LEVEE_SHUTDOWN_GRACE_MS', 'LOG_LEVEL', 'collections.posts.read']) {
      assert.equal(err.filter((l) => l.includes(name)).length, 1, `exactly one line names ${name}:\n${r.stderr}`);
    }
  });

  it('a config file that is not JSON names LEVEE_CONFIG', async () => {
    const file = join(tempDir(), 'levee.config.json');
    writeFileSync(file, '{ "collections": ');
    const r = await runLevee(['start'], { env: { LEVEE_CONFIG: file } });
    assert.equal(r.code, 1, r.stderr);
    const err = lines(r.stderr);
    assert.equal(err.length, 1, r.stderr);
    assert.match(err[0]!, /^levee: LEVEE_CONFIG: .*not valid/);
  });

  it('--roles bogus fails with one line naming --roles and the known roles', async () => {
    const r = await runLevee(['start', '--roles', 'api,bogus']);
    assert.equal(r.code, 1, r.stderr);
    const err = lines(r.stderr);
    assert.equal(err.length, 1, r.stderr);
    assert.match(err[0]!, /^levee: --roles .*"bogus"/);
    assert.match(err[0]!, /api, worker, push/);
  });

  it('LEVEE_ROLES=bogus fails the same way, naming LEVEE_ROLES', async () => {
    const r = await runLevee(['start'], { env: { LEVEE_ROLES: 'bogus' } });
    assert.equal(r.code, 1, r.stderr);
    const err = lines(r.stderr);
    assert.equal(err.length, 1, r.stderr);
    assert.match(err[0]!, /^levee: LEVEE_ROLES .*"bogus"/);
  });
});
