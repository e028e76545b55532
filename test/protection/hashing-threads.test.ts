import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { hashPassword } from '../../src/auth/passwords.js';
import { createHashingThreads } from '../../src/auth/hashing-threads.js';

const PARAMS = { algorithm: 2, memoryCost: 19_456, timeCost: 2, parallelism: 1 };

/** Nice values of this process's threads (Linux), from /proc. */
const threadNiceValues = (): number[] =>
  readdirSync('/proc/self/task').map((tid) => Number(readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ')[16]));

describe('password hashing threads', () => {
  it('hash and verify argon2id off the event loop; a hash from elsewhere verifies; a malformed one never matches', async () => {
    const threads = createHashingThreads({ threads: 2, nice: 0 });
    try {
      const hashed = await threads.hash('correct horse 1', PARAMS);
      assert.match(hashed, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
      assert.equal(await threads.verify(hashed, 'correct horse 1'), true);
      assert.equal(await threads.verify(hashed, 'correct horse 2'), false);
      assert.equal(await threads.verify(await hashPassword('from libuv'), 'from libuv'), true);
      assert.equal(await threads.verify('not-a-hash', 'x'), false);
      // More jobs than threads: they queue and all complete.
      const many = await Promise.all(Array.from({ length: 5 }, (_, i) => threads.verify(hashed, i === 3 ? 'correct horse 1' : 'no')));
      assert.deepEqual(many, [false, false, false, true, false]);
    } finally {
      await threads.close();
    }
  });

  it('run at the configured lower CPU priority (Linux), leaving the event loop at its own', { skip: process.platform !== 'linux' && 'per-thread nice values are Linux-only' }, async () => {
    const before = threadNiceValues();
    const threads = createHashingThreads({ threads: 1, nice: 12 });
    try {
      await threads.hash('x', PARAMS);
      const after = threadNiceValues();
      assert.equal(after.filter((n) => n === 12).length, before.filter((n) => n === 12).length + 1, `nice values ${after.join(',')}`);
      assert.equal(Number(readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ')[16]), 0, 'the main thread keeps its priority');
    } finally {
      await threads.close();
    }
  });

  it('after close, new jobs fail at once', async () => {
    const threads = createHashingThreads({ threads: 1, nice: 0 });
    await threads.hash('x', PARAMS);
    await threads.close();
    await assert.rejects(threads.verify('x', 'y'), /shut down/);
  });
});
