import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Type } from 'typebox';
import type { Files, Resolved } from '../../files/index.js';
import type { FileRow } from '../../files/store.js';
import { LeveeError } from '../../lib/errors.js';
import { ifNoneMatch, requestedRange } from '../byte-ranges.js';
import { requirePrincipal } from '../principal.js';
import { sendProblem } from '../problem.js';
import { problems } from '../schemas.js';
import { createTusBridge, parseUploadChecksum, receiveVerified, type TusAnswer } from '../tus-bridge.js';

// Files over HTTP (docs/media.md): resumable uploads (tus 1.0) at /v1/files/uploads, a one-shot
// upload for small files, metadata, and delivery made for CDNs. The work is in src/files/; the
// tus plumbing in ../tus-bridge.ts.
//
// Admission: uploads and downloads move bytes at the client's pace, for seconds or minutes. Holding
// an admission slot that long would starve short requests and teach the adaptive limit that the
// server is slow, so these routes take no slot; each group has a bound of its own (requests in
// flight per process), refused with 503 before any work when full — like the sign-in bulkhead.
// A tus PATCH is bounded by an idle timeout (no byte for UPLOAD_IDLE_MS) rather than a deadline,
// and is exempt from the server's whole-request timeout, so a slow network only makes it slow.

const tags = ['files'];
const secured = [{ bearer: [] }];

export const UPLOADS_IN_FLIGHT = 256;
export const DOWNLOADS_IN_FLIGHT = 2048;
export const UPLOAD_IDLE_MS = 60_000;
const ONE_SHOT_DEADLINE_MS = 120_000;

/** Requests of one kind in flight in this process; the admission gate refuses past `max`. */
function inFlight(max: number) {
  let n = 0;
  return {
    saturated: () => n >= max,
    enter(res: ServerResponse) {
      n++;
      res.once('close', () => n--);
    },
  };
}

const FileState = Type.Union([Type.Literal('uploading'), Type.Literal('processing'), Type.Literal('ready'), Type.Literal('failed')]);
const FileView = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    bucket: Type.String(),
    contentType: Type.String(),
    size: Type.Number(),
    state: FileState,
    failureReason: Type.Union([Type.String(), Type.Null()]),
    visibility: Type.Union([Type.Literal('public'), Type.Literal('private')]),
    createdAt: Type.String({ format: 'date-time' }),
    urls: Type.Record(Type.String(), Type.String(), { description: 'URL per variant (and `original`) you may fetch; empty until ready. Private URLs are signed and short-lived.' }),
    variants: Type.Record(Type.String(), Type.Object({ width: Type.Number(), height: Type.Number(), size: Type.Number(), contentType: Type.String() })),
  },
  { $id: 'FileView' },
);
const IdParams = Type.Object({ id: Type.String({ format: 'uuid' }) });
const TusHeaders = Type.Object({ 'tus-resumable': Type.Optional(Type.String({ description: '1.0.0' })) });

export interface FileRouteDeps {
  files: Files;
  /** On shutdown, uploads still streaming are cut this long after closing starts (they resume elsewhere). */
  shutdownGraceMs?: number | undefined;
}

/**
 * Node's server cuts any request whose body has not fully arrived after `requestTimeout` (30 s,
 * app.ts). A tus chunk on a slow network may take longer: its connection is taken off that check
 * (it is bounded by the idle timeout instead) for this one request. Node adds it back when the
 * next request on the connection begins. Uses an internal of node:http (guarded: without it, the
 * 30 s cut stays and clients resume from the bytes that arrived).
 */
function exemptFromRequestTimeout(req: FastifyRequest, active: Set<Socket>) {
  const socket = req.raw.socket as (Socket & { parser?: { remove?: () => void } }) | null;
  if (!socket || typeof socket.parser?.remove !== 'function') return;
  socket.parser.remove();
  active.add(socket);
  req.raw.once('end', () => active.delete(socket));
  socket.once('close', () => active.delete(socket));
}

/** No byte for `ms`: the client is gone or stuck; end the request (the bytes that arrived are kept). */
function idleTimeout(req: FastifyRequest, ms: number) {
  if (typeof req.raw.setTimeout !== 'function' || !req.raw.socket) return;
  req.raw.setTimeout(ms, () => req.raw.destroy(new Error('upload idle')));
  req.raw.once('end', () => req.raw.socket?.setTimeout(0));
}

