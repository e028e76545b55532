import { createHash } from 'node:crypto';
import { SYSTEM_FIELDS, type CollectionConfig, type FieldType, type IndexedField } from '../config/collections.js';

// How a document field is addressed in SQL. Index DDL and list queries both use `fieldSql`, so an
// expression index and the query that should use it are textually identical (the planner needs that).
// Field names reaching here have been checked against the collection's declared fields and match
// FIELD_NAME, so interpolating them is safe.

export interface FieldRef {
  name: string;
  type: FieldType;
  sql: string;
  /** A document may lack the field (data fields); system columns are never null. */
  nullable: boolean;
}

const CAST: Record<FieldType, string> = { text: 'text', number: 'numeric', boolean: 'boolean', timestamp: 'timestamptz' };
export const castOf = (t: FieldType): string => CAST[t];

export function fieldSql(f: IndexedField): string {
  const sys = SYSTEM_FIELDS[f.name];
  if (sys) return sys.column;
  if (f.type === 'number') return `(CASE WHEN jsonb_typeof(data->'${f.name}') = 'number' THEN (data->>'${f.name}')::numeric END)`;
  if (f.type === 'boolean') return `(CASE WHEN jsonb_typeof(data->'${f.name}') = 'boolean' THEN (data->>'${f.name}')::boolean END)`;
  return `(data->>'${f.name}')`;
}

/** The fields a list may filter or sort on: the declared indexes plus the always-indexed columns. */
export function queryableField(c: CollectionConfig, name: string): FieldRef | undefined {
  const declared = c.indexes.find((i) => i.name === name);
  const f: IndexedField | undefined = declared ?? (name === 'id' || name === 'ownerId' || name === 'createdAt' ? { name, type: SYSTEM_FIELDS[name]!.type } : undefined);
  if (!f) return undefined;
  // owner_id is the one nullable column: documents written under a public rule have no owner.
  return { name: f.name, type: f.type, sql: fieldSql(f), nullable: !SYSTEM_FIELDS[f.name] || f.name === 'ownerId' };
}

/**
 * The index's name: readable, plus a hash of what it indexes, so `user`.`profile_name` and
 * `user_profile`.`name` cannot collide, a changed field type gets a new index, and the name stays
 * within PostgreSQL's 63 bytes.
 */
export function indexName(c: CollectionConfig, f: IndexedField): string {
  const hash = createHash('sha1').update(`${c.name}\0${fieldSql(f)}`).digest('hex').slice(0, 8);
  return `doc_${c.name}_${f.name}`.slice(0, 54) + `_${hash}`;
}

/** Idempotent DDL for a collection's declared indexes: partial indexes, one per field. */
export function indexDdl(c: CollectionConfig): string[] {
  return c.indexes.map((f) => `CREATE INDEX IF NOT EXISTS "${indexName(c, f)}" ON documents (${fieldSql(f)}, id) WHERE collection = '${c.name}'`);
}
