import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import type { Principal } from '../auth/access-tokens.js';
import { SYSTEM_FIELDS, type CollectionConfig } from '../config/collections.js';
import type { Db, Queryable } from '../db/port.js';
import type { Clock } from '../lib/clock.js';
import { LeveeError } from '../lib/errors.js';
import { newId, UUID } from '../lib/ids.js';
import { canRead, checkChange, checkCreate, readScope } from './access.js';
import { cursorAfter, MAX_INDEXED_TEXT_BYTES, parseListQuery } from './list-query.js';
import { documents, type DocumentRow } from './store.js';

export interface PublicDocument {
  id: string;
  ownerId: string | null;
  version: number;
  createdAt: string;
  updatedAt: string;
  data: Record<string, unknown>;
}

export const toDocument = (r: DocumentRow): PublicDocument => ({
  id: r.id,
  ownerId: r.owner_id,
  version: r.version,
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
  data: r.data,
});

type JsonObject = Record<string, unknown>;

/** RFC 7396 JSON Merge Patch: null deletes a member, objects merge, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const out: JsonObject = typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...(target as JsonObject) } : {};
  for (const [k, v] of Object.entries(patch as JsonObject)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** Values of indexed data fields must fit a btree index entry (else PostgreSQL refuses the row). */
function checkIndexedValues(c: CollectionConfig, data: JsonObject): void {
  for (const f of c.indexes) {
    if (SYSTEM_FIELDS[f.name] || !Object.hasOwn(data, f.name)) continue;
    const value = data[f.name];
    const bytes = Buffer.byteLength(typeof value === 'string' ? value : JSON.stringify(value));
    if (bytes > MAX_INDEXED_TEXT_BYTES) {
      throw new LeveeError('document_invalid', `${f.name} is an indexed field: at most ${MAX_INDEXED_TEXT_BYTES} bytes (this one is ${bytes})`, {
        extra: { errors: [{ path: `/${f.name}`, message: 'too long for an indexed field' }] },
      });
    }
  }
}

export interface WriteOptions {
  /** Version from If-Match; the write fails with 412 if the document has moved on. */
  ifMatch?: number | undefined;
  /** Run inside this transaction (e.g. the idempotency record's). */
  tx?: Queryable | undefined;
  /** The new document's id, chosen by the client (offline sync); a new UUIDv7 otherwise. */
  id?: string | undefined;
}

