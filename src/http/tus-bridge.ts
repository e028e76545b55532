import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Server as TusServer, type Upload } from '@tus/server';
import type { Files } from '../files/index.js';
import type { FileRow } from '../files/store.js';
import { isLeveeError, LeveeError } from '../lib/errors.js';
import { UUID } from '../lib/ids.js';
import { withOwnBudget } from '../protection/deadline.js';

// tus 1.0 (https://tus.io/protocols/resumable-upload) through @tus/server, behind Fastify.
//
// @tus/server 2.x speaks web Request/Response: each tus request is handed over as a web Request
// whose body streams from the Node request, and its Response comes back here to be answered by
// the route — errors as problem+json with Levee's codes instead of tus's plain text. What tus does
// not do itself is done around it:
// - Ownership: the route checks the upload's file row belongs to the caller before tus sees the
//   request (someone else's upload URL is 404 file_not_found, like a missing one).
// - Creation: `namingFunction` runs the files service's checks (bucket, type, size, quota) and
//   inserts the `uploading` row; its id is the upload's (`uploads/<file id>`).
// - Completion: `onUploadFinish` verifies the bytes (size, sniffed type) and moves them to their
//   content-addressed key (files.service.completeUpload), on a budget of its own: the PATCH that
//   carried the last byte may have taken longer than any request deadline.
// - The checksum extension (@tus/server has none): a PATCH with `Upload-Checksum: sha1|sha256 <b64>`
//   is received into a temporary file first and only handed to tus if its digest matches, so a
//   corrupted chunk is never appended (460 checksum_mismatch, the offset unchanged).

export const UPLOADS_PATH = '/v1/files/uploads';
export const CHECKSUM_ALGORITHMS = ['sha1', 'sha256'] as const;
const COMPLETION_BUDGET_MS = 120_000;

/** What a tus request carries beside the web Request: who asks, and what went wrong in our hooks. */
interface TusCall {
  userId: string;
  /** What one of our hooks threw (tus itself only knows a 500 for it). */
  error?: unknown;
  /** What the DataStore threw (the storage failed): a 500 from tus, answered as storage_unavailable. */
  storeError?: unknown;
  /** Set once creation inserted the row (removed again if the creation fails later). */
  createdFileId?: string;
  completed?: FileRow;
}

export interface TusAnswer {
  status: number;
  headers: Record<string, string>;
  /** Set for failures: the problem to send. */
  problem?: LeveeError;
  createdFileId?: string | undefined;
  completed?: FileRow | undefined;
}

/** Upload-Metadata: `key base64,key base64`; tus has parsed it already. */
const meta = (m: Record<string, string | null> | undefined, ...keys: string[]) => {
  for (const k of keys) {
    const v = m?.[k];
    if (typeof v === 'string' && v !== '') return v;
  }
  return undefined;
};

/** tus's own failures (status and plain-text body) as Levee problems. */
function tusProblem(status: number, body: string, cause?: unknown): LeveeError {
  const detail = body.trim().slice(0, 300) || undefined;
  switch (status) {
    case 409:
      return new LeveeError('upload_offset_mismatch', detail);
    case 413:
      return new LeveeError('file_too_large', detail);
    case 404:
    case 410:
      return new LeveeError('file_not_found', detail);
    case 412:
      return new LeveeError('bad_request', 'Tus-Resumable: 1.0.0 is required');
    case 500:
      return new LeveeError('storage_unavailable', 'The upload could not be written; resume it (HEAD for the offset)', { retryAfter: 1, cause });
    default:
      // 400 (a malformed header), 403 (a missing Upload-Offset or Content-Type), 501 (deferred
      // lengths, concatenation): the request is malformed for this server.
      return new LeveeError('bad_request', detail);
  }
}

