import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { LeveeStartupError } from '../../lib/startup-error.js';

// Written by hand: the maintained lock libraries (proper-lockfile) refresh mtimes on a timer, which
// is more than a single-host pid lock needs. O_EXCL create + stale-pid takeover is enough here.

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** Takes an exclusive lock on `dir` for this process; returns the function that releases it. */
export function lockDirectory(dir: string): () => void {
  const file = join(dir, 'levee.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
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
      const holder = Number.parseInt(readFileSync(file, 'utf8'), 10);
      if (Number.isFinite(holder) && holder !== process.pid && isAlive(holder)) {
        throw new LeveeStartupError(
          `LEVEE_DATA_DIR: ${dir} is in use by another Levee process (pid ${holder}). The embedded database serves one process; run roles as separate processes with DATABASE_URL=postgres://…`,
        );
      }
      unlinkSync(file); // stale lock from a process that died
    }
  }
  throw new LeveeStartupError(`LEVEE_DATA_DIR: could not lock ${dir}`);
}
