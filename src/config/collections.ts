import { Ajv } from 'ajv';
import { badValue, isBadValue } from './settings.js';

// The `collections` section of the config file:
//   { "posts": { "read": "public", "write": "owner", "indexes": ["createdAt"], "schema": {…} } }
// read/write rules: public (anyone, even without a token), authenticated (any signed-in user,
// anonymous accounts included), owner (reads: only the owner's documents; writes: anyone signed in
// may create, only the owner may change), admin (users with the admin role).
// conflict: server-wins (default) or last-write-wins, for offline writes (see docs/sync.md).

export const ACCESS_RULES = ['public', 'authenticated', 'owner', 'admin'] as const;
export type AccessRule = (typeof ACCESS_RULES)[number];
export type FieldType = 'text' | 'number' | 'boolean' | 'timestamp';

const SYSTEM_FIELD_LIST: Record<string, { column: string; type: FieldType }> = {
  id: { column: 'id', type: 'text' },
  ownerId: { column: 'owner_id', type: 'text' },
  createdAt: { column: 'created_at', type: 'timestamp' },
  updatedAt: { column: 'updated_at', type: 'timestamp' },
};
/** Fields every document has, stored as columns rather than in `data`. A null-prototype object,
 *  so names like `constructor` or `__proto__` do not look like system fields. */
export const SYSTEM_FIELDS: Record<string, { column: string; type: FieldType } | undefined> = Object.assign(Object.create(null) as object, SYSTEM_FIELD_LIST);

export interface IndexedField {
  name: string;
  type: FieldType;
}

export interface CollectionConfig {
  name: string;
  read: AccessRule;
  write: AccessRule;
  /** Fields with a real index: the only fields lists may filter and sort on. */
  indexes: IndexedField[];
  /** JSON Schema the document body must satisfy, if declared. */
  schema?: Record<string, unknown>;
  /** Largest document body, in bytes of JSON. */
  maxDocumentBytes: number;
  /** How an offline write based on an old version is settled (see docs/sync.md). */
  conflict: ConflictPolicy;
}

export const CONFLICT_POLICIES = ['server-wins', 'last-write-wins'] as const;
export type ConflictPolicy = (typeof CONFLICT_POLICIES)[number];

export const COLLECTION_NAME = /^[a-z][a-z0-9_]{0,39}$/;
export const FIELD_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,39}$/;
const KEYS = new Set(['read', 'write', 'indexes', 'schema', 'maxDocumentBytes', 'conflict']);

function fieldTypeFromSchema(schema: Record<string, unknown> | undefined, field: string): FieldType {
  const prop = (schema?.properties as Record<string, { type?: unknown; format?: unknown }> | undefined)?.[field];
  if (prop?.type === 'number' || prop?.type === 'integer') return 'number';
  if (prop?.type === 'boolean') return 'boolean';
  return 'text';
}

const rule = (v: unknown, dflt: AccessRule, what: string): AccessRule => {
  if (v === undefined) return dflt;
  return (ACCESS_RULES as readonly unknown[]).includes(v) ? (v as AccessRule) : badValue(`${what} must be one of ${ACCESS_RULES.join(', ')}, got ${JSON.stringify(v)}`);
};

/**
 * Parses the `collections` object; throws a BadValue whose message names the exact key, one line
 * per bad collection (so every bad collection is reported at once).
 */
export function parseCollections(raw: unknown): Map<string, CollectionConfig> {
  const out = new Map<string, CollectionConfig>();
  if (raw === undefined) return out;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return badValue('must be an object of collection name → definition');
  // One compiler per parse, not per process: Ajv remembers every schema's $id, so a module-level
  // one refused the same config parsed a second time ("schema with key or id … already exists").
  const ajv = new Ajv({ strict: false });
  const problems: string[] = [];
  for (const [name, def] of Object.entries(raw)) {
    try {
      out.set(name, parseCollection(ajv, name, def));
    } catch (e) {
      if (!isBadValue(e)) throw e;
      problems.push(e.message);
    }
  }
  if (problems.length > 0) badValue(problems.join('\n'));
  return out;
}

function parseCollection(ajv: Ajv, name: string, def: unknown): CollectionConfig {
  const at = `collections.${name}`;
  if (!COLLECTION_NAME.test(name)) badValue(`${at}: a collection name is lowercase letters, digits and _, starting with a letter (max 40)`);
  if (typeof def !== 'object' || def === null || Array.isArray(def)) badValue(`${at} must be an object`);
  const d = def as Record<string, unknown>;
  for (const k of Object.keys(d)) if (!KEYS.has(k)) badValue(`${at}.${k} is not a known key (known: ${[...KEYS].join(', ')})`);
  let schema: Record<string, unknown> | undefined;
  if (d.schema !== undefined) {
    if (typeof d.schema !== 'object' || d.schema === null) badValue(`${at}.schema must be a JSON Schema object`);
    schema = d.schema as Record<string, unknown>;
    try {
      ajv.compile(schema);
    } catch (e) {
      badValue(`${at}.schema is not a valid JSON Schema: ${(e as Error).message}`);
    }
  }
  const idx = d.indexes ?? [];
  if (!Array.isArray(idx)) badValue(`${at}.indexes must be an array of field names`);
  const indexes: IndexedField[] = [];
  for (const f of idx as unknown[]) {
    if (typeof f !== 'string' || !FIELD_NAME.test(f)) badValue(`${at}.indexes: ${JSON.stringify(f)} is not a valid field name`);
    const name = f as string;
    if (indexes.some((i) => i.name === name)) continue;
    indexes.push({ name, type: SYSTEM_FIELDS[name]?.type ?? fieldTypeFromSchema(schema, name) });
  }
  const maxBytes = d.maxDocumentBytes ?? 65_536;
  if (typeof maxBytes !== 'number' || !Number.isInteger(maxBytes) || maxBytes < 64 || maxBytes > 1_048_576) {
    badValue(`${at}.maxDocumentBytes must be a whole number between 64 and 1048576`);
  }
  const conflict = d.conflict ?? 'server-wins';
  if (!(CONFLICT_POLICIES as readonly unknown[]).includes(conflict)) badValue(`${at}.conflict must be one of ${CONFLICT_POLICIES.join(', ')}, got ${JSON.stringify(conflict)}`);
  return {
    name,
    conflict: conflict as ConflictPolicy,
    read: rule(d.read, 'authenticated', `${at}.read`),
    write: rule(d.write, 'owner', `${at}.write`),
    indexes,
    ...(schema ? { schema } : {}),
    maxDocumentBytes: maxBytes as number,
  };
}
