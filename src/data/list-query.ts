import type { CollectionConfig, FieldType } from '../config/collections.js';
import { LeveeError } from '../lib/errors.js';
import { UUID } from '../lib/ids.js';
import { castOf, queryableField, type FieldRef } from './fields.js';

// Turns a list request's query string into a validated, parameterised WHERE / ORDER BY.
//   ?status=published&price[gte]=10&price[lt]=20&tag[in]=a,b&sort=-createdAt&limit=20&cursor=…
// Only declared (indexed) fields may appear; every value travels as a bind parameter.

export const MAX_LIMIT = 100;
/** Longest value (JSON text, bytes) of an indexed data field: a btree entry has a size limit. */
export const MAX_INDEXED_TEXT_BYTES = 1024;
export const DEFAULT_LIMIT = 20;
const OPS = { eq: '=', ne: '<>', gt: '>', gte: '>=', lt: '<', lte: '<=', in: 'IN' } as const;
type Op = keyof typeof OPS;
const KEY = /^([A-Za-z_][A-Za-z0-9_]{0,39})(?:\[([a-z]{2,3})\])?$/;
const RESERVED = new Set(['sort', 'limit', 'cursor']);

export interface ListQuery {
  where: string[];
  params: unknown[];
  orderBy: string;
  limit: number;
  sort: { field: FieldRef; desc: boolean; key: string };
}

const bad = (detail: string) => new LeveeError('invalid_filter', detail);

function parseValue(field: FieldRef, raw: string): unknown {
  if (raw.length > MAX_INDEXED_TEXT_BYTES) throw bad(`The value for ${field.name} is too long`);
  if (raw.includes('\u0000')) throw bad(`The value for ${field.name} contains U+0000`);
  switch (field.type as FieldType) {
    case 'number': {
      const n = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(n)) throw bad(`${field.name} takes a number, got ${JSON.stringify(raw)}`);
      return n;
    }
    case 'boolean':
      if (raw !== 'true' && raw !== 'false') throw bad(`${field.name} takes true or false`);
      return raw === 'true';
    case 'timestamp': {
      const d = new Date(raw);
      // PostgreSQL has no year 0, and years past 9999 do not round-trip through toISOString.
      const year = d.getUTCFullYear();
      if (!/^\d{4}-\d{2}-\d{2}/.test(raw) || Number.isNaN(d.getTime()) || year < 1 || year > 9999) throw bad(`${field.name} takes an RFC 3339 timestamp`);
      return d.toISOString();
    }
    default:
      if ((field.name === 'id' || field.name === 'ownerId') && !UUID.test(raw)) throw bad(`${field.name} takes a UUID`);
      return raw;
  }
}

interface CursorBody {
  s: string;
  v: unknown;
  id: string;
}

export const encodeCursor = (c: CursorBody): string => Buffer.from(JSON.stringify(c)).toString('base64url');

/** The cursor's position: the sort value (normalised, as a bind value) and the id. */
function decodeCursor(raw: string, sortKey: string, field: FieldRef): { value: unknown; id: string } {
  const invalid = new LeveeError('invalid_cursor');
  // Sort values are at most MAX_INDEXED_TEXT_BYTES (enforced on write), so any cursor we issued fits.
  if (raw.length > 4 * MAX_INDEXED_TEXT_BYTES + 256 || !/^[A-Za-z0-9_-]+$/.test(raw)) throw invalid;
  let c: Partial<CursorBody>;
  try {
    c = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as Partial<CursorBody>;
  } catch {
    throw invalid;
  }
  if (typeof c !== 'object' || c === null || typeof c.id !== 'string' || !UUID.test(c.id)) throw invalid;
  if (c.s !== sortKey) throw new LeveeError('invalid_cursor', 'The cursor belongs to a different sort order');
  const expected = field.type === 'number' ? 'number' : field.type === 'boolean' ? 'boolean' : 'string';
  if (typeof c.v !== expected) throw invalid;
  try {
    // Normalised, not raw: Date parses forms PostgreSQL does not (e.g. "2020-02-30").
    return { value: parseValue(field, String(c.v)), id: c.id };
  } catch {
    throw invalid;
  }
}

