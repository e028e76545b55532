import { mkdtempSync, rmSync } from 'node:fs';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';

// A local S3-compatible server for tests: s3rver on a free loopback port, its objects in a temp
// directory, one bucket created. s3rver speaks enough of S3 for the storage contract (put, get with
// ranges, head, delete, copy, presigned URLs, multipart create / upload part / complete).
//
// What it lacks is what @tus/s3-store needs to resume an upload: ListParts (GET ?uploadId=, how the
// store learns the offset on every HEAD and PATCH) and AbortMultipartUpload (DELETE ?uploadId=,
// termination) answer 405 MethodNotAllowed. A real S3-compatible server cannot stand in: MinIO is
// neither on npm (the `minio` package is a client) nor in Debian's archive, the only registries
// this project's machines reach. So a small shim sits in front of s3rver's request handler, on the
// same port, and answers the multipart calls itself from s3rver's own on-disk layout
// (<dir>/<bucket>/._S3rver_uploads/<uploadId>/{key, metadata, <part number>, <part number>.md5}):
// - ListParts, with PartNumberMarker / MaxParts pagination (`listPartsPageSize` caps a page, so a
//   test can make S3Store follow IsTruncated with a handful of parts). A part is listed once its
//   .md5 is written, i.e. once s3rver has all of it, as S3 lists only finished parts.
// - AbortMultipartUpload.
// - CompleteMultipartUpload with S3's checks, which s3rver skips: parts in ascending order, each
//   one uploaded with that ETag, every part but the last at least 5 MiB (EntityTooSmall), and
//   NoSuchUpload for an upload completed or aborted already (s3rver answers 500). The object is
//   then assembled by s3rver's own store.
// - UploadPart to an upload that no longer exists is NoSuchUpload (s3rver would recreate it).
// `failNext` makes the next multipart calls of a kind answer 500 (an S3 outage, for the tests).
// The shim checks only that such calls carry s3rver's access key, not their signature (s3rver
// checks every other call's). ListMultipartUploads stays unimplemented: Levee never calls it (the
// S3 store's deleteExpired is unused; housekeeping discards stale uploads by their rows).

interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  httpServer: Server;
  store: { putObjectMultipart(bucket: string, uploadId: string, parts: Array<{ number: number; etag: string }>): Promise<{ md5: string; size: number }> };
}
type S3rverCtor = new (opts: Record<string, unknown>) => S3rverInstance;

export interface MultipartUpload {
  uploadId: string;
  key: string;
  parts: Array<{ number: number; size: number }>;
}

export interface TestS3 {
  endpoint: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Multipart uploads neither completed nor aborted, with their finished parts. */
  multipartUploads(): Promise<MultipartUpload[]>;
  /** The keys of the bucket's objects (under `prefix`), sorted. */
  objectKeys(prefix?: string): Promise<string[]>;
  /** The next `times` calls of a multipart operation answer 500 InternalError (an S3 outage). */
  failNext(op: MultipartOp, times?: number): void;
  stop(): Promise<void>;
}

export type MultipartOp = 'UploadPart' | 'ListParts' | 'CompleteMultipartUpload' | 'AbortMultipartUpload';
const OPS: Record<string, MultipartOp> = { PUT: 'UploadPart', GET: 'ListParts', POST: 'CompleteMultipartUpload', DELETE: 'AbortMultipartUpload' };

export interface TestS3Options {
  /** The most parts one ListParts answer holds (S3: 1000); smaller makes clients paginate. */
  listPartsPageSize?: number;
}

const ACCESS_KEY = 'S3RVER';
const UPLOADS_DIR = '._S3rver_uploads';
const OBJECT_SUFFIX = '._S3rver_object';
const MIN_PART_BYTES = 5 * 1024 * 1024;
const MAX_PARTS_PER_PAGE = 1000;

