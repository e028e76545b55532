// One password-hashing thread (see hashing-threads.ts). Plain JavaScript: worker threads do not
// inherit the tsx loader that runs Levee's TypeScript.
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { hashSync, verifySync } from '@node-rs/argon2';

// On Linux a nice value belongs to a thread: this lowers this thread only, so hashing gets the CPU
// that requests do not need instead of competing with the event loop and the database for it.
if (workerData?.nice) {
  try {
    setPriority(workerData.nice);
  } catch {
    // not permitted here: hash at normal priority
  }
}

parentPort.on('message', ({ id, op, password, stored, params }) => {
  let reply;
  try {
    if (op === 'hash') reply = { id, result: hashSync(password, params) };
    else {
      let ok = false;
      try {
        ok = verifySync(stored, password);
      } catch {
        ok = false; // a malformed stored hash never matches
      }
      reply = { id, result: ok };
    }
  } catch (e) {
    reply = { id, error: String(e?.message ?? e) };
  }
  parentPort.postMessage(reply);
});
