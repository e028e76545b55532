import { createHmac, timingSafeEqual } from 'node:crypto';
import { LeveeError } from '../lib/errors.js';

// Sync cursors: a change-log position (tx, seq) handed to clients as an opaque string signed with a
// per-database secret, so a forged or mangled cursor is refused with a clear error instead of
// silently reading from an arbitrary point.

export interface Position {
  tx: number;
  seq: number;
}

/** Before every change. */
export const START: Position = { tx: 0, seq: 0 };
/** Largest seq: (t, SEQ_MAX) is after every change written by transaction t. */
export const SEQ_MAX = Number.MAX_SAFE_INTEGER;

export const after = (a: Position, b: Position): boolean => a.tx > b.tx || (a.tx === b.tx && a.seq > b.seq);

const PREFIX = 'c1';

export interface CursorCodec {
  encode(p: Position): string;
  /** Undefined or '' means "from the start". */
  decode(cursor: string | undefined): Position;
}

export function createCursorCodec(secret: string): CursorCodec {
  const mac = (body: string) => createHmac('sha256', secret).update(body).digest('base64url').slice(0, 22);
  return {
    encode(p) {
      const body = `${PREFIX}.${p.tx.toString(36)}.${p.seq.toString(36)}`;
      return `${body}.${mac(body)}`;
    },
    decode(cursor) {
      if (cursor === undefined || cursor === '') return START;
      const parts = cursor.length <= 80 ? cursor.split('.') : [];
      const [prefix, tx36, seq36, sig] = parts;
      if (parts.length !== 4 || prefix !== PREFIX || !/^[0-9a-z]{1,11}$/.test(tx36!) || !/^[0-9a-z]{1,11}$/.test(seq36!)) {
        throw new LeveeError('invalid_cursor', 'The sync cursor is malformed: pass back a cursor exactly as Levee returned it');
      }
      const body = `${prefix}.${tx36}.${seq36}`;
      const want = Buffer.from(mac(body));
      const got = Buffer.from(sig!);
      if (got.length !== want.length || !timingSafeEqual(got, want)) {
        throw new LeveeError('invalid_cursor', 'The sync cursor was not issued by this server (its signature does not match)');
      }
      const tx = parseInt(tx36!, 36);
      const seq = parseInt(seq36!, 36);
      if (!Number.isSafeInteger(tx) || !Number.isSafeInteger(seq)) throw new LeveeError('invalid_cursor', 'The sync cursor is malformed');
      return { tx, seq };
    },
  };
}
