import type { LightMyRequestResponse } from 'fastify';
import type { TestApp } from '../support/app.js';

// tus 1.0 requests over Fastify inject, for the HTTP suites of media.

export const TUS = { 'tus-resumable': '1.0.0' };
export const PDF = Buffer.from('%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n%%EOF\n');
const b64 = (s: string) => Buffer.from(s).toString('base64');

export const metadata = (m: Record<string, string>) =>
  Object.entries(m)
    .map(([k, v]) => `${k} ${b64(v)}`)
    .join(',');

export function tusCreate(t: TestApp, token: string, o: { bucket: string; type: string; size: number | string; filename?: string; headers?: Record<string, string>; body?: Buffer }): Promise<LightMyRequestResponse> {
  return t.app.inject({
    method: 'POST',
    url: '/v1/files/uploads',
    headers: {
      ...TUS,
      authorization: `Bearer ${token}`,
      'upload-length': String(o.size),
      'upload-metadata': metadata({ bucket: o.bucket, filetype: o.type, ...(o.filename !== undefined ? { filename: o.filename } : {}) }),
      ...(o.body ? { 'content-type': 'application/offset+octet-stream' } : {}),
      ...o.headers,
    },
    ...(o.body ? { payload: o.body } : {}),
  });
}

export function tusPatch(t: TestApp, token: string, location: string, offset: number, bytes: Buffer, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return t.app.inject({
    method: 'PATCH',
    url: location,
    headers: { ...TUS, authorization: `Bearer ${token}`, 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream', ...headers },
    payload: bytes,
  });
}

export const tusHead = (t: TestApp, token: string, location: string) => t.app.inject({ method: 'HEAD', url: location, headers: { ...TUS, authorization: `Bearer ${token}` } });

/** Uploads `bytes` in `chunks` PATCHes; returns the file id. */
export async function tusUpload(t: TestApp, token: string, bucket: string, type: string, bytes: Buffer, chunks = 1): Promise<{ id: string; last: LightMyRequestResponse }> {
  const created = await tusCreate(t, token, { bucket, type, size: bytes.length });
  if (created.statusCode !== 201) throw new Error(`create: ${created.statusCode} ${created.body}`);
  const location = created.headers.location as string;
  const step = Math.ceil(bytes.length / chunks);
  let last!: LightMyRequestResponse;
  for (let off = 0; off < bytes.length; off += step) {
    last = await tusPatch(t, token, location, off, bytes.subarray(off, off + step));
    if (last.statusCode !== 204) return { id: location.split('/').pop()!, last };
  }
  return { id: location.split('/').pop()!, last };
}
