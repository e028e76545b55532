import { linkSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LeveeStartupError } from '../../lib/startup-error.js';

// Written by hand: the maintained lock libraries (proper-lockfile) refresh mtimes on a timer, which
// is more than a single-host pid lock needs. The lock file appears atomically with its pid already
// in it (written to a temporary file, then hard-linked into place), so nobody reads a half-made lock.

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** Directories this process holds: opening one twice in one process is refused too. */
const heldHere = new Set<string>();

const inUse = (dir: string, holder: number | string) =>
  new LeveeStartupError(
    `LEVEE_DATA_DIR: ${dir} is in use by another Levee process (pid ${holder}). The embedded database serves one process; run roles as separate processes with DATABASE_URL=postgres://…`,
  );

/** Takes an exclusive lock on `dir` for this process; returns the function that releases it. */
export function lockDirectory(dir: string): () => void {
  const file = join(dir, 'levee.lock');
  if (heldHere.has(file)) throw inUse(dir, process.pid);
  const tmp = `${file}.${process.pid}.${Date.now()}`;
  writeFileSync(tmp, String(process.pid));
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        linkSync(tmp, file);
        heldHere.add(file);
        let released = false;
        const release = () => {
          if (released) return;
          released = true;
          heldHere.delete(file);
          process.off('exit', release);
          try {
            unlinkSync(file);
          } catch {
            /* already gone */
          }
        };
        process.on('exit', release);
        return release;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      let holder = NaN;
      try {
        holder = Number.parseInt(readFileSync(file, 'utf8'), 10);
      } catch {
        continue; // removed meanwhile: try again
      }
      // A pid equal to ours is a previous life of this container (pid 1 again), not us: stale.
      if (!Number.isFinite(holder) || (holder !== process.pid && isAlive(holder))) throw inUse(dir, Number.isFinite(holder) ? holder : 'unknown');
      // Stale: move it aside (one process wins the rename), then try to link again.
      const aside = `${file}.stale.${process.pid}`;
      try {
        renameSync(file, aside);
        // Another process may have taken over between our read and our rename: if what we moved
        // is not the stale lock we saw, put it back.
        if (Number.parseInt(readFileSync(aside, 'utf8'), 10) !== holder) linkSync(aside, file);
      } catch {
        /* another process took it over first; the next link attempt tells */
      }
      try {
        unlinkSync(aside);
      } catch {
        /* nothing was moved aside */
      }
    }
    throw new LeveeStartupError(`LEVEE_DATA_DIR: could not lock ${dir}`);
  } finally {
    unlinkSync(tmp);
  }
}
