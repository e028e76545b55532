import { hash } from '@node-rs/argon2';
import type { Dependency } from '../protection/dependency.js';
import { createHashingThreads, type HashingThreads } from './hashing-threads.js';

// argon2id with OWASP's minimum parameters (19 MiB, 2 passes, 1 lane): 13–21 ms of CPU per hash here.
const PARAMS = { algorithm: 2 /* Argon2id */, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

/** One hash on libuv's pool, outside any bulkhead: for seeding scripts, not for requests. */
export const hashPassword = (password: string): Promise<string> => hash(password, PARAMS);

export interface PasswordHasher {
  hash(password: string): Promise<string>;
  verify(stored: string, password: string): Promise<boolean>;
  /** Spend the same time as a real check when the account does not exist (no user enumeration by timing). */
  burn(password: string): Promise<void>;
  /** Every hashing slot and queue place is taken (or the guard is open): a new sign-in would be refused. */
  saturated(): boolean;
  close(): Promise<void>;
}

/**
 * Hashing goes through `pool` (a bulkhead: a few hashes at once, a bounded queue, the request's
 * deadline) onto threads of its own at a lower CPU priority (`nice`), so a sign-in storm gets
 * slower sign-ins and fast 503s — not a CPU taken from every other request, and not an unbounded
 * pile of 19 MiB hashes in memory.
 */
export function createPasswordHasher(pool: Dependency, opts: { threads: number; nice: number }): PasswordHasher {
  let threads: HashingThreads | undefined;
  const onThreads = () => (threads ??= createHashingThreads(opts));
  let dummy: Promise<string> | undefined;
  const check = (stored: string, password: string) => pool.run(() => onThreads().verify(stored, password));
  return {
    hash: (password) => pool.run(() => onThreads().hash(password, PARAMS)),
    verify: check,
    async burn(password) {
      dummy ??= hashPassword('levee-timing-equaliser');
      await check(await dummy, password);
    },
    saturated: () => pool.saturated(),
    close: async () => threads?.close(),
  };
}
