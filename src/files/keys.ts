import { UUID } from '../lib/ids.js';

// Storage keys, all made here from ids and hashes (never from a user's file name):
//   uploads/<file id>                          bytes arriving through tus or a one-shot upload
//   <bucket>/<file id>/<name>-<sha256:32>.<ext> a verified original (name `original`) or a variant
// A finished object's key names its content, so the key — and the public URL made from it — can be
// cached forever (`immutable`): new content always gets a new key.

const EXTENSIONS: Record<string, string> = {
  'image/jpeg': 'jpg',
  'image/png': 'png',
  'image/webp': 'webp',
  'image/gif': 'gif',
  'image/avif': 'avif',
  'image/heic': 'heic',
  'image/heif': 'heif',
  'application/pdf': 'pdf',
  'video/mp4': 'mp4',
  'video/quicktime': 'mov',
  'video/webm': 'webm',
  'text/plain': 'txt',
};

export const uploadKey = (fileId: string) => `uploads/${fileId}`;

export const objectKey = (bucket: string, fileId: string, name: string, sha256: string, contentType: string) =>
  `${bucket}/${fileId}/${name}-${sha256.slice(0, 32)}.${EXTENSIONS[contentType] ?? 'bin'}`;

const OBJECT_KEY = /^([a-z][a-z0-9-]{0,31})\/([0-9a-f-]{36})\/([a-z][a-z0-9-]{0,31})-[0-9a-f]{32}\.[a-z0-9]{1,5}$/;

/** The parts of a finished object's key, or undefined for anything else (a probe, a typo). */
export function parseObjectKey(key: string): { bucket: string; fileId: string; name: string } | undefined {
  const m = OBJECT_KEY.exec(key);
  if (!m || !UUID.test(m[2]!)) return undefined;
  return { bucket: m[1]!, fileId: m[2]!, name: m[3]! };
}
