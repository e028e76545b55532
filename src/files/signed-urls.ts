import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../lib/clock.js';
import { LeveeError } from '../lib/errors.js';

// Short-lived URLs for private files: /v1/files/<id>/<variant>?expires=<unix seconds>&sig=<mac>,
// the mac an HMAC-SHA256 over (file id, variant, expiry). Anyone holding the URL may fetch that one
// variant until it expires — like an S3 presigned URL, but checked by Levee, so it works on every
// storage engine and can be revoked by deleting the file. Keys rotate: sign with the first secret,
// accept any of them.

export interface SignedFileUrl {
  fileId: string;
  variant: string;
  /** Unix seconds. */
  expires: number;
  sig: string;
}

export interface UrlSigner {
  sign(fileId: string, variant: string, ttlSeconds: number): SignedFileUrl;
  /** The path and query of a signed URL for the file's variant. */
  path(s: SignedFileUrl): string;
  /** Throws invalid_signed_url or signed_url_expired; the `expires` and `sig` are the raw query values. */
  verify(fileId: string, variant: string, expires: string | undefined, sig: string | undefined): void;
}

export interface UrlSignerOptions {
  /** At least 32 bytes each; the first signs, all verify (rotation). */
  secrets: (string | Uint8Array)[];
  clock: Clock;
}

export function createUrlSigner(opts: UrlSignerOptions): UrlSigner {
  if (opts.secrets.length === 0) throw new Error('signed file URLs need at least one secret');
  for (const s of opts.secrets) if (Buffer.byteLength(s) < 32) throw new Error('a file URL signing secret must be at least 32 bytes');
  const mac = (secret: string | Uint8Array, fileId: string, variant: string, expires: number) =>
    createHmac('sha256', secret).update(`levee-file\n${fileId}\n${variant}\n${expires}`).digest();
  const nowSeconds = () => Math.floor(opts.clock.now().getTime() / 1000);

  return {
    sign(fileId, variant, ttlSeconds) {
      const expires = nowSeconds() + ttlSeconds;
      return { fileId, variant, expires, sig: mac(opts.secrets[0]!, fileId, variant, expires).toString('base64url') };
    },
    path: (s) => `/v1/files/${s.fileId}/${s.variant}?expires=${s.expires}&sig=${s.sig}`,
    verify(fileId, variant, expires, sig) {
      if (!expires || !/^\d{1,12}$/.test(expires) || !sig || !/^[A-Za-z0-9_-]{43}$/.test(sig)) throw new LeveeError('invalid_signed_url', 'The URL has no valid expires and sig parameters');
      const given = Buffer.from(sig, 'base64url');
      const ok = opts.secrets.some((secret) => timingSafeEqual(mac(secret, fileId, variant, Number(expires)), given));
      if (!ok) throw new LeveeError('invalid_signed_url');
      // Checked after the signature, so an expiry is only reported for URLs Levee made.
      if (Number(expires) < nowSeconds()) throw new LeveeError('signed_url_expired');
    },
  };
}
