import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { lockDirectory } from '../../src/db/adapters/dir-lock.js';

describe('data directory lock', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'levee-lock-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('holds the directory with this pid and releases it', () => {
    const release = lockDirectory(dir);
    assert.equal(readFileSync(join(dir, 'levee.lock'), 'utf8'), String(process.pid));
    release();
    assert.equal(existsSync(join(dir, 'levee.lock')), false);
  });

  it('refuses a second open in the same process', () => {
    const release = lockDirectory(dir);
    try {
      assert.throws(() => lockDirectory(dir), /in use/);
      assert.ok(existsSync(join(dir, 'levee.lock')), 'the first holder keeps its lock');
    } finally {
      release();
    }
  });

  it('treats an unreadable (half-written) lock as held, not stale', () => {
    writeFileSync(join(dir, 'levee.lock'), '');
    assert.throws(() => lockDirectory(dir), /in use/);
    assert.equal(readFileSync(join(dir, 'levee.lock'), 'utf8'), '');
  });

  it('refuses a lock held by a live process and takes over one from a dead process', () => {
    writeFileSync(join(dir, 'levee.lock'), String(process.ppid));
    assert.throws(() => lockDirectory(dir), new RegExp(`pid ${process.ppid}`));
    writeFileSync(join(dir, 'levee.lock'), '2147483646'); // no such process
    const release = lockDirectory(dir);
    assert.equal(readFileSync(join(dir, 'levee.lock'), 'utf8'), String(process.pid));
    release();
  });
});
