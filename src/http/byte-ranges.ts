import { LeveeError } from '../lib/errors.js';

// Conditional and partial GETs of stored files (RFC 9110 §13–14): `If-None-Match` against a strong
// ETag, and one `Range` per request (several ranges, or a malformed header, are ignored: the whole
// file is sent, as the RFC allows). A range that starts past the end is 416 with `Content-Range: */size`.

/** Whether `If-None-Match` matches `etag` (weak comparison, as the RFC prescribes for this header). */
export function ifNoneMatch(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  const bare = (t: string) => t.trim().replace(/^W\//, '');
  const want = bare(etag);
  return header.split(',').some((t) => t.trim() === '*' || bare(t) === want);
}

/**
 * The inclusive range `Range` asks for in a file of `size` bytes; undefined for the whole file.
 * `If-Range` with another validator than `etag` also means the whole file.
 */
export function requestedRange(header: string | undefined, ifRange: string | undefined, etag: string, size: number): { start: number; end: number } | undefined {
  if (!header || (ifRange !== undefined && ifRange.trim() !== etag)) return undefined;
  const m = /^bytes=(\d{0,15})-(\d{0,15})$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) throw unsatisfiable(size);
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (m[2] !== '' && Number(m[2]) < start) return undefined; // invalid: ignored
  if (start >= size) throw unsatisfiable(size);
  return { start, end };
}

const unsatisfiable = (size: number) => new LeveeError('range_not_satisfiable', `The file has ${size} bytes`, { extra: { size } });