/** `Content-Digest: sha-256=:<b64>:` (RFC 9530) or `Digest: sha-256=<b64>` (RFC 3230) as hex. */
function bodySha256(req: FastifyRequest): string | undefined {
  const h = req.headers['content-digest'] ?? req.headers.digest;
  if (h === undefined) return undefined;
  const m = /(?:^|,)\s*sha-256=:?([A-Za-z0-9+/]{43}=):?\s*(?:,|$)/i.exec(String(h));
  if (!m) throw new LeveeError('bad_request', 'Content-Digest must carry sha-256=:<base64>: (or Digest: sha-256=<base64>)');
  return Buffer.from(m[1]!, 'base64').toString('hex');
}

export const fileRoutes = (deps: FileRouteDeps): FastifyPluginAsyncTypebox => async (app) => {
  const { files } = deps;
  const tus = createTusBridge(files);
  const uploads = inFlight(UPLOADS_IN_FLIGHT);
  const downloads = inFlight(DOWNLOADS_IN_FLIGHT);
  const streaming = new Set<Socket>();
  app.addSchema(FileView);

  // Bodies here are bytes: nothing is parsed, tus and the one-shot upload read the request stream.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, _payload, done) => done(null));

  app.addHook('preClose', (done) => {
    if (streaming.size > 0) {
      const t = setTimeout(() => {
        for (const s of streaming) s.destroy();
      }, deps.shutdownGraceMs ?? 10_000);
      t.unref();
    }
    done();
  });

  const view = (row: FileRow, viewer: string | undefined) => files.delivery.view(row, viewer);

  /** The caller's own upload (anyone else's is 404, like a missing one). */
  async function ownUpload(req: FastifyRequest, id: string): Promise<{ userId: string; row: FileRow }> {
    const { userId } = requirePrincipal(req);
    const row = await files.service.get(id, userId).catch(() => undefined);
    if (!row || row.owner_id !== userId) throw new LeveeError('file_not_found');
    return { userId, row };
  }

  /** Failed files answer as completion did (415 for a lying type), the rest are gone. */
  const failedError = (row: FileRow) => new LeveeError(row.failure_reason === 'file_type_mismatch' ? 'file_type_mismatch' : 'file_not_found', row.failure_reason ?? undefined);

  function answer(reply: FastifyReply, a: TusAnswer) {
    reply.headers(a.headers);
    reply.header('tus-resumable', '1.0.0');
    if (a.problem) return sendProblem(a.problem, reply.request, reply);
    return reply.code(a.status).send();
  }

  const uploadRoute = { bulkhead: uploads, deadlineMs: ONE_SHOT_DEADLINE_MS } as const;

  // — tus —
  for (const url of ['/uploads', '/uploads/:id']) {
    app.options(url, { config: { priority: 'default' }, schema: { tags, summary: 'tus discovery: versions, extensions, largest size, checksum algorithms', response: { 204: Type.Null() } } }, async (req, reply) =>
      answer(reply, await tus.run(req.raw, '')),
    );
  }

  app.post('/uploads', {
    config: uploadRoute,
    schema: {
      tags,
      security: secured,
      summary: 'tus creation: Upload-Length and Upload-Metadata (bucket, filetype, filename) → 201 with Location /v1/files/uploads/{id} ({id} is the file id)',
      headers: TusHeaders,
      response: { 201: Type.Null(), 204: Type.Null(), ...problems(400, 401, 404, 409, 413, 415, 460, 503) },
    },
  }, async (req, reply) => {
    const { userId } = requirePrincipal(req);
    uploads.enter(reply.raw);
    exemptFromRequestTimeout(req, streaming);
    idleTimeout(req, UPLOAD_IDLE_MS);
    const a = await tus.run(req.raw, userId);
    // A creation that failed after its row was inserted leaves nothing behind.
    if (a.problem && a.createdFileId && a.problem.code !== 'file_type_mismatch') await files.service.remove(a.createdFileId, userId).catch(() => {});
    return answer(reply, a);
  });

  app.head('/uploads/:id', {
    config: { priority: 'critical' },
    schema: { tags, security: secured, summary: 'tus: the offset to resume from (Upload-Offset) and the length', params: IdParams, headers: TusHeaders },
  }, async (req, reply) => {
    const { userId, row } = await ownUpload(req, req.params.id);
    if (row.state === 'failed') throw failedError(row);
    reply.header('cache-control', 'no-store');
    if (row.state !== 'uploading') {
      // Complete (its tus record is gone): every byte is here.
      return answer(reply, { status: 200, headers: { 'upload-offset': String(row.size), 'upload-length': String(row.size) } });
    }
    const a = await tus.run(req.raw, userId);
    // Every byte arrived but completing failed (storage trouble): a resuming client asks here, so
    // complete now rather than leave the file `uploading` for good. On S3 what failed may be the
    // store's own completion of the multipart upload: finishStored does it first.
    if (!a.problem && a.headers['upload-offset'] !== undefined && a.headers['upload-offset'] === a.headers['upload-length']) {
      await tus.finishStored(row.id);
      await files.service.completeUpload(row.id);
    }
    return answer(reply, a);
  });

  app.patch('/uploads/:id', {
    config: uploadRoute,
    schema: {
      tags,
      security: secured,
      summary: 'tus: append a chunk at Upload-Offset (Content-Type: application/offset+octet-stream; optional Upload-Checksum: sha1|sha256 <base64>)',
      params: IdParams,
      headers: TusHeaders,
      response: { 204: Type.Null(), ...problems(400, 401, 404, 409, 413, 415, 460, 503) },
    },
  }, async (req, reply) => {
    const { userId, row } = await ownUpload(req, req.params.id);
    if (row.state === 'failed') throw failedError(row);
    if (row.state !== 'uploading') {
      if (req.headers['upload-offset'] === String(row.size)) return answer(reply, { status: 204, headers: { 'upload-offset': String(row.size) } });
      throw new LeveeError('upload_offset_mismatch', 'The upload is complete', { extra: { offset: row.size } });
    }
    uploads.enter(reply.raw);
    exemptFromRequestTimeout(req, streaming);
    idleTimeout(req, UPLOAD_IDLE_MS);
    const checksum = parseUploadChecksum(req.headers['upload-checksum'] as string | undefined);
    const body = checksum ? await receiveVerified(req.raw, checksum, row.size) : undefined;
    const a = await tus.run(req.raw, userId, body);
    // More bytes than declared: the upload is refused as a whole (nothing kept, quota freed).
    if (a.problem?.code === 'file_too_large') await files.service.remove(row.id, userId).catch(() => {});
    return answer(reply, a);
  });

  app.delete('/uploads/:id', {
    schema: { tags, security: secured, summary: 'tus termination: abandon an upload (its bytes are deleted, its quota freed)', params: IdParams, headers: TusHeaders, response: { 204: Type.Null(), ...problems(400, 401, 404) } },
  }, async (req, reply) => {
    const { userId } = await ownUpload(req, req.params.id);
    await files.service.remove(req.params.id, userId);
    return reply.header('tus-resumable', '1.0.0').code(204).send(null);
  });

  // — one-shot upload —
  app.post('/', {
    config: uploadRoute,
    schema: {
      tags,
      security: secured,
      summary: 'Upload a small file in one request: the raw bytes as the body, their type as Content-Type (optional Content-Digest: sha-256=:<base64>:)',
      querystring: Type.Object({ bucket: Type.String({ minLength: 1, maxLength: 64 }) }),
      response: { 201: Type.Ref('FileView'), ...problems(400, 401, 404, 411, 413, 415, 460, 503) },
    },
  }, async (req, reply) => {
    const { userId } = requirePrincipal(req);
    const length = req.headers['content-length'];
    if (length === undefined || !/^\d{1,15}$/.test(length)) throw new LeveeError('bad_request', 'Content-Length is required (for larger or streamed files use the resumable upload)');
    const contentType = (req.headers['content-type'] ?? '').split(';', 1)[0]!.trim().toLowerCase();
    if (!contentType) throw new LeveeError('bad_request', 'Content-Type must give the file type');
    const sha256 = bodySha256(req);
    uploads.enter(reply.raw);
    const row = await files.service.uploadOneShot({ ownerId: userId, bucket: req.query.bucket, contentType, size: Number(length), body: req.raw, sha256 });
    return reply.code(201).header('location', `/v1/files/${row.id}`).send(view(row, userId));
  });

  // — metadata —
  app.get('/', {
    schema: {
      tags,
      security: secured,
      summary: 'Your files, newest first (failed ones are left out)',
      querystring: Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })), before: Type.Optional(Type.String({ format: 'uuid', description: 'The last id of the previous page' })) }),
      response: { 200: Type.Object({ items: Type.Array(Type.Ref('FileView')), next: Type.Union([Type.String(), Type.Null()]) }), ...problems(400, 401) },
    },
  }, async (req) => {
    const { userId } = requirePrincipal(req);
    const limit = req.query.limit ?? 50;
    const rows = await files.service.list(userId, limit, req.query.before);
    return { items: rows.map((r) => view(r, userId)), next: rows.length === limit ? rows[rows.length - 1]!.id : null };
  });

  app.get('/:id', {
    schema: { tags, security: secured, summary: 'A file: its state (uploading, processing, ready, failed) and the URLs you may fetch', params: IdParams, response: { 200: Type.Ref('FileView'), ...problems(400, 401, 404) } },
  }, async (req, reply) => {
    const viewer = req.principal?.userId;
    const row = await files.service.get(req.params.id, viewer);
    // Signed URLs in it expire: the view itself must not be cached for long.
    reply.header('cache-control', 'private, no-cache');
    return view(row, viewer);
  });

  app.delete('/:id', {
    schema: { tags, security: secured, summary: 'Delete a file (yours; admins any), its variants and bytes', params: IdParams, response: { 204: Type.Null(), ...problems(400, 401, 404) } },
  }, async (req, reply) => {
    const p = requirePrincipal(req);
    await files.service.remove(req.params.id, p.userId, { asAdmin: p.role === 'admin' });
    return reply.code(204).send(null);
  });

  // — delivery —
  /** Headers first (a 304 or a redirect costs one row read), then the bytes, whole or a range. */
  async function deliver(req: FastifyRequest, reply: FastifyReply, r: Resolved) {
    reply.header('cache-control', r.cacheControl);
    if (r.redirect) return reply.code(302).header('location', r.redirect).send();
    reply.header('etag', r.etag).header('accept-ranges', 'bytes').header('x-content-type-options', 'nosniff').header('content-security-policy', "default-src 'none'; sandbox");
    if (ifNoneMatch(req.headers['if-none-match'], r.etag)) return reply.code(304).send();
    let range;
    try {
      range = requestedRange(req.headers.range, req.headers['if-range'] as string | undefined, r.etag, r.size);
    } catch (e) {
      reply.header('content-range', `bytes */${r.size}`);
      throw e;
    }
    reply.type(r.contentType);
    if (range) reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${r.size}`);
    reply.header('content-length', String(range ? range.end - range.start + 1 : r.size));
    if (req.method === 'HEAD') return reply.send();
    const got = await files.delivery.open(r, range);
    return reply.send(got.body);
  }

  const download = { bulkhead: downloads } as const;
  const publicGet = async (req: FastifyRequest<{ Params: { '*': string } }>, reply: FastifyReply) => {
    downloads.enter(reply.raw);
    return deliver(req, reply, await files.delivery.resolvePublic(req.params['*']));
  };
  const publicSchema = {
    tags,
    summary: 'A public file by its content-addressed key: immutable (Cache-Control: public, max-age=31536000, immutable), strong ETag, 304, Range',
    params: Type.Object({ '*': Type.String({ maxLength: 200 }) }),
    response: { ...problems(404, 416) },
  };
  app.get('/public/*', { exposeHeadRoute: false, config: download, schema: publicSchema }, publicGet);
  app.head('/public/*', { config: download, schema: { ...publicSchema, hide: true } }, publicGet);

  const SignedParams = Type.Object({ id: Type.String({ format: 'uuid' }), variant: Type.String({ pattern: '^[a-z][a-z0-9-]{0,31}$' }) });
  const SignedQuery = Type.Object({ expires: Type.Optional(Type.String({ maxLength: 20 })), sig: Type.Optional(Type.String({ maxLength: 100 })) });
  const signedGet = async (req: FastifyRequest<{ Params: { id: string; variant: string }; Querystring: { expires?: string; sig?: string } }>, reply: FastifyReply) => {
    downloads.enter(reply.raw);
    return deliver(req, reply, await files.delivery.resolveSigned(req.params.id, req.params.variant, req.query.expires, req.query.sig));
  };
  const signedSchema = {
    tags,
    summary: 'A private file through a signed, short-lived URL (from the file view): streamed with ETag and Range, or a 302 to a presigned S3 URL',
    params: SignedParams,
    querystring: SignedQuery,
    response: { ...problems(400, 403, 404, 416) },
  };
  app.get('/:id/:variant', { exposeHeadRoute: false, config: download, schema: signedSchema }, signedGet);
  app.head('/:id/:variant', { config: download, schema: { ...signedSchema, hide: true } }, signedGet);
};
