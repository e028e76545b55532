import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { Db, Queryable } from '../../db/port.js';
import { fingerprint, idempotent, IDEMPOTENCY_KEY, type StoredResponse } from '../../data/idempotency.js';
import type { DocumentService, PublicDocument } from '../../data/service.js';
import type { Clock } from '../../lib/clock.js';
import { LeveeError } from '../../lib/errors.js';
import { Document, problems } from '../schemas.js';

const tags = ['documents'];
const Params = Type.Object({ collection: Type.String({ maxLength: 64 }) });
const DocParams = Type.Object({ collection: Type.String({ maxLength: 64 }), id: Type.String({ maxLength: 64 }) });
const Body = Type.Object({}, { additionalProperties: true, description: 'The document: any JSON object (validated by the collection schema if it has one)' });
const WriteHeaders = Type.Object({
  'if-match': Type.Optional(Type.String({ description: 'ETag from a read; the write fails with 412 if the document changed since' })),
  'idempotency-key': Type.Optional(Type.String({ description: 'Retry-safe key: a retried request replays the first response' })),
});
const ListQuery = Type.Object(
  {
    sort: Type.Optional(Type.String({ description: 'An indexed field, `-` for descending. Default `-createdAt`' })),
    limit: Type.Optional(Type.String({ description: '1–100, default 20' })),
    cursor: Type.Optional(Type.String({ description: 'nextCursor from the previous page' })),
  },
  { additionalProperties: Type.String(), description: 'Filters on indexed fields: `field=v`, `field[gt|gte|lt|lte|ne]=v`, `field[in]=a,b`' },
);

export const etagOf = (version: number): string => `"${version}"`;

/** Parses If-Match (`"3"`, `W/"3"`); `*` and absence mean "any version". */
function parseIfMatch(raw: unknown): number | undefined {
  if (raw === undefined || raw === '*') return undefined;
  const m = typeof raw === 'string' ? /^(?:W\/)?"(\d{1,9})"$/.exec(raw.trim()) : null;
  if (!m) throw new LeveeError('bad_request', 'If-Match must be an ETag from a read of this document, e.g. "3"');
  return Number(m[1]);
}

export const documentRoutes = (deps: { docs: DocumentService; db: Db; clock: Clock; onWrite?: (() => void) | undefined }): FastifyPluginAsyncTypebox => async (app) => {
  const { docs, db, clock, onWrite } = deps;

  // After a write's response is sent its transaction has committed (an Idempotency-Key write
  // commits after the handler returns): only then may realtime look for it. A replay wrote nothing.
  if (onWrite) {
    app.addHook('onResponse', async (req, reply) => {
      if (req.method !== 'GET' && req.method !== 'HEAD' && reply.statusCode < 300 && !reply.hasHeader('idempotent-replayed')) onWrite();
    });
  }

  /** Runs a write once per Idempotency-Key: a retry replays the stored first response. */
  async function writeOnce(req: FastifyRequest, reply: FastifyReply, run: (tx: Queryable | undefined) => Promise<StoredResponse>) {
    const key = req.headers['idempotency-key'];
    let res: StoredResponse;
    if (key === undefined) {
      res = await run(undefined);
    } else {
      if (typeof key !== 'string' || !IDEMPOTENCY_KEY.test(key)) throw new LeveeError('bad_request', 'Idempotency-Key must be 1–255 visible ASCII characters');
      const scope = req.principal ? `user:${req.principal.userId}` : `ip:${req.ip}`;
      const out = await idempotent(db, { scope, key, fingerprint: fingerprint(req.method, req.url, req.body ?? null), now: clock.now() }, run);
      if (out.replayed) reply.header('idempotent-replayed', 'true');
      res = out;
    }
    reply.code(res.status).headers(res.headers);
    return res.status === 204 ? reply.send() : reply.send(res.body);
  }
  const docResponse = (status: number, d: PublicDocument): StoredResponse => ({ status, headers: { etag: etagOf(d.version) }, body: d });

  app.get('/:collection/documents', {
    schema: { tags, summary: 'List documents: filters, sort and cursor pagination', params: Params, querystring: ListQuery, response: { 200: Type.Object({ items: Type.Array(Document), nextCursor: Type.Union([Type.String(), Type.Null()]) }), ...problems(400, 401, 403, 404) } },
  }, async (req) => docs.list(req.params.collection, req.principal, req.query as Record<string, unknown>));

  app.post('/:collection/documents', {
    schema: { tags, summary: 'Create a document (owned by the caller)', params: Params, headers: WriteHeaders, body: Body, response: { 201: Document, ...problems(400, 401, 403, 404, 413, 422) } },
  }, async (req, reply) =>
    writeOnce(req, reply, async (tx) => {
      const d = await docs.create(req.params.collection, req.principal, req.body, { tx });
      return { status: 201, headers: { etag: etagOf(d.version), location: `/v1/collections/${req.params.collection}/documents/${d.id}` }, body: d };
    }));

  app.get('/:collection/documents/:id', {
    schema: { tags, summary: 'Read a document (ETag; If-None-Match answers 304)', params: DocParams, response: { 200: Document, 304: Type.Null(), ...problems(401, 403, 404) } },
  }, async (req, reply) => {
    const d = await docs.get(req.params.collection, req.params.id, req.principal);
    const etag = etagOf(d.version);
    reply.header('etag', etag).header('cache-control', 'private, no-cache');
    if (req.headers['if-none-match'] === etag) return reply.code(304).send(null);
    return d;
  });

  app.put('/:collection/documents/:id', {
    schema: { tags, summary: 'Replace a document', params: DocParams, headers: WriteHeaders, body: Body, response: { 200: Document, ...problems(400, 401, 403, 404, 412, 413, 422) } },
  }, async (req, reply) =>
    writeOnce(req, reply, async (tx) => docResponse(200, await docs.replace(req.params.collection, req.params.id, req.principal, req.body, { tx, ifMatch: parseIfMatch(req.headers['if-match']) }))));

  app.patch('/:collection/documents/:id', {
    schema: { tags, summary: 'Update fields (JSON Merge Patch, RFC 7396: null removes a field)', params: DocParams, headers: WriteHeaders, body: Body, response: { 200: Document, ...problems(400, 401, 403, 404, 412, 413, 422) } },
  }, async (req, reply) =>
    writeOnce(req, reply, async (tx) => docResponse(200, await docs.patch(req.params.collection, req.params.id, req.principal, req.body, { tx, ifMatch: parseIfMatch(req.headers['if-match']) }))));

  app.delete('/:collection/documents/:id', {
    schema: { tags, summary: 'Delete a document', params: DocParams, headers: WriteHeaders, response: { 204: Type.Null(), ...problems(401, 403, 404, 412) } },
  }, async (req, reply) =>
    writeOnce(req, reply, async (tx) => {
      await docs.remove(req.params.collection, req.params.id, req.principal, { tx, ifMatch: parseIfMatch(req.headers['if-match']) });
      return { status: 204, headers: {}, body: null };
    }));
};