export function parseListQuery(c: CollectionConfig, query: Record<string, unknown>): ListQuery {
  const where: string[] = [];
  const params: unknown[] = [];
  const param = (v: unknown, field: FieldRef) => {
    params.push(v);
    // id and ownerId are uuid columns: a text parameter would not compare with them.
    const cast = field.name === 'id' || field.name === 'ownerId' ? 'uuid' : castOf(field.type);
    return `$${params.length}::${cast}`;
  };

  for (const [key, value] of Object.entries(query)) {
    if (RESERVED.has(key)) continue;
    const m = KEY.exec(key);
    if (!m) throw bad(`${JSON.stringify(key.slice(0, 64))} is not a filter (field or field[op])`);
    const field = queryableField(c, m[1]!);
    if (!field) throw bad(`${m[1]} is not an indexed field of ${c.name}; declare it in the collection's indexes to filter on it`);
    const op = (m[2] ?? 'eq') as Op;
    if (!(op in OPS)) throw bad(`Unknown operator ${m[2]} (use ${Object.keys(OPS).join(', ')})`);
    const values = Array.isArray(value) ? value : [value];
    for (const v of values) {
      if (typeof v !== 'string') throw bad(`Bad value for ${key}`);
      if (op === 'in') {
        const items = v.split(',');
        if (items.length > 100) throw bad(`${key} takes at most 100 values`);
        where.push(`${field.sql} IN (${items.map((i) => param(parseValue(field, i), field)).join(', ')})`);
      } else {
        where.push(`${field.sql} ${OPS[op]} ${param(parseValue(field, v), field)}`);
      }
    }
  }

  const sortRaw = query.sort ?? '-createdAt';
  if (typeof sortRaw !== 'string' || !/^-?[A-Za-z_][A-Za-z0-9_]{0,39}$/.test(sortRaw)) throw bad('sort takes one field name, prefixed with - for descending');
  const desc = sortRaw.startsWith('-');
  const sortField = queryableField(c, desc ? sortRaw.slice(1) : sortRaw);
  if (!sortField) throw bad(`Cannot sort on ${sortRaw.replace(/^-/, '')}: it is not an indexed field of ${c.name}`);
  // Keyset pagination needs a value to compare: documents lacking a data sort field are left out.
  if (sortField.nullable) where.push(`${sortField.sql} IS NOT NULL`);

  let limit = DEFAULT_LIMIT;
  if (query.limit !== undefined) {
    const l = typeof query.limit === 'string' && /^\d{1,4}$/.test(query.limit) ? Number(query.limit) : NaN;
    if (!(l >= 1 && l <= MAX_LIMIT)) throw bad(`limit takes a number from 1 to ${MAX_LIMIT}`);
    limit = l;
  }

  if (query.cursor !== undefined) {
    if (typeof query.cursor !== 'string') throw new LeveeError('invalid_cursor');
    const cur = decodeCursor(query.cursor, sortRaw, sortField);
    where.push(`(${sortField.sql}, id) ${desc ? '<' : '>'} (${param(cur.value, sortField)}, ${param(cur.id, queryableField(c, 'id')!)})`);
  }

  const dir = desc ? 'DESC' : 'ASC';
  return { where, params, orderBy: `${sortField.sql} ${dir}, id ${dir}`, limit, sort: { field: sortField, desc, key: sortRaw } };
}

/** The cursor that continues after `doc`. */
export function cursorAfter(q: ListQuery, doc: { id: string; sortValue: unknown }): string {
  const v = doc.sortValue instanceof Date ? doc.sortValue.toISOString() : q.sort.field.type === 'number' ? Number(doc.sortValue) : doc.sortValue;
  return encodeCursor({ s: q.sort.key, v, id: doc.id });
}