export function createDocumentService(deps: { db: Db; clock: Clock; collections: Map<string, CollectionConfig> }) {
  const { db, clock } = deps;
  const ajv = new Ajv({ allErrors: true, strict: false });
  addFormats.default(ajv);
  const validators = new Map<string, ValidateFunction>();
  for (const c of deps.collections.values()) if (c.schema) validators.set(c.name, ajv.compile(c.schema));

  const collection = (name: string): CollectionConfig => {
    const c = deps.collections.get(name);
    if (!c) throw new LeveeError('unknown_collection', `There is no collection named ${JSON.stringify(name.slice(0, 64))}`);
    return c;
  };
  const checkId = (id: string) => {
    if (!UUID.test(id)) throw new LeveeError('document_not_found');
  };
  const validate = (c: CollectionConfig, data: unknown): JsonObject => {
    if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new LeveeError('document_invalid', 'A document is a JSON object');
    const size = Buffer.byteLength(JSON.stringify(data));
    if (size > c.maxDocumentBytes) throw new LeveeError('payload_too_large', `A ${c.name} document is at most ${c.maxDocumentBytes} bytes (this one is ${size})`);
    checkIndexedValues(c, data as JsonObject);
    const v = validators.get(c.name);
    if (v && !v(data)) {
      const errors = (v.errors ?? []).slice(0, 20);
      throw new LeveeError('document_invalid', ajv.errorsText(errors, { dataVar: 'document' }), {
        extra: { errors: errors.map((e) => ({ path: e.instancePath || '/', message: e.message })) },
      });
    }
    return data as JsonObject;
  };
  const inTx = <T>(tx: Queryable | undefined, fn: (q: Queryable) => Promise<T>) => (tx ? fn(tx) : db.transaction(fn));

  /** Loads a document for a change, enforcing existence, rules and If-Match. */
  async function lockForChange(q: Queryable, c: CollectionConfig, id: string, p: Principal | undefined, ifMatch: number | undefined) {
    checkId(id);
    const row = await documents.get(q, c.name, id, true);
    if (!row || !canRead(c.read, p, row.owner_id)) throw new LeveeError('document_not_found');
    checkChange(c.write, p, row.owner_id);
    if (ifMatch !== undefined && ifMatch !== row.version) {
      throw new LeveeError('version_conflict', `The document is at version ${row.version}, not ${ifMatch}`, { extra: { currentVersion: row.version } });
    }
    return row;
  }

  return {
    collection,

    async list(name: string, p: Principal | undefined, query: Record<string, unknown>) {
      const c = collection(name);
      const { ownerOnly } = readScope(c.read, p);
      const lq = parseListQuery(c, query);
      const rows = await documents.list(db, c.name, lq, ownerOnly);
      const page = rows.slice(0, lq.limit);
      const last = page.at(-1);
      return {
        items: page.map(toDocument),
        nextCursor: rows.length > lq.limit && last ? cursorAfter(lq, { id: last.id, sortValue: last.sort_value }) : null,
      };
    },

    async get(name: string, id: string, p: Principal | undefined): Promise<PublicDocument> {
      const c = collection(name);
      readScope(c.read, p);
      checkId(id);
      const row = await documents.get(db, c.name, id);
      if (!row || !canRead(c.read, p, row.owner_id)) throw new LeveeError('document_not_found');
      return toDocument(row);
    },

    async create(name: string, p: Principal | undefined, data: unknown, opts: WriteOptions = {}): Promise<PublicDocument> {
      const c = collection(name);
      checkCreate(c.write, p);
      const body = validate(c, data);
      if (opts.id !== undefined && !UUID.test(opts.id)) throw new LeveeError('document_invalid', 'A document id is a UUID');
      // A single INSERT is atomic on its own: no transaction unless the caller's (idempotency) one.
      const row = await documents.insert(opts.tx ?? db, c.name, { id: opts.id ?? newId(), ownerId: p?.userId ?? null, data: body, now: clock.now() });
      if (!row) throw new LeveeError('document_exists', `A ${c.name} document with id ${opts.id} already exists`);
      return toDocument(row);
    },

    async replace(name: string, id: string, p: Principal | undefined, data: unknown, opts: WriteOptions = {}): Promise<PublicDocument> {
      const c = collection(name);
      checkCreate(c.write, p);
      const body = validate(c, data);
      return inTx(opts.tx, async (q) => {
        await lockForChange(q, c, id, p, opts.ifMatch);
        return toDocument(await documents.update(q, c.name, id, body, clock.now()));
      });
    },

    async patch(name: string, id: string, p: Principal | undefined, patch: unknown, opts: WriteOptions = {}): Promise<PublicDocument> {
      const c = collection(name);
      checkCreate(c.write, p);
      if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) throw new LeveeError('document_invalid', 'A patch is a JSON object (RFC 7396 merge patch)');
      return inTx(opts.tx, async (q) => {
        const row = await lockForChange(q, c, id, p, opts.ifMatch);
        const body = validate(c, mergePatch(row.data, patch));
        return toDocument(await documents.update(q, c.name, id, body, clock.now()));
      });
    },

    /** Deletes a document; returns the version it had. */
    async remove(name: string, id: string, p: Principal | undefined, opts: WriteOptions = {}): Promise<number> {
      const c = collection(name);
      checkCreate(c.write, p);
      return inTx(opts.tx, async (q) => {
        const row = await lockForChange(q, c, id, p, opts.ifMatch);
        await documents.delete(q, c.name, id);
        return row.version;
      });
    },
  };
}

export type DocumentService = ReturnType<typeof createDocumentService>;
