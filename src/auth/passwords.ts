import { hash, verify } from '@node-rs/argon2';
import type { Dependency } from '../protection/dependency.js';

// argon2id with OWASP's minimum parameters (19 MiB, 2 passes, 1 lane): 13–21 ms per hash here.
// @node-rs/argon2 hashes on libuv's thread pool, off the event loop.
const PARAMS = { algorithm: 2 /* Argon2id */, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

export const hashPassword = (password: string): Promise<string> => hash(password, PARAMS);

const verifyPassword = async (stored: string, password: string): Promise<boolean> => {
  try {
    return await verify(stored, password);
  } catch {
    return false;
  }
};

export interface PasswordHasher {
  hash(password: string): Promise<string>;
  verify(stored: string, password: string): Promise<boolean>;
  /** Spend the same time as a real check when the account does not exist (no user enumeration by timing). */
  burn(password: string): Promise<void>;
}

/**
 * Hashing goes through `pool` (a bulkhead: a few hashes at once, a bounded queue, the request's
 * deadline), so a sign-in storm gets slower sign-ins and fast 503s — not a CPU taken from every
 * other request, and not an unbounded pile of 19 MiB hashes in memory.
 */
export function createPasswordHasher(pool: Dependency): PasswordHasher {
  let dummy: Promise<string> | undefined;
  const check = (stored: string, password: string) => pool.run(() => verifyPassword(stored, password));
  return {
    hash: (password) => pool.run(() => hashPassword(password)),
    verify: check,
    async burn(password) {
      dummy ??= hashPassword('levee-timing-equaliser');
      await check(await dummy, password);
    },
  };
}
