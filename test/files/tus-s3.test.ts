import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { createTestApp, signUp, type TestApp } from '../support/app.js';
import { engines } from '../support/engines.js';
import { startS3, type TestS3 } from '../support/s3.js';
import { metadata, PDF, TUS, tusCreate, tusHead, tusPatch } from './http-support.js';

// tus 1.0 against Levee with S3 storage: @tus/s3-store (multipart uploads, 8 MiB parts — the
// default, as in production) on s3rver with the ListParts / AbortMultipartUpload shim of
// test/support/s3.ts, whose CompleteMultipartUpload refuses parts S3 would (under 5 MiB but the
// last, wrong ETag, wrong order). ListParts answers at most 2 parts a page here, so every upload of
// 3 parts makes the store follow IsTruncated. Also: a PATCH cut mid-way over a real connection,
// S3 failing CompleteMultipartUpload (the resuming HEAD completes the file), termination. On both
// database engines.

const MiB = 1024 * 1024;
const PART = 8 * MiB;
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
/** A PDF (by its magic bytes) of `size` random-ish bytes. */
const pdfOf = (size: number) => Buffer.concat([PDF, randomBytes(size - PDF.length)]);

function problem(res: LightMyRequestResponse, status: number, code: string) {
  assert.equal(res.statusCode, status, res.body);
  if (res.raw.req.method !== 'HEAD') assert.equal(res.json().code, code, res.body);
}

