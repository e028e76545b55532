import { badValue, type Parser } from '../config/settings.js';
import { normalizeType } from './sniff.js';

// File buckets: named groups of files with their own rules (who sees them, how large, which types,
// which image variants). Phase 2 reads them from `LEVEE_FILE_BUCKETS` / the config file's
// `fileBuckets` through `parseBuckets`; without that setting, DEFAULT_BUCKETS apply.

export interface VariantSpec {
  /** Lower-case name used in keys and URLs (`thumb`, `medium`). `original` is reserved. */
  name: string;
  /** Longest side bounds in pixels; an image is never enlarged. */
  width: number;
  height?: number | undefined;
  /** `inside` keeps the whole image (default); `cover` crops to fill width × height (avatars). */
  fit?: 'inside' | 'cover' | undefined;
  /** WebP quality 1–100 (default 80). */
  quality?: number | undefined;
}

export interface BucketConfig {
  name: string;
  /** Public files get unauthenticated, immutable URLs; private ones short-lived signed URLs. */
  public: boolean;
  maxFileBytes: number;
  /** Declared types accepted (after normalisation, e.g. image/jpg → image/jpeg). */
  allowedTypes: string[];
  /** Variants made for images; none: images are stored and served as uploaded. */
  variants: VariantSpec[];
}

export const IMAGE_TYPES = ['image/jpeg', 'image/png', 'image/webp', 'image/gif', 'image/avif'];
/** Types sharp (as installed from npm) decodes. HEIC is not among them (its codec is patent-encumbered). */
export const PROCESSABLE_TYPES = new Set(IMAGE_TYPES);

export const DEFAULT_BUCKETS: BucketConfig[] = [
  {
    name: 'avatars',
    public: true,
    maxFileBytes: 5 * 1024 * 1024,
    allowedTypes: IMAGE_TYPES,
    variants: [
      { name: 'thumb', width: 128, height: 128, fit: 'cover' },
      { name: 'medium', width: 512, height: 512, fit: 'cover' },
    ],
  },
  {
    name: 'attachments',
    public: false,
    maxFileBytes: 100 * 1024 * 1024,
    allowedTypes: [...IMAGE_TYPES, 'image/heic', 'image/heif', 'application/pdf', 'video/mp4', 'video/quicktime', 'video/webm'],
    variants: [
      { name: 'thumb', width: 256 },
      { name: 'large', width: 1600 },
    ],
  },
];

const NAME = /^[a-z][a-z0-9-]{0,31}$/;

const posInt = (v: unknown, what: string, max = Number.MAX_SAFE_INTEGER): number =>
  typeof v === 'number' && Number.isInteger(v) && v > 0 && v <= max ? v : badValue(`${what} must be a whole number from 1 to ${max}`);

function parseVariant(raw: unknown, where: string): VariantSpec {
  if (typeof raw !== 'object' || raw === null) return badValue(`${where} must be an object`);
  const v = raw as Record<string, unknown>;
  const name = typeof v.name === 'string' && NAME.test(v.name) && v.name !== 'original' ? v.name : badValue(`${where}.name must match ${NAME} and not be "original"`);
  const fit = v.fit === undefined ? undefined : v.fit === 'inside' || v.fit === 'cover' ? v.fit : badValue(`${where}.fit must be inside or cover`);
  return {
    name,
    width: posInt(v.width, `${where}.width`, 8192),
    height: v.height === undefined ? undefined : posInt(v.height, `${where}.height`, 8192),
    fit,
    quality: v.quality === undefined ? undefined : posInt(v.quality, `${where}.quality`, 100),
  };
}

/** Parses a bucket list (a JSON string from the environment, or an array from the config file). */
export const parseBuckets: Parser<BucketConfig[]> = (raw) => {
  let value = raw;
  if (typeof raw === 'string') {
    try {
      value = JSON.parse(raw);
    } catch {
      return badValue('must be a JSON array of buckets');
    }
  }
  if (!Array.isArray(value) || value.length === 0) return badValue('must be a non-empty array of buckets');
  const buckets = value.map((b: unknown, i): BucketConfig => {
    const where = `bucket ${i}`;
    if (typeof b !== 'object' || b === null) return badValue(`${where} must be an object`);
    const o = b as Record<string, unknown>;
    const name = typeof o.name === 'string' && NAME.test(o.name) ? o.name : badValue(`${where}.name must match ${NAME}`);
    if (typeof o.public !== 'boolean') badValue(`bucket ${name}: public must be true or false`);
    if (!Array.isArray(o.allowedTypes) || o.allowedTypes.length === 0 || !o.allowedTypes.every((t) => typeof t === 'string' && /^[a-z]+\/[a-z0-9.+-]+$/i.test(t))) {
      badValue(`bucket ${name}: allowedTypes must be a non-empty list of types like image/png`);
    }
    const variants = o.variants === undefined ? [] : Array.isArray(o.variants) ? o.variants.map((v, j) => parseVariant(v, `bucket ${name} variant ${j}`)) : badValue(`bucket ${name}: variants must be an array`);
    if (new Set(variants.map((v) => v.name)).size !== variants.length) badValue(`bucket ${name}: variant names must be unique`);
    return {
      name,
      public: o.public as boolean,
      maxFileBytes: posInt(o.maxFileBytes, `bucket ${name}: maxFileBytes`),
      allowedTypes: [...new Set((o.allowedTypes as string[]).map(normalizeType))],
      variants,
    };
  });
  if (new Set(buckets.map((b) => b.name)).size !== buckets.length) badValue('bucket names must be unique');
  return buckets;
};

/** The media settings the files service needs (phase 2 maps LEVEE_* settings onto this). */
export interface FilesConfig {
  buckets: BucketConfig[];
  /** Bytes a user may keep (every file not failed counts); 0: no quota. */
  quotaBytesPerUser: number;
  /** Largest file taken in one request (the one-shot upload); larger ones go through tus. */
  oneShotMaxBytes: number;
  /** Lifetime of a signed private URL. */
  signedUrlTtlSeconds: number;
  /** Absolute base URL clients get for public files (a CDN in front of Levee); empty: relative paths. */
  cdnBaseUrl?: string | undefined;
  /** With S3: serve private files through Levee instead of redirecting to a presigned S3 URL. */
  proxyDownloads: boolean;
}

export const DEFAULT_FILES_CONFIG: FilesConfig = {
  buckets: DEFAULT_BUCKETS,
  quotaBytesPerUser: 1024 * 1024 * 1024,
  oneShotMaxBytes: 5 * 1024 * 1024,
  signedUrlTtlSeconds: 300,
  cdnBaseUrl: undefined,
  proxyDownloads: false,
};
