import type { Db } from '../db/port.js';
import type { Clock } from '../lib/clock.js';
import { LeveeError } from '../lib/errors.js';
import type { FilesConfig } from './config.js';
import { parseObjectKey } from './keys.js';
import { needsProcessing } from './service.js';
import type { UrlSigner } from './signed-urls.js';
import type { ByteRange, GetResult, ObjectStorage } from './storage/port.js';
import { fileStore, type FileRow } from './store.js';

// Getting bytes to clients, in a way a CDN can absorb:
// - Public files: GET /v1/files/public/<key>. The key names the content (keys.ts), so the answer
//   is `Cache-Control: public, max-age=31536000, immutable` with a strong ETag (the SHA-256); with
//   LEVEE_CDN_BASE_URL the URLs clients get point at the CDN, whose origin is Levee.
// - Private files: GET /v1/files/<id>/<variant>?expires&sig (signed-urls.ts), short-lived. With S3
//   (and proxying off) Levee answers with a redirect to a presigned S3 URL, so the bytes never pass
//   through the app server; otherwise it streams them (with Range support).
// - The original of an image that has variants is only its owner's (it may carry EXIF GPS);
//   everyone else gets the variants, which carry no metadata.

export const IMMUTABLE = 'public, max-age=31536000, immutable';

export interface FileView {
  id: string;
  bucket: string;
  contentType: string;
  size: number;
  state: FileRow['state'];
  failureReason: string | null;
  visibility: FileRow['visibility'];
  createdAt: string;
  /** URL per variant (and `original`) this viewer may fetch; empty until the file is ready. */
  urls: Record<string, string>;
  variants: Record<string, { width: number; height: number; size: number; contentType: string }>;
}

/** What the HTTP layer needs to answer a download: headers first (for 304s), then the bytes. */
export interface Resolved {
  key: string;
  contentType: string;
  size: number;
  /** Strong, quoted: the content's SHA-256. */
  etag: string;
  cacheControl: string;
  /** Set when the client should be redirected there instead (S3 presigned URL). */
  redirect?: string | undefined;
}

export interface DeliveryDeps {
  db: Db;
  storage: ObjectStorage;
  signer: UrlSigner;
  config: FilesConfig;
  clock: Clock;
}

export function createDelivery(deps: DeliveryDeps) {
  const { db, storage, signer, config, clock } = deps;
  const buckets = new Map(config.buckets.map((b) => [b.name, b]));
  const publicBase = (config.cdnBaseUrl ?? '').replace(/\/+$/, '');

  /** Variant name → the object that serves it. */
  function objects(row: FileRow): Map<string, { key: string; contentType: string; size: number; sha256: string }> {
    const m = new Map<string, { key: string; contentType: string; size: number; sha256: string }>();
    if (row.key && row.sha256) m.set('original', { key: row.key, contentType: row.content_type, size: row.size, sha256: row.sha256 });
    for (const [name, v] of Object.entries(row.variants)) m.set(name, v);
    return m;
  }

  /** Whether the original may be served to someone other than the owner. */
  function originalIsShared(row: FileRow): boolean {
    const bucket = buckets.get(row.bucket);
    return !bucket || !needsProcessing(bucket, row.content_type);
  }

  const delivery = {
    publicUrl: (key: string) => `${publicBase}/v1/files/public/${key}`,

    /** The file as its viewer sees it, with the URLs they may use. */
    view(row: FileRow, viewerId: string | undefined): FileView {
      const urls: Record<string, string> = {};
      if (row.state === 'ready') {
        const isOwner = row.owner_id === viewerId;
        for (const [name, o] of objects(row)) {
          const shared = name !== 'original' || originalIsShared(row);
          if (!shared && !isOwner) continue;
          urls[name] = row.visibility === 'public' && shared ? delivery.publicUrl(o.key) : signer.path(signer.sign(row.id, name, config.signedUrlTtlSeconds));
        }
      }
      return {
        id: row.id,
        bucket: row.bucket,
        contentType: row.content_type,
        size: row.size,
        state: row.state,
        failureReason: row.failure_reason,
        visibility: row.visibility,
        createdAt: row.created_at.toISOString(),
        urls,
        variants: Object.fromEntries(Object.entries(row.variants).map(([n, v]) => [n, { width: v.width, height: v.height, size: v.size, contentType: v.contentType }])),
      };
    },

    /** GET /v1/files/public/<key>: only keys of ready, public, shared objects resolve. */
    async resolvePublic(key: string): Promise<Resolved> {
      const parts = parseObjectKey(key);
      const row = parts && (await fileStore.byId(db, parts.fileId));
      const o = row && objects(row).get(parts.name);
      if (!row || !o || o.key !== key || row.state !== 'ready' || row.visibility !== 'public' || (parts.name === 'original' && !originalIsShared(row))) {
        throw new LeveeError('file_not_found');
      }
      return { key, contentType: o.contentType, size: o.size, etag: `"${o.sha256}"`, cacheControl: IMMUTABLE };
    },

    /** GET /v1/files/<id>/<variant>?expires&sig: the signature is checked before anything is read. */
    async resolveSigned(fileId: string, variant: string, expires: string | undefined, sig: string | undefined): Promise<Resolved> {
      signer.verify(fileId, variant, expires, sig);
      const row = await fileStore.byId(db, fileId);
      const o = row && row.state === 'ready' ? objects(row).get(variant) : undefined;
      if (!o) throw new LeveeError('file_not_found');
      const maxAge = Math.max(0, Number(expires) - Math.floor(clock.now().getTime() / 1000));
      const cacheControl = `private, max-age=${maxAge}`;
      const redirect =
        storage.presignedGetUrl && !config.proxyDownloads
          ? await storage.presignedGetUrl(o.key, { ttlSeconds: Math.max(1, maxAge), cacheControl, contentType: o.contentType })
          : undefined;
      return { key: o.key, contentType: o.contentType, size: o.size, etag: `"${o.sha256}"`, cacheControl, redirect };
    },

    /** The bytes of a resolved object (a range of them for `Range` requests). */
    open: (r: Resolved, range?: ByteRange, signal?: AbortSignal): Promise<GetResult> => storage.get(r.key, { range, signal }),
  };
  return delivery;
}

export type Delivery = ReturnType<typeof createDelivery>;
