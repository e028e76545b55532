import { CopyObjectCommand, DeleteObjectCommand, DeleteObjectsCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { S3Store } from '@tus/s3-store';
import { Readable } from 'node:stream';
import { isLeveeError, LeveeError } from '../../lib/errors.js';
import { assertSafeKey, bound, clampRange, Measure, notFound, type Bounded } from './bounds.js';
import type { GetResult, ObjectInfo, ObjectStorage, PutResult } from './port.js';

// Objects in an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2; s3rver in tests).
// - Checksums: the SDK's default CRC trailers (aws-chunked bodies) are not understood by every
//   S3-compatible server, so they are only sent where an operation requires them. A put with a
//   known SHA-256 sends it as `x-amz-checksum-sha256` (AWS, MinIO and R2 then refuse a mismatch
//   themselves), and the adapter checks size and hash as the bytes stream (Measure holds the last
//   chunk back until they are right, so a wrong body is cancelled before S3 has all of it).
//   Some S3-compatible servers (s3rver) keep what arrived of a cancelled put: after a failed put
//   the key is deleted, so it holds nothing rather than a fragment.
// - Every call carries an abort signal (see bounds.ts). The SDK's own retries (2 attempts) happen
//   inside that bound; the circuit breaker and bulkhead around this adapter are the composition
//   root's (storage/guarded.ts).

export interface S3StorageOptions {
  bucket: string;
  /** e.g. http://127.0.0.1:9000 for MinIO, https://<account>.r2.cloudflarestorage.com for R2; omit for AWS. */
  endpoint?: string | undefined;
  region: string;
  /** Omit both to use the SDK's default chain (environment, instance role). */
  accessKeyId?: string | undefined;
  secretAccessKey?: string | undefined;
  /** Path-style URLs (http://host/bucket/key): MinIO and s3rver need them. */
  forcePathStyle?: boolean | undefined;
  requestTimeoutMs?: number | undefined;
  transferTimeoutMs?: number | undefined;
  /** Sockets to S3 at most; more calls wait in the agent (the bulkhead should be tighter). */
  maxSockets?: number | undefined;
  /** tus multipart part size (≥ 5 MiB). */
  uploadPartBytes?: number | undefined;
  /** Where the SDK's own warnings go (pino fits); by default they are dropped, not printed. */
  logger?: S3ClientConfig['logger'];
}

const SILENT = { debug() {}, info() {}, warn() {}, error() {} };

interface S3ErrorShape {
  name?: string;
  $metadata?: { httpStatusCode?: number };
}

export function createS3Storage(opts: S3StorageOptions): ObjectStorage {
  const requestTimeoutMs = opts.requestTimeoutMs ?? 5_000;
  const transferTimeoutMs = opts.transferTimeoutMs ?? 120_000;
  const clientConfig: S3ClientConfig = {
    region: opts.region,
    endpoint: opts.endpoint,
    forcePathStyle: opts.forcePathStyle ?? false,
    credentials: opts.accessKeyId && opts.secretAccessKey ? { accessKeyId: opts.accessKeyId, secretAccessKey: opts.secretAccessKey } : undefined,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 2,
    logger: opts.logger ?? SILENT,
    requestHandler: { connectionTimeout: Math.min(requestTimeoutMs, 3_000), httpAgent: { maxSockets: opts.maxSockets ?? 50, keepAlive: true }, httpsAgent: { maxSockets: opts.maxSockets ?? 50, keepAlive: true } },
  };
  const client = new S3Client(clientConfig);
  const Bucket = opts.bucket;

  /** S3's answers mapped to the port's errors. */
  function failure(e: unknown, what: string, key: string, b: Bounded): Error {
    if (isLeveeError(e)) return e;
    if (b.signal.aborted) return b.abortError(what);
    const s = e as S3ErrorShape;
    const status = s.$metadata?.httpStatusCode;
    if (s.name === 'NoSuchKey' || s.name === 'NotFound' || status === 404) return notFound(key);
    if (s.name === 'BadDigest' || /checksum/i.test(s.name ?? '')) return new LeveeError('checksum_mismatch', 'The bytes do not match their SHA-256');
    return new LeveeError('storage_unavailable', `${what} failed: S3 answered ${s.name ?? 'an error'}${status ? ` (${status})` : ''}`, { cause: e });
  }

  const headInfo = async (key: string, signal: AbortSignal): Promise<ObjectInfo> => {
    const h = await client.send(new HeadObjectCommand({ Bucket, Key: key }), { abortSignal: signal });
    return { key, size: h.ContentLength ?? 0, etag: h.ETag ?? '""', contentType: h.ContentType ?? 'application/octet-stream' };
  };

  const deleteKeys = async (keys: string[], signal: AbortSignal) => {
    await client.send(new DeleteObjectsCommand({ Bucket, Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true } }), { abortSignal: signal });
  };

  const uploadStore = new S3Store({
    partSize: opts.uploadPartBytes ?? 8 * 1024 * 1024,
    s3ClientConfig: { ...clientConfig, bucket: Bucket },
  });

  const storage: ObjectStorage = {
    engine: 's3',

    async put(key, body, o): Promise<PutResult> {
      assertSafeKey(key);
      const size = body instanceof Readable ? o.size : body.byteLength;
      if (size === undefined) throw new Error('S3 put of a stream needs its size');
      const b = bound(transferTimeoutMs, o.signal);
      const m = new Measure({ size, sha256: o.sha256 });
      const source = body instanceof Readable ? body : Readable.from([Buffer.from(body.buffer, body.byteOffset, body.byteLength)]);
      // The SDK does not notice a body stream that fails (too long, or its source errored): watch
      // it here, and cancel the request when it does.
      const cancel = new AbortController();
      const streamFailed = new Promise<never>((_, reject) => m.once('error', reject));
      source.once('error', (e) => m.destroy(e));
      source.pipe(m);
      try {
        const sent = client.send(
          new PutObjectCommand({
            Bucket,
            Key: key,
            Body: m,
            ContentLength: size,
            ContentType: o.contentType,
            ...(o.sha256 ? { ChecksumSHA256: Buffer.from(o.sha256, 'hex').toString('base64') } : {}),
          }),
          { abortSignal: AbortSignal.any([b.signal, cancel.signal]) },
        );
        streamFailed.catch(() => cancel.abort());
        const res = await Promise.race([sent, streamFailed]).catch(async (e) => {
          await sent.catch(() => {});
          throw e;
        });
        const sha256 = m.sha256;
        return { key, size, etag: res.ETag ?? `"${sha256.slice(0, 32)}"`, contentType: o.contentType, sha256 };
      } catch (e) {
        source.destroy();
        // Some S3-compatible servers keep what arrived of a failed put: make sure nothing is left.
        const d = bound(requestTimeoutMs);
        await deleteKeys([key], d.signal).catch(() => {});
        d.release();
        throw failure(e, `Storing ${key}`, key, b);
      } finally {
        b.release();
      }
    },

    async get(key, o = {}): Promise<GetResult> {
      assertSafeKey(key);
      const b = bound(requestTimeoutMs, o.signal);
      try {
        let range: { start: number; end: number } | undefined;
        let Range: string | undefined;
        if (o.range) {
          // S3 answers a range past the end with 416 and no size: ask for the size first, so the
          // caller gets the same error (with the size) as from the local adapter.
          range = clampRange(o.range, (await headInfo(key, b.signal)).size);
          Range = `bytes=${range.start}-${range.end}`;
        }
        const res = await client.send(new GetObjectCommand({ Bucket, Key: key, Range }), { abortSignal: b.signal });
        const total = range ? Number(/\/(\d+)$/.exec(res.ContentRange ?? '')?.[1] ?? res.ContentLength) : (res.ContentLength ?? 0);
        return { key, size: total, etag: res.ETag ?? '""', contentType: res.ContentType ?? 'application/octet-stream', body: res.Body as Readable, range };
      } catch (e) {
        throw failure(e, `Reading ${key}`, key, b);
      } finally {
        b.release();
      }
    },

    async head(key, o = {}) {
      assertSafeKey(key);
      const b = bound(requestTimeoutMs, o.signal);
      try {
        return await headInfo(key, b.signal);
      } catch (e) {
        throw failure(e, `Reading ${key}`, key, b);
      } finally {
        b.release();
      }
    },

    async exists(key, o = {}) {
      try {
        await storage.head(key, o);
        return true;
      } catch (e) {
        if (isLeveeError(e) && e.code === 'file_not_found') return false;
        throw e;
      }
    },

    async delete(key, o = {}) {
      assertSafeKey(key);
      const b = bound(requestTimeoutMs, o.signal);
      try {
        await client.send(new DeleteObjectCommand({ Bucket, Key: key }), { abortSignal: b.signal });
      } catch (e) {
        const err = failure(e, `Deleting ${key}`, key, b);
        if (!(isLeveeError(err) && err.code === 'file_not_found')) throw err;
      } finally {
        b.release();
      }
    },

    async copy(from, to, o = {}) {
      assertSafeKey(from);
      assertSafeKey(to);
      const b = bound(transferTimeoutMs, o.signal);
      try {
        // One CopyObject handles objects up to 5 GB, far above any bucket's default limit.
        await client.send(
          new CopyObjectCommand({ Bucket, Key: to, CopySource: `${Bucket}/${from}`, ...(o.contentType ? { ContentType: o.contentType, MetadataDirective: 'REPLACE' } : {}) }),
          { abortSignal: b.signal },
        );
        return await headInfo(to, b.signal);
      } catch (e) {
        throw failure(e, `Copying ${from}`, from, b);
      } finally {
        b.release();
      }
    },

    async presignedGetUrl(key, p) {
      assertSafeKey(key);
      return getSignedUrl(
        client,
        new GetObjectCommand({ Bucket, Key: key, ResponseCacheControl: p.cacheControl, ResponseContentDisposition: p.contentDisposition, ResponseContentType: p.contentType }),
        { expiresIn: p.ttlSeconds },
      );
    },

    uploads: {
      dataStore: uploadStore,
      key: (uploadId) => (assertSafeKey(uploadId), uploadId),
      async discard(uploadId, o = {}) {
        assertSafeKey(uploadId);
        // An unfinished upload is a multipart upload to abort; a finished one is plain objects.
        await uploadStore.remove(uploadId).catch(() => {});
        const b = bound(requestTimeoutMs, o.signal);
        try {
          await deleteKeys([uploadId, `${uploadId}.info`, `${uploadId}.part`], b.signal);
        } catch (e) {
          throw failure(e, `Deleting upload ${uploadId}`, uploadId, b);
        } finally {
          b.release();
        }
      },
    },

    async close() {
      client.destroy();
    },
  };
  return storage;
}