for (const engine of await engines()) {
  describe(`tus uploads on S3 (s3rver) on ${engine.name}`, { skip: engine.skip }, () => {
    let s3: TestS3;
    let t: TestApp;
    let alice: Awaited<ReturnType<typeof signUp>>;
    const fileRow = async (id: string) =>
      (await t.database.db.query<{ state: string; size: string; sha256: string | null; key: string | null }>('SELECT state, size, sha256, key FROM files WHERE id = $1', [id])).rows[0];
    /** The file's original, fetched the way a client does: its signed URL, then the presigned S3 redirect. */
    const download = async (id: string) => {
      const view = (await t.call('GET', `/v1/files/${id}`, { token: alice.accessToken })).json();
      const res = await t.app.inject({ method: 'GET', url: view.urls.original });
      assert.equal(res.statusCode, 302, res.body);
      const direct = await fetch(res.headers.location as string);
      assert.equal(direct.status, 200);
      return Buffer.from(await direct.arrayBuffer());
    };
    const uploadOf = async (id: string) => (await s3.multipartUploads()).find((u) => u.key === `uploads/${id}`);

    before(async () => {
      s3 = await startS3('levee-test', { listPartsPageSize: 2 });
      const storage = { engine: 's3' as const, bucket: s3.bucket, endpoint: s3.endpoint, region: s3.region, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, forcePathStyle: true };
      t = await createTestApp(engine, { files: { storage } });
      alice = await signUp(t);
    });
    after(async () => {
      await t?.close();
      await s3?.stop();
    });

    it('3 chunks with a HEAD (resume) between each: whole parts, the short chunk held in .part, completion, the same bytes back', async () => {
      // 8 MiB (part 1), 3 MiB (too short for a part: kept in `<id>.part`), 6 MiB (with the held
      // 3 MiB: part 2 of 8 MiB and part 3 of 1 MiB, the last, which may be short).
      const bytes = pdfOf(17 * MiB);
      const created = await tusCreate(t, alice.accessToken, { bucket: 'attachments', type: 'application/pdf', size: bytes.length });
      assert.equal(created.statusCode, 201, created.body);
      const location = created.headers.location as string;
      const id = location.split('/').pop()!;
      assert.deepEqual(await uploadOf(id).then((u) => u?.parts), [], 'creation starts a multipart upload');
      assert.deepEqual(await s3.objectKeys(`uploads/${id}`), [`uploads/${id}.info`]);

      const first = await tusPatch(t, alice.accessToken, location, 0, bytes.subarray(0, PART));
      assert.equal(first.statusCode, 204, first.body);
      assert.equal(first.headers['upload-offset'], String(PART));
      assert.deepEqual((await uploadOf(id))?.parts, [{ number: 1, size: PART }]);
      // The app was in the background and asks where to resume (ListParts).
      const head1 = await tusHead(t, alice.accessToken, location);
      assert.equal(head1.statusCode, 200);
      assert.equal(head1.headers['upload-offset'], String(PART));
      assert.equal(head1.headers['upload-length'], String(bytes.length));

      const second = await tusPatch(t, alice.accessToken, location, PART, bytes.subarray(PART, 11 * MiB));
      assert.equal(second.statusCode, 204, second.body);
      assert.equal(second.headers['upload-offset'], String(11 * MiB));
      assert.deepEqual((await uploadOf(id))?.parts, [{ number: 1, size: PART }], 'a 3 MiB chunk is not a part (S3 wants 5 MiB)');
      assert.deepEqual(await s3.objectKeys(`uploads/${id}`), [`uploads/${id}.info`, `uploads/${id}.part`]);
      const head2 = await tusHead(t, alice.accessToken, location);
      assert.equal(head2.headers['upload-offset'], String(11 * MiB), 'the offset counts the bytes held in .part');
      problem(await tusPatch(t, alice.accessToken, location, PART, bytes.subarray(PART)), 409, 'upload_offset_mismatch');

      const last = await tusPatch(t, alice.accessToken, location, 11 * MiB, bytes.subarray(11 * MiB));
      assert.equal(last.statusCode, 204, last.body);
      assert.equal(last.headers['upload-offset'], String(bytes.length));
      assert.equal(last.headers['levee-file-state'], 'ready');

      const row = await fileRow(id);
      assert.equal(row?.state, 'ready');
      assert.equal(Number(row?.size), bytes.length);
      assert.equal(row?.sha256, sha256(bytes));
      assert.equal(await uploadOf(id), undefined, 'the multipart upload is completed');
      assert.deepEqual(await s3.objectKeys(`uploads/${id}`), [], 'the upload area is emptied (object, .info, .part)');
      assert.equal(sha256(await download(id)), sha256(bytes), 'the bytes downloaded are the bytes sent');
      // A HEAD after completion (the client lost the last answer) says it is all there.
      assert.equal((await tusHead(t, alice.accessToken, location)).headers['upload-offset'], String(bytes.length));
    });

    it('over a real connection: a PATCH cut mid-way keeps its whole parts, and the upload resumes from HEAD to the same bytes', async () => {
      const address = await t.app.listen({ port: 0, host: '127.0.0.1' }).catch(() => `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`);
      const base = new URL(address);
      const auth = { ...TUS, authorization: `Bearer ${alice.accessToken}` };
      const bytes = pdfOf(20 * MiB);
      const created = await fetch(new URL('/v1/files/uploads', base), {
        method: 'POST',
        headers: { ...auth, 'upload-length': String(bytes.length), 'upload-metadata': metadata({ bucket: 'attachments', filetype: 'application/pdf' }) },
      });
      assert.equal(created.status, 201);
      const location = created.headers.get('location')!;
      const id = location.split('/').pop()!;

      // Send 11 of the 20 MiB; once part 1 is in S3 (Levee has read past 8 MiB), the network drops.
      const sent = 11 * MiB;
      await new Promise<void>((done, fail) => {
        const req = httpRequest(new URL(location, base), {
          method: 'PATCH',
          headers: { ...auth, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream', 'content-length': String(bytes.length) },
        });
        req.on('error', () => {});
        req.on('close', () => done());
        req.write(bytes.subarray(0, sent), async () => {
          for (let i = 0; i < 200; i++) {
            if ((await uploadOf(id))?.parts.length) return void req.destroy();
            await new Promise((r) => setTimeout(r, 50));
          }
          req.destroy();
          fail(new Error('part 1 never reached S3'));
        });
      });

      // Levee notices the cut and drops the bytes past the last whole part; a HEAD that comes first
      // ends the PATCH gracefully instead, keeping them (in a part or .part). Either way it resumes.
      const head = await fetch(new URL(location, base), { method: 'HEAD', headers: auth });
      assert.equal(head.status, 200);
      const offset = Number(head.headers.get('upload-offset'));
      assert.ok(offset >= PART && offset <= sent, `the whole part that arrived is kept (offset ${offset})`);
      const parts = (await uploadOf(id))!.parts;
      const held = (await s3.objectKeys(`uploads/${id}.part`)).length > 0;
      assert.ok(held || parts.reduce((n, p) => n + p.size, 0) === offset, 'the offset is what S3 holds');

      const rest = await fetch(new URL(location, base), {
        method: 'PATCH',
        headers: { ...auth, 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' },
        body: bytes.subarray(offset),
      });
      assert.equal(rest.status, 204, await rest.text());
      assert.equal(rest.headers.get('upload-offset'), String(bytes.length));
      assert.equal(rest.headers.get('levee-file-state'), 'ready');
      assert.equal((await fileRow(id))?.sha256, sha256(bytes));
      assert.equal(sha256(await download(id)), sha256(bytes), 'the file is exactly what was sent, across the cut');
      assert.equal(await uploadOf(id), undefined);
      assert.deepEqual(await s3.objectKeys(`uploads/${id}`), []);
    });

    it('S3 fails to complete the multipart upload: the last PATCH is 503, and the HEAD of the resuming client completes the file', async () => {
      const bytes = pdfOf(9 * MiB);
      const created = await tusCreate(t, alice.accessToken, { bucket: 'attachments', type: 'application/pdf', size: bytes.length });
      const location = created.headers.location as string;
      const id = location.split('/').pop()!;
      assert.equal((await tusPatch(t, alice.accessToken, location, 0, bytes.subarray(0, PART))).statusCode, 204);
      s3.failNext('CompleteMultipartUpload', 2); // the SDK tries twice
      const last = await tusPatch(t, alice.accessToken, location, PART, bytes.subarray(PART));
      problem(last, 503, 'storage_unavailable');
      assert.equal((await uploadOf(id))?.parts.length, 2, 'every byte is in S3, as parts');
      // The client resumes: HEAD. S3 still fails: 503 again, and the file stays uploading.
      s3.failNext('CompleteMultipartUpload', 2);
      problem(await tusHead(t, alice.accessToken, location), 503, 'storage_unavailable');
      assert.equal((await fileRow(id))?.state, 'uploading');
      // S3 is back: the HEAD completes the multipart upload, then the file.
      const head = await tusHead(t, alice.accessToken, location);
      assert.equal(head.statusCode, 200);
      assert.equal(head.headers['upload-offset'], String(bytes.length));
      assert.equal(head.headers['upload-length'], String(bytes.length));
      const row = await fileRow(id);
      assert.equal(row?.state, 'ready');
      assert.equal(row?.sha256, sha256(bytes));
      assert.equal(await uploadOf(id), undefined);
      assert.deepEqual(await s3.objectKeys(`uploads/${id}`), []);
      assert.equal(sha256(await download(id)), sha256(bytes));
    });

    it('termination (DELETE) aborts the multipart upload and deletes its objects; the URL is then 404', async () => {
      const bytes = pdfOf(12 * MiB);
      const created = await tusCreate(t, alice.accessToken, { bucket: 'attachments', type: 'application/pdf', size: bytes.length });
      const location = created.headers.location as string;
      const id = location.split('/').pop()!;
      assert.equal((await tusPatch(t, alice.accessToken, location, 0, bytes.subarray(0, PART))).statusCode, 204);
      assert.equal((await tusPatch(t, alice.accessToken, location, PART, bytes.subarray(PART, PART + MiB))).statusCode, 204);
      assert.deepEqual((await uploadOf(id))?.parts, [{ number: 1, size: PART }]);
      assert.deepEqual(await s3.objectKeys(`uploads/${id}`), [`uploads/${id}.info`, `uploads/${id}.part`]);

      const del = await t.app.inject({ method: 'DELETE', url: location, headers: { ...TUS, authorization: `Bearer ${alice.accessToken}` } });
      assert.equal(del.statusCode, 204, del.body);
      assert.equal(await uploadOf(id), undefined, 'the multipart upload is aborted (its parts are gone)');
      assert.deepEqual(await s3.objectKeys(`uploads/${id}`), [], '.info and .part are deleted');
      assert.equal(await fileRow(id), undefined);
      problem(await tusHead(t, alice.accessToken, location), 404, 'file_not_found');
      problem(await tusPatch(t, alice.accessToken, location, PART + MiB, bytes.subarray(PART + MiB)), 404, 'file_not_found');
    });
  });
}