export function createTusBridge(files: Files) {
  const calls = new WeakMap<Request, TusCall>();
  const callOf = (req: Request): TusCall => {
    const c = calls.get(req);
    if (!c) throw new Error('tus request without its call context');
    return c;
  };
  const maxSize = Math.max(...files.config.buckets.map((b) => b.maxFileBytes));
  /** Runs one of our hooks, noting what it throws (so that it is not taken for a storage failure). */
  const hook = async <T>(req: Request, fn: (call: TusCall) => Promise<T>): Promise<T> => {
    const call = callOf(req);
    try {
      return await fn(call);
    } catch (e) {
      call.error = e;
      throw e;
    }
  };

  const tus = new TusServer({
    path: UPLOADS_PATH,
    datastore: files.storage.uploads.dataStore,
    maxSize,
    // Relative: right behind any proxy or CDN (clients resolve it against the creation URL).
    generateUrl: (_req, { path, id }) => `${path}/${id.replace(/^uploads\//, '')}`,
    getFileIdFromRequest: (_req, last) => (last && UUID.test(last) ? `uploads/${last.toLowerCase()}` : undefined),
    disableTerminationForFinishedUploads: true,
    namingFunction: (req, metadata) => hook(req, async (call) => {
      const length = req.headers.get('upload-length');
      if (length === null) throw new LeveeError('bad_request', 'Upload-Length is required (deferred lengths are not accepted)');
      const bucket = meta(metadata, 'bucket');
      if (!bucket) throw new LeveeError('bad_request', 'Upload-Metadata must name the bucket (bucket <base64>)');
      const contentType = meta(metadata, 'filetype', 'type', 'contentType');
      if (!contentType) throw new LeveeError('bad_request', 'Upload-Metadata must give the file type (filetype <base64>)');
      // The file name, if any, is never used: keys are made from ids and hashes only.
      const { file, uploadId } = await files.service.createUpload({ ownerId: call.userId, bucket, contentType, size: Number(length) });
      call.createdFileId = file.id;
      return uploadId;
    }),
    // Nothing the client sent is kept with the upload (names could be anything; S3 headers are ASCII).
    onUploadCreate: async () => ({ metadata: {} }),
    onUploadFinish: (req, upload: Upload) => hook(req, async (call) => {
      const fileId = upload.id.replace(/^uploads\//, '');
      const row = await withOwnBudget(COMPLETION_BUDGET_MS, () => files.service.completeUpload(fileId));
      call.completed = row;
      return { headers: { 'Levee-File-Id': row.id, 'Levee-File-State': row.state } };
    }),
    onResponseError(req, err) {
      // Any other error without tus's status_code is the DataStore's: the storage failed.
      const call = calls.get(req);
      if (call && call.error === undefined && !(err && typeof err === 'object' && 'status_code' in err)) call.storeError = err;
      return undefined;
    },
  });

  /** Runs one tus request; `body` replaces the Node request's (a checksum-verified chunk). */
  async function run(raw: IncomingMessage, userId: string, body?: Readable): Promise<TusAnswer> {
    const path = (raw.url ?? '/').split('?', 1)[0]!;
    const headers = new Headers();
    for (const [k, v] of Object.entries(raw.headers)) {
      if (v === undefined || k.startsWith(':')) continue;
      for (const one of Array.isArray(v) ? v : [v]) {
        try {
          headers.append(k, one);
        } catch {
          // A header value fetch refuses (control characters): tus would refuse it too.
          return { status: 400, headers: { 'Tus-Resumable': '1.0.0' }, problem: new LeveeError('bad_request', `The ${k} header is malformed`) };
        }
      }
    }
    const method = raw.method ?? 'GET';
    const hasBody = method === 'POST' || method === 'PATCH';
    const stream = body ?? raw;
    const request = new Request(`http://levee${path}`, {
      method,
      headers,
      ...(hasBody ? { body: Readable.toWeb(stream) as ReadableStream, duplex: 'half' } : {}),
    } as RequestInit);
    const call: TusCall = { userId };
    calls.set(request, call);
    const res = await tus.handleWeb(request);
    const out: Record<string, string> = {};
    res.headers.forEach((v, k) => {
      // tus's bodies are empty or plain text we replace: their length and type are not ours to send.
      if (k === 'content-length' || k === 'content-type' || k === 'connection' || k.startsWith('access-control-')) return;
      if (k === 'upload-metadata' && v === '') return;
      out[k] = v;
    });
    const answer: TusAnswer = { status: res.status, headers: out, createdFileId: call.createdFileId, completed: call.completed };
    if (res.status >= 400) {
      const text = await res.text();
      answer.problem = isLeveeError(call.error) ? call.error : call.error ? new LeveeError('internal', undefined, { cause: call.error }) : tusProblem(res.status, text, call.storeError);
    } else {
      await res.body?.cancel();
    }
    if (method === 'OPTIONS') {
      // What this server really offers: no deferred lengths, no concatenation; checksums (ours).
      const offered = (out['tus-extension'] ?? '').split(',').filter((e) => ['creation', 'creation-with-upload', 'termination'].includes(e));
      out['tus-extension'] = [...offered, 'checksum'].join(',');
      out['tus-checksum-algorithm'] = CHECKSUM_ALGORITHMS.join(',');
    }
    return answer;
  }

  /**
   * For a HEAD that finds every byte arrived but the file still `uploading` (files.ts completes it
   * then): makes sure the DataStore has finished the upload too. @tus/s3-store completes the
   * multipart upload within the PATCH that carried the last byte; when S3 failed that call, the
   * bytes are still parts (ListParts makes the offset whole) and there is no object to verify yet.
   * An empty write at the end completes it. Nothing to do once the object exists (always, for the
   * FileStore, whose file is the object).
   */
  async function finishStored(fileId: string): Promise<void> {
    const id = `uploads/${fileId}`;
    const key = files.storage.uploads.key(id);
    if (await files.storage.exists(key)) return;
    const store = files.storage.uploads.dataStore;
    try {
      const upload = await store.getUpload(id);
      if (upload.size === undefined || upload.offset !== upload.size) return;
      await store.write(Readable.from([]), id, upload.offset);
    } catch (e) {
      // A concurrent HEAD may have completed it meanwhile.
      if (await files.storage.exists(key)) return;
      throw new LeveeError('storage_unavailable', 'The upload could not be completed; retry (HEAD)', { cause: e });
    }
  }

  return { run, finishStored, maxSize };
}

export type TusBridge = ReturnType<typeof createTusBridge>;

/** Parses `Upload-Checksum: <algorithm> <base64 digest>`; undefined when absent. */
export function parseUploadChecksum(header: string | undefined): { algorithm: (typeof CHECKSUM_ALGORITHMS)[number]; digest: Buffer } | undefined {
  if (header === undefined) return undefined;
  const m = /^([a-z0-9-]+) ([A-Za-z0-9+/]+={0,2})$/.exec(header.trim());
  if (!m) throw new LeveeError('bad_request', 'Upload-Checksum must be "<algorithm> <base64 digest>"');
  const algorithm = m[1] as (typeof CHECKSUM_ALGORITHMS)[number];
  if (!CHECKSUM_ALGORITHMS.includes(algorithm)) throw new LeveeError('bad_request', `Upload-Checksum algorithms: ${CHECKSUM_ALGORITHMS.join(', ')}`);
  const digest = Buffer.from(m[2]!, 'base64');
  if (digest.length !== (algorithm === 'sha1' ? 20 : 32)) throw new LeveeError('bad_request', `Upload-Checksum: not a ${algorithm} digest`);
  return { algorithm, digest };
}

class Counted extends Transform {
  bytes = 0;
  constructor(
    private readonly hash: ReturnType<typeof createHash>,
    private readonly max: number,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
    this.bytes += chunk.length;
    if (this.bytes > this.max) return cb(new LeveeError('file_too_large', `The chunk is larger than the upload's remaining ${this.max} bytes`));
    this.hash.update(chunk);
    cb(null, chunk);
  }
}

/**
 * Receives a chunk that carries a checksum into a temporary file, hashing it on the way; throws
 * checksum_mismatch (460) if the digest differs. On success, returns a stream of the verified
 * chunk (its file is removed once read) to hand to tus in place of the request body.
 */
export async function receiveVerified(raw: IncomingMessage, checksum: { algorithm: string; digest: Buffer }, maxBytes: number): Promise<Readable> {
  const dir = await mkdtemp(join(tmpdir(), 'levee-chunk-'));
  const path = join(dir, 'chunk');
  const hash = createHash(checksum.algorithm);
  const counted = new Counted(hash, maxBytes);
  try {
    await pipeline(raw, counted, createWriteStream(path));
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw isLeveeError(e) ? e : new LeveeError('bad_request', 'The chunk did not arrive whole', { cause: e });
  }
  if (!hash.digest().equals(checksum.digest)) {
    await rm(dir, { recursive: true, force: true });
    throw new LeveeError('checksum_mismatch', `The chunk's ${checksum.algorithm} does not match Upload-Checksum; nothing of it was stored`);
  }
  const verified = createReadStream(path);
  verified.once('close', () => void rm(dir, { recursive: true, force: true }));
  return verified;
}