export async function startS3(bucket = 'levee-test', opts: TestS3Options = {}): Promise<TestS3> {
  const S3rver = createRequire(import.meta.url)('s3rver') as S3rverCtor;
  const dir = mkdtempSync(join(tmpdir(), 'levee-s3rver-'));
  const server = new S3rver({ address: '127.0.0.1', port: 0, directory: dir, silent: true, configureBuckets: [{ name: bucket }] });
  const { port } = await server.run();
  const uploadsDir = (b: string) => join(dir, b, UPLOADS_DIR);
  // Put the shim in front of s3rver's own request handler.
  const http = server.httpServer;
  const s3rverHandler = http.listeners('request')[0] as (req: IncomingMessage, res: ServerResponse) => void;
  http.removeAllListeners('request');
  const shim = multipartShim({ uploadsDir, store: server.store, pageSize: Math.min(opts.listPartsPageSize ?? MAX_PARTS_PER_PAGE, MAX_PARTS_PER_PAGE) });
  const failing = new Map<MultipartOp, number>();
  http.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const op = /[?&]uploadId=/.test(req.url ?? '') ? OPS[req.method ?? ''] : undefined;
    if (op && (failing.get(op) ?? 0) > 0) {
      failing.set(op, failing.get(op)! - 1);
      req.resume().once('end', () => sendError(res, 500, 'InternalError', 'We encountered an internal error. Please try again.'));
      return;
    }
    shim(req, res).then(
      (handled) => {
        if (!handled) s3rverHandler(req, res);
      },
      (e: unknown) => sendError(res, 500, 'InternalError', String(e)),
    );
  });

  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    region: 'us-east-1',
    // s3rver's fixed credentials: it checks signatures made with them.
    accessKeyId: ACCESS_KEY,
    secretAccessKey: ACCESS_KEY,
    async multipartUploads() {
      const ids = await readdir(uploadsDir(bucket)).catch(() => [] as string[]);
      const all = await Promise.all(
        ids.map(async (uploadId): Promise<MultipartUpload | undefined> => {
          const key = await readFile(join(uploadsDir(bucket), uploadId, 'key'), 'utf8').catch(() => undefined);
          if (key === undefined) return undefined;
          const parts = await finishedParts(join(uploadsDir(bucket), uploadId));
          return { uploadId, key, parts: parts.map((p) => ({ number: p.number, size: p.size })) };
        }),
      );
      return all.filter((u): u is MultipartUpload => u !== undefined);
    },
    async objectKeys(prefix = '') {
      const root = join(dir, bucket);
      const walk = async (d: string): Promise<string[]> => {
        const entries = await readdir(d, { withFileTypes: true }).catch(() => []);
        const nested = await Promise.all(entries.map((e) => (e.isDirectory() ? (e.name === UPLOADS_DIR ? [] : walk(join(d, e.name))) : [join(d, e.name)])));
        return nested.flat();
      };
      return (await walk(root))
        .filter((f) => f.endsWith(OBJECT_SUFFIX))
        .map((f) => relative(root, f).slice(0, -OBJECT_SUFFIX.length).split(sep).join('/'))
        .filter((k) => k.startsWith(prefix))
        .sort();
    },
    failNext(op, times = 1) {
      failing.set(op, (failing.get(op) ?? 0) + times);
    },
    async stop() {
      await server.close().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

interface Part {
  number: number;
  size: number;
  etag: string;
  lastModified: Date;
}

/** The parts s3rver has all of (their .md5 is written once the part is), by number. */
async function finishedParts(uploadDir: string): Promise<Part[]> {
  const names = new Set(await readdir(uploadDir));
  const numbers = [...names].filter((n) => /^\d+$/.test(n) && names.has(`${n}.md5`)).map(Number);
  const parts = await Promise.all(
    numbers.map(async (number) => {
      const [st, md5] = await Promise.all([stat(join(uploadDir, String(number))), readFile(join(uploadDir, `${number}.md5`), 'utf8')]);
      return { number, size: st.size, etag: md5.trim(), lastModified: st.mtime };
    }),
  );
  return parts.sort((a, b) => a.number - b.number);
}

const xml = (s: string | number) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function sendXml(res: ServerResponse, status: number, body: string) {
  const text = `<?xml version="1.0" encoding="UTF-8"?>\n${body}`;
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, status: number, code: string, message: string, extra = '') {
  if (res.headersSent) return void res.destroy();
  sendXml(res, status, `<Error><Code>${code}</Code><Message>${xml(message)}</Message>${extra}<RequestId>s3rver-shim</RequestId></Error>`);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Answers the multipart calls s3rver lacks or gets wrong (see the top of this file); resolves to
 * false for everything else, which s3rver then handles.
 */
function multipartShim(o: { uploadsDir: (bucket: string) => string; store: S3rverInstance['store']; pageSize: number }) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const url = new URL(req.url ?? '/', 'http://s3');
    const uploadId = url.searchParams.get('uploadId');
    const [, bucket = '', ...keyParts] = url.pathname.split('/');
    const key = keyParts.map(decodeURIComponent).join('/');
    if (uploadId === null || key === '' || req.headers['x-amz-copy-source'] !== undefined) return false;
    const method = req.method ?? 'GET';
    if (!['GET', 'DELETE', 'POST', 'PUT'].includes(method)) return false;
    if (!(req.headers.authorization ?? '').includes(`Credential=${ACCESS_KEY}/`)) {
      sendError(res, 403, 'AccessDenied', 'Access Denied');
      return true;
    }

    // The upload must exist, for this key (S3 ties an upload id to its key).
    const uploadDir = join(o.uploadsDir(decodeURIComponent(bucket)), uploadId);
    const uploadKey = /^[0-9a-f]{1,64}$/.test(uploadId) ? await readFile(join(uploadDir, 'key'), 'utf8').catch(() => undefined) : undefined;
    if (uploadKey !== key) {
      if (method === 'PUT' || method === 'POST') await readBody(req).catch(() => {});
      sendError(res, 404, 'NoSuchUpload', 'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.', `<UploadId>${xml(uploadId)}</UploadId>`);
      return true;
    }

    switch (method) {
      case 'PUT': {
        // UploadPart: s3rver stores it.
        const n = Number(url.searchParams.get('partNumber'));
        if (!Number.isInteger(n) || n < 1 || n > 10_000) {
          await readBody(req).catch(() => {});
          sendError(res, 400, 'InvalidArgument', 'Part number must be an integer between 1 and 10000, inclusive');
          return true;
        }
        return false;
      }

      case 'GET': {
        // ListParts.
        const marker = Number(url.searchParams.get('part-number-marker') ?? 0);
        const maxParts = Math.min(Number(url.searchParams.get('max-parts') ?? MAX_PARTS_PER_PAGE), o.pageSize);
        if (!Number.isInteger(marker) || marker < 0 || !Number.isInteger(maxParts) || maxParts < 0) {
          sendError(res, 400, 'InvalidArgument', 'part-number-marker and max-parts must be non-negative integers');
          return true;
        }
        const after = (await finishedParts(uploadDir)).filter((p) => p.number > marker);
        const page = after.slice(0, maxParts);
        const truncated = after.length > page.length;
        const next = page.length > 0 ? page[page.length - 1]!.number : marker;
        sendXml(
          res,
          200,
          '<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
            `<Bucket>${xml(bucket)}</Bucket><Key>${xml(key)}</Key><UploadId>${xml(uploadId)}</UploadId>` +
            `<PartNumberMarker>${marker}</PartNumberMarker><NextPartNumberMarker>${next}</NextPartNumberMarker>` +
            `<MaxParts>${maxParts}</MaxParts><IsTruncated>${truncated}</IsTruncated><StorageClass>STANDARD</StorageClass>` +
            page.map((p) => `<Part><PartNumber>${p.number}</PartNumber><LastModified>${p.lastModified.toISOString()}</LastModified><ETag>${xml(`"${p.etag}"`)}</ETag><Size>${p.size}</Size></Part>`).join('') +
            '</ListPartsResult>',
        );
        return true;
      }

      case 'DELETE': {
        // AbortMultipartUpload: the upload and its parts are gone.
        await rm(uploadDir, { recursive: true, force: true });
        res.writeHead(204).end();
        return true;
      }

      case 'POST': {
        // CompleteMultipartUpload, with S3's checks.
        const body = await readBody(req);
        const asked = [...body.matchAll(/<Part>([\s\S]*?)<\/Part>/g)].map((m) => ({
          number: Number(/<PartNumber>\s*(\d+)\s*<\/PartNumber>/.exec(m[1]!)?.[1]),
          etag: (/<ETag>([\s\S]*?)<\/ETag>/.exec(m[1]!)?.[1] ?? '').replace(/&quot;|&#34;|"/g, '').trim(),
        }));
        if (asked.length === 0 || asked.some((p) => !Number.isInteger(p.number))) {
          sendError(res, 400, 'MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema.');
          return true;
        }
        if (asked.some((p, i) => i > 0 && p.number <= asked[i - 1]!.number)) {
          sendError(res, 400, 'InvalidPartOrder', 'The list of parts was not in ascending order. Parts must be ordered by part number.');
          return true;
        }
        const stored = new Map((await finishedParts(uploadDir)).map((p) => [p.number, p]));
        for (const [i, p] of asked.entries()) {
          const part = stored.get(p.number);
          if (!part || part.etag !== p.etag) {
            sendError(res, 400, 'InvalidPart', 'One or more of the specified parts could not be found. The part might not have been uploaded, or the specified entity tag might not have matched the part\'s entity tag.', `<PartNumber>${p.number}</PartNumber>`);
            return true;
          }
          if (i < asked.length - 1 && part.size < MIN_PART_BYTES) {
            sendError(res, 400, 'EntityTooSmall', 'Your proposed upload is smaller than the minimum allowed object size.', `<PartNumber>${p.number}</PartNumber><ProposedSize>${part.size}</ProposedSize><MinSizeAllowed>${MIN_PART_BYTES}</MinSizeAllowed>`);
            return true;
          }
        }
        const { md5 } = await o.store.putObjectMultipart(decodeURIComponent(bucket), uploadId, asked);
        sendXml(
          res,
          200,
          '<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
            `<Location>http://${xml(req.headers.host ?? '127.0.0.1')}/${xml(bucket)}/${xml(key)}</Location><Bucket>${xml(bucket)}</Bucket><Key>${xml(key)}</Key><ETag>${xml(`"${md5}"`)}</ETag>` +
            '</CompleteMultipartUploadResult>',
        );
        return true;
      }
    }
    return false;
  };
}
