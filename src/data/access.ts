import type { Principal } from '../auth/access-tokens.js';
import type { AccessRule } from '../config/collections.js';
import { LeveeError } from '../lib/errors.js';

// The collection access rules, in one place. Reads of owner-only documents that are not yours
// answer 404 (their existence is not disclosed); writes you may not make answer 401/403.

const isAdmin = (p?: Principal) => p?.role === 'admin';

/** May `p` list or read documents under `rule`? `ownerOnly` means: only their own. */
export function readScope(rule: AccessRule, p?: Principal): { ownerOnly: string | undefined } {
  if (rule === 'public') return { ownerOnly: undefined };
  if (!p) throw new LeveeError('unauthenticated');
  if (rule === 'authenticated' || isAdmin(p)) return { ownerOnly: undefined };
  if (rule === 'admin') throw new LeveeError('forbidden', 'Only administrators may read this collection');
  return { ownerOnly: p.userId };
}

export function canRead(rule: AccessRule, p: Principal | undefined, ownerId: string | null): boolean {
  const scope = readScope(rule, p);
  return scope.ownerOnly === undefined || scope.ownerOnly === ownerId;
}

export function checkCreate(rule: AccessRule, p?: Principal): void {
  if (rule === 'public') return;
  if (!p) throw new LeveeError('unauthenticated');
  if (rule === 'admin' && !isAdmin(p)) throw new LeveeError('forbidden', 'Only administrators may write to this collection');
}

export function checkChange(rule: AccessRule, p: Principal | undefined, ownerId: string | null): void {
  checkCreate(rule, p);
  if (rule === 'owner' && !isAdmin(p) && ownerId !== p!.userId) throw new LeveeError('forbidden', 'Only the owner may change this document');
}
