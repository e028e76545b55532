import { hash, verify } from '@node-rs/argon2';

// argon2id with OWASP's minimum parameters (19 MiB, 2 passes, 1 lane): 13–21 ms per hash here.
// @node-rs/argon2 hashes on libuv's thread pool, off the event loop.
const PARAMS = { algorithm: 2 /* Argon2id */, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

export const hashPassword = (password: string): Promise<string> => hash(password, PARAMS);

export const verifyPassword = async (stored: string, password: string): Promise<boolean> => {
  try {
    return await verify(stored, password);
  } catch {
    return false;
  }
};

let dummy: Promise<string> | undefined;
/** Spend the same time as a real check when the account does not exist (no user enumeration by timing). */
export const burnPasswordCheck = async (password: string): Promise<void> => {
  dummy ??= hashPassword('levee-timing-equaliser');
  await verifyPassword(await dummy, password);
};
