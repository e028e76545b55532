import type { RawData } from 'ws';
import { LeveeError } from '../lib/errors.js';

// What a client may send on the WebSocket, checked before anything acts on it. Anything else is
// answered with an `error` message naming what is wrong; the connection stays up.

export type ClientMessage =
  | { type: 'subscribe'; collections: string[]; user: boolean; cursor?: string | undefined }
  | { type: 'unsubscribe'; collections: string[]; user: boolean }
  | { type: 'ping' };

const MAX_NAMES = 256;

const names = (v: unknown): string[] => {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.length > MAX_NAMES || !v.every((n) => typeof n === 'string' && n.length > 0 && n.length <= 64)) {
    throw new LeveeError('bad_request', '"collections" is an array of collection names');
  }
  return v as string[];
};

export function parseClientMessage(data: RawData, isBinary: boolean): ClientMessage | LeveeError {
  if (isBinary) return new LeveeError('bad_request', 'Messages are JSON text frames');
  let msg: unknown;
  try {
    msg = JSON.parse(Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]).toString('utf8'));
  } catch {
    return new LeveeError('invalid_json', 'The message is not valid JSON');
  }
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) return new LeveeError('bad_request', 'A message is a JSON object with a "type"');
  const m = msg as Record<string, unknown>;
  try {
    switch (m.type) {
      case 'ping':
        return { type: 'ping' };
      case 'subscribe':
      case 'unsubscribe': {
        if (m.user !== undefined && typeof m.user !== 'boolean') throw new LeveeError('bad_request', '"user" is true or false');
        if (m.type === 'unsubscribe') return { type: 'unsubscribe', collections: names(m.collections), user: m.user === true };
        if (m.cursor !== undefined && (typeof m.cursor !== 'string' || m.cursor.length > 200)) throw new LeveeError('invalid_cursor', '"cursor" is a position Levee sent');
        return { type: 'subscribe', collections: names(m.collections), user: m.user === true, cursor: m.cursor as string | undefined };
      }
      default:
        return new LeveeError('bad_request', `Unknown message type ${JSON.stringify(m.type)?.slice(0, 40) ?? 'undefined'}: expected subscribe, unsubscribe or ping`);
    }
  } catch (e) {
    if (e instanceof LeveeError) return e;
    throw e;
  }
}
