import { LeveeError } from '../lib/errors.js';

// What JSON allows but PostgreSQL cannot store, or the services cannot safely walk: U+0000 and
// unpaired UTF-16 surrogates in strings or keys (jsonb and text refuse them), numbers too large for
// a double (JSON.parse makes them Infinity, stored as null), and nesting deep enough to overflow
// the stack of a recursive walk (schema validation, merge patch, JSON.stringify). Every parsed
// body is checked once, before schema validation, so such input is a 400, never a 500.

export const MAX_BODY_DEPTH = 64;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function unstorable(s: string): string | undefined {
  if (s.includes('\u0000')) return 'contains U+0000, which cannot be stored';
  if (LONE_SURROGATE.test(s)) return 'contains an unpaired UTF-16 surrogate';
  return undefined;
}

const pointer = (key: string) => key.replace(/~/g, '~0').replace(/\//g, '~1');

export function checkBody(body: unknown): void {
  const fail = (path: string, message: string): never => {
    throw new LeveeError('validation_failed', `body${path} ${message}`, { extra: { errors: [{ path: path || '/', message }] } });
  };
  const walk = (v: unknown, path: string, depth: number): void => {
    if (typeof v === 'string') {
      const why = unstorable(v);
      if (why) fail(path, why);
    } else if (typeof v === 'number') {
      if (!Number.isFinite(v)) fail(path, 'is a number too large to represent');
    } else if (typeof v === 'object' && v !== null) {
      if (depth >= MAX_BODY_DEPTH) fail(path, `nests deeper than ${MAX_BODY_DEPTH} levels`);
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) walk(v[i], `${path}/${i}`, depth + 1);
      } else {
        for (const [k, x] of Object.entries(v)) {
          const why = unstorable(k);
          if (why) fail(path, `has a key that ${why}`);
          walk(x, `${path}/${pointer(k)}`, depth + 1);
        }
      }
    }
  };
  walk(body, '', 0);
}
