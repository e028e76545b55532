import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { LeveeError } from '../lib/errors.js';
import type { VariantSpec } from './config.js';

// Image variants with sharp (libvips), off the request path (the worker role runs them as jobs).
// - Privacy: sharp writes no metadata unless asked (no withMetadata/keepExif here), so EXIF — GPS
//   position, camera serial — and XMP/IPTC never reach a variant. `.rotate()` applies the EXIF
//   orientation to the pixels first, so dropping the tag does not turn photos sideways.
// - Decompression bombs: `limitInputPixels` makes sharp refuse an image by the size in its header,
//   before decoding a pixel: a 48 KB PNG can declare 20000 × 20000 (400 M pixels, 1.2 GB decoded).
// - Bounds: a semaphore caps images in flight (each decode holds the whole bitmap in memory:
//   ~width × height × 4 bytes), libvips threads per image are `sharp.concurrency`, and each image
//   gets a time limit (libvips' own `timeout`, and the caller's abort signal).

export interface ImageProcessorOptions {
  /** Largest width × height accepted (default 50 M: a 48 MP phone photo). */
  maxPixels?: number;
  /** Images processed at once in this process (default 2). */
  concurrency?: number;
  /** Budget for one image, all its variants (default 30 s). */
  timeoutMs?: number;
}

export interface ProcessedVariant {
  name: string;
  contentType: 'image/webp';
  data: Buffer;
  width: number;
  height: number;
  size: number;
  sha256: string;
}

export interface ImageProcessor {
  /** Makes every variant of `input` (the whole original's bytes). Throws image_too_large, invalid_image, timeout. */
  variants(input: Buffer, specs: VariantSpec[], signal?: AbortSignal): Promise<ProcessedVariant[]>;
  /** Images waiting for a slot now (for metrics). */
  readonly waiting: number;
}

/** A counting semaphore: at most `n` holders, the rest wait in order. */
function semaphore(n: number) {
  let free = n;
  const queue: (() => void)[] = [];
  return {
    get waiting() {
      return queue.length;
    },
    async acquire(signal?: AbortSignal): Promise<() => void> {
      if (signal?.aborted) throw new LeveeError('timeout', 'Image processing was cancelled');
      if (free > 0) free--;
      else
        await new Promise<void>((resolve, reject) => {
          const turn = () => {
            signal?.removeEventListener('abort', onAbort);
            resolve();
          };
          const onAbort = () => {
            queue.splice(queue.indexOf(turn), 1);
            reject(new LeveeError('timeout', 'Gave up waiting for an image-processing slot'));
          };
          queue.push(turn);
          signal?.addEventListener('abort', onAbort, { once: true });
        });
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const next = queue.shift();
        if (next) next();
        else free++;
      };
    },
  };
}

/** sharp's error messages for what a client sent, mapped to the catalogue. */
function imageError(e: unknown, maxPixels: number): Error {
  const message = (e as Error).message ?? String(e);
  if (/exceeds pixel limit/i.test(message)) return new LeveeError('image_too_large', `The image has more than ${maxPixels} pixels`);
  if (/timeout/i.test(message)) return new LeveeError('timeout', 'Processing the image took too long');
  return new LeveeError('invalid_image', `The image cannot be decoded: ${message.slice(0, 200)}`);
}

export function createImageProcessor(opts: ImageProcessorOptions = {}): ImageProcessor {
  const maxPixels = opts.maxPixels ?? 50_000_000;
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const slots = semaphore(opts.concurrency ?? 2);

  async function render(input: Buffer, specs: VariantSpec[]): Promise<ProcessedVariant[]> {
    // failOn 'error': a truncated or corrupt image fails instead of yielding a half-grey picture.
    const base = sharp(input, { limitInputPixels: maxPixels, failOn: 'error', sequentialRead: true })
      .rotate()
      .timeout({ seconds: Math.max(1, Math.ceil(timeoutMs / 1000)) });
    // Decode once per variant from the same input; reading the header first rejects bombs cheaply.
    await base.clone().metadata();
    return Promise.all(
      specs.map(async (v): Promise<ProcessedVariant> => {
        const { data, info } = await base
          .clone()
          .resize({ width: v.width, height: v.height, fit: v.fit ?? 'inside', withoutEnlargement: true })
          .webp({ quality: v.quality ?? 80 })
          .toBuffer({ resolveWithObject: true });
        return { name: v.name, contentType: 'image/webp', data, width: info.width, height: info.height, size: data.length, sha256: createHash('sha256').update(data).digest('hex') };
      }),
    );
  }

  return {
    get waiting() {
      return slots.waiting;
    },
    async variants(input, specs, signal) {
      const release = await slots.acquire(signal);
      let timer: NodeJS.Timeout | undefined;
      try {
        const stop = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new LeveeError('timeout', `Processing the image took longer than ${timeoutMs} ms`)), timeoutMs);
          signal?.addEventListener('abort', () => reject(new LeveeError('timeout', 'Image processing was cancelled')), { once: true });
        });
        stop.catch(() => {}); // an abort after the work is done rejects nobody's promise
        // The slot is held until libvips is done even if the caller gave up: memory stays bounded.
        const work = render(input, specs);
        work.then(release, release);
        return await Promise.race([work.catch((e) => Promise.reject(imageError(e, maxPixels))), stop]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
