import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { LeveeError } from '../../lib/errors.js';
import { currentDeadline, deadlineExceeded } from '../../protection/deadline.js';

// What both adapters share: which keys are acceptable, how a call is bounded in time, and a
// pass-through that counts and hashes the bytes of a put as they stream by.

/** Levee-made keys only: lower-case segments of [a-z0-9._-] joined by `/`; no `..`, no leading dot. */
const SAFE_KEY = /^(?!.*(?:^|\/)\.)(?:[a-z0-9][a-z0-9._-]*)(?:\/[a-z0-9][a-z0-9._-]*)*$/;
export const MAX_KEY_LENGTH = 512;

/** Throws (a plain Error: a caller bug, not a client's mistake) unless `key` is a safe object key. */
export function assertSafeKey(key: string): void {
  if (key.length === 0 || key.length > MAX_KEY_LENGTH || !SAFE_KEY.test(key)) throw new Error(`unsafe object key ${JSON.stringify(key.slice(0, 80))}`);
}

/**
 * Counts and hashes the bytes flowing through, and checks them before they are all through: the
 * last chunk is held back until the source has ended and the byte count (`size`) and the SHA-256
 * (`sha256`) are right. A wrong body thus fails the stream before the storage has received every
 * byte it was told to expect (Content-Length), so the storage never completes the object.
 */
export class Measure extends Transform {
  bytes = 0;
  sha256 = '';
  readonly #hash = createHash('sha256');
  #held: Buffer | undefined;
  constructor(private readonly expect: { size?: number | undefined; sha256?: string | undefined } = {}) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    const { size } = this.expect;
    if (size !== undefined && this.bytes > size) return cb(new LeveeError('bad_request', `The body has more than the declared ${size} bytes`));
    this.#hash.update(chunk);
    const previous = this.#held;
    this.#held = chunk;
    cb(null, previous);
  }
  override _flush(cb: TransformCallback): void {
    const { size, sha256 } = this.expect;
    if (size !== undefined && this.bytes !== size) return cb(new LeveeError('bad_request', `The body had ${this.bytes} bytes, not the declared ${size}`));
    this.sha256 = this.#hash.digest('hex');
    if (sha256 !== undefined && sha256.toLowerCase() !== this.sha256) return cb(new LeveeError('checksum_mismatch', 'The bytes do not match their SHA-256'));
    cb(null, this.#held);
  }
}

export const notFound = (key: string) => new LeveeError('file_not_found', `No object at ${key}`);

export interface Bounded {
  signal: AbortSignal;
  /** The error to throw for an abort: the request's deadline, the caller, or the adapter's own timeout. */
  abortError(what: string): Error;
  /** The call is over (or its response arrived and its body streams at the reader's pace): stop the clock. */
  release(): void;
}

/**
 * A signal that aborts at the first of: `timeoutMs`, the caller's signal, the request's deadline.
 * Its timer keeps the process alive (unlike AbortSignal.timeout), so a stalled call always ends;
 * call `release()` when done.
 */
export function bound(timeoutMs: number, signal?: AbortSignal): Bounded {
  const controller = new AbortController();
  const deadline = currentDeadline()?.signal;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, timeoutMs);
  const onAbort = () => controller.abort();
  const outer = [signal, deadline].filter((s): s is AbortSignal => s !== undefined);
  for (const s of outer) {
    if (s.aborted) controller.abort();
    else s.addEventListener('abort', onAbort, { once: true });
  }
  return {
    signal: controller.signal,
    release() {
      clearTimeout(timer);
      for (const s of outer) s.removeEventListener('abort', onAbort);
    },
    abortError(what) {
      if (deadline?.aborted) return deadlineExceeded(what);
      if (timedOut) return new LeveeError('storage_unavailable', `${what} took longer than ${timeoutMs} ms`);
      return new LeveeError('storage_unavailable', `${what} was cancelled`, { cause: signal?.reason });
    },
  };
}

/** The inclusive range actually served; a start past the end is LeveeError('range_not_satisfiable'). */
export function clampRange(r: { start: number; end?: number | undefined }, size: number): { start: number; end: number } {
  const end = Math.min(r.end ?? size - 1, size - 1);
  if (!Number.isInteger(r.start) || r.start < 0 || r.start > end) throw new LeveeError('range_not_satisfiable', `Range ${r.start}-${r.end ?? ''} is outside the object (${size} bytes)`, { extra: { size } });
  return { start: r.start, end };
}
