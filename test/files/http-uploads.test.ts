import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { createTestApp, signUp, type TestApp } from '../support/app.js';
import { engines } from '../support/engines.js';
import { metadata, PDF, TUS, tusCreate, tusHead, tusPatch, tusUpload } from './http-support.js';
import { jpeg, pngBomb } from './images.js';

// Uploads over HTTP (tus 1.0 and one-shot) on both database engines with the local storage: the
// happy paths and every kind of bad input of issue 6 item 5 — each a 4xx problem+json, with
// nothing stored and nothing half-visible (checked in the storage directory and the files table).

const QUOTA = 2 * 1024 * 1024;
const ONE_SHOT_MAX = 100_000;

function problem(res: LightMyRequestResponse, status: number, code: string) {
  assert.equal(res.statusCode, status, res.body);
  if (res.raw.req.method !== 'HEAD') {
    assert.match(String(res.headers['content-type']), /^application\/problem\+json/, res.body);
    assert.equal(res.json().code, code, res.body);
  }
}

/** Every file under the storage directory (objects and sidecars), relative to it. */
function stored(dir: string): string[] {
  const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [relative(dir, join(d, e.name))]));
  return walk(dir).filter((f) => !f.startsWith('tmp/'));
}

for (const engine of await engines()) {
  describe(`file uploads over HTTP on ${engine.name}`, { skip: engine.skip }, () => {
    let t: TestApp;
    let alice: Awaited<ReturnType<typeof signUp>>;
    let bob: Awaited<ReturnType<typeof signUp>>;
    const fileRow = async (id: string) => (await t.database.db.query<{ state: string; failure_reason: string | null; key: string | null }>('SELECT state, failure_reason, key FROM files WHERE id = $1', [id])).rows[0];
    const objectsOf = (id: string) => stored(t.filesDir!).filter((f) => f.includes(id));

    before(async () => {
      t = await createTestApp(engine, { files: true, overrides: { uploadQuotaBytes: QUOTA, uploadOneShotMaxBytes: ONE_SHOT_MAX } });
      alice = await signUp(t);
      bob = await signUp(t);
    });
    after(() => t.close());

    it('tus: creates, takes 3 chunks with a pause and a resume from HEAD, completes, processes to ready with variants', async () => {
      const img = await jpeg(900, 600);
      const created = await tusCreate(t, alice.accessToken, { bucket: 'avatars', type: 'image/jpeg', size: img.length, filename: 'me.jpg' });
      assert.equal(created.statusCode, 201, created.body);
      assert.equal(created.headers['tus-resumable'], '1.0.0');
      const location = created.headers.location as string;
      const id = location.split('/').pop()!;
      assert.match(location, /^\/v1\/files\/uploads\/[0-9a-f-]{36}$/);
      const third = Math.ceil(img.length / 3);

      assert.equal((await tusPatch(t, alice.accessToken, location, 0, img.subarray(0, third))).statusCode, 204);
      // The app "goes to the background": it forgot the offset and asks the server.
      const head = await tusHead(t, alice.accessToken, location);
      assert.equal(head.statusCode, 200);
      assert.equal(head.headers['upload-offset'], String(third));
      assert.equal(head.headers['upload-length'], String(img.length));
      assert.equal(head.headers['cache-control'], 'no-store');
      const mid = await t.call('GET', `/v1/files/${id}`, { token: alice.accessToken });
      assert.equal(mid.json().state, 'uploading');
      assert.deepEqual(mid.json().urls, {}, 'nothing is servable before it is complete and verified');

      const second = await tusPatch(t, alice.accessToken, location, third, img.subarray(third, 2 * third));
      assert.equal(second.headers['upload-offset'], String(2 * third));
      const last = await tusPatch(t, alice.accessToken, location, 2 * third, img.subarray(2 * third));
      assert.equal(last.statusCode, 204, last.body);
      assert.equal(last.headers['upload-offset'], String(img.length));
      assert.equal(last.headers['levee-file-state'], 'processing');

      const processing = await t.call('GET', `/v1/files/${id}`, { token: alice.accessToken });
      assert.equal(processing.json().state, 'processing');
      assert.ok(t.enqueued.includes(id), 'the image job was enqueued');
      assert.equal(await t.processFile!({ fileId: id }), 'ready');
      const ready = (await t.call('GET', `/v1/files/${id}`, { token: alice.accessToken })).json();
      assert.equal(ready.state, 'ready');
      assert.deepEqual(Object.keys(ready.variants).sort(), ['medium', 'thumb']);
      assert.equal(ready.variants.thumb.width, 128);
      assert.match(ready.urls.thumb, /^\/v1\/files\/public\/avatars\/.+\/thumb-[0-9a-f]{32}\.webp$/);
      const thumb = await t.app.inject({ method: 'GET', url: ready.urls.thumb });
      assert.equal(thumb.statusCode, 200);
      assert.equal(thumb.headers['content-type'], 'image/webp');
      // A HEAD after completion (the client lost the last answer) says it is all there.
      const after = await tusHead(t, alice.accessToken, location);
      assert.equal(after.headers['upload-offset'], String(img.length));
      assert.deepEqual(objectsOf(id).filter((f) => f.includes('uploads/')), [], 'the upload area is emptied');
      const list = await t.call('GET', '/v1/files', { token: alice.accessToken });
      assert.ok(list.json().items.some((f: { id: string }) => f.id === id));
    });

    it('tus over a real connection: a PATCH cut mid-way keeps what arrived, and the upload resumes from there', async () => {
      const address = await t.app.listen({ port: 0, host: '127.0.0.1' }).catch(() => `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`);
      const base = new URL(address);
      const bytes = Buffer.concat([PDF, Buffer.alloc(200_000, 0x20)]);
      const created = await fetch(new URL('/v1/files/uploads', base), {
        method: 'POST',
        headers: { ...TUS, authorization: `Bearer ${alice.accessToken}`, 'upload-length': String(bytes.length), 'upload-metadata': metadata({ bucket: 'attachments', filetype: 'application/pdf' }) },
      });
      assert.equal(created.status, 201);
      const location = created.headers.get('location')!;
      // Send 120 000 of the 200 000+ bytes, then the network drops.
      await new Promise<void>((done) => {
        const req = httpRequest(new URL(location, base), {
          method: 'PATCH',
          headers: { ...TUS, authorization: `Bearer ${alice.accessToken}`, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream', 'content-length': String(bytes.length) },
        });
        req.on('error', () => done());
        req.write(bytes.subarray(0, 120_000), () => setTimeout(() => req.destroy(), 300));
        req.on('close', () => done());
      });
      let offset = 0;
      for (let i = 0; i < 50 && offset === 0; i++) {
        const head = await fetch(new URL(location, base), { method: 'HEAD', headers: { ...TUS, authorization: `Bearer ${alice.accessToken}` } });
        offset = Number(head.headers.get('upload-offset'));
        if (offset === 0) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(offset > 0 && offset <= 120_000, `the bytes that arrived are kept (offset ${offset})`);
      const rest = await fetch(new URL(location, base), {
        method: 'PATCH',
        headers: { ...TUS, authorization: `Bearer ${alice.accessToken}`, 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' },
        body: bytes.subarray(offset),
      });
      assert.equal(rest.status, 204, await rest.text());
      assert.equal(rest.headers.get('levee-file-state'), 'ready');
      const id = location.split('/').pop()!;
      const view = (await t.call('GET', `/v1/files/${id}`, { token: alice.accessToken })).json();
      const got = await t.app.inject({ method: 'GET', url: view.urls.original });
      assert.equal(got.statusCode, 200);
      assert.ok(got.rawPayload.equals(bytes), 'the file is exactly what was sent, across the cut');
    });

    it('tus checksum extension: a chunk whose sha256 does not match is 460 and not appended; sha1 works too', async () => {
      const created = await tusCreate(t, alice.accessToken, { bucket: 'attachments', type: 'application/pdf', size: PDF.length });
      const location = created.headers.location as string;
      const chunk = PDF.subarray(0, 20);
      const wrong = createHash('sha256').update('something else').digest('base64');
      problem(await tusPatch(t, alice.accessToken, location, 0, chunk, { 'upload-checksum': `sha256 ${wrong}` }), 460, 'checksum_mismatch');
      assert.equal((await tusHead(t, alice.accessToken, location)).headers['upload-offset'], '0', 'nothing of the bad chunk was appended');
      problem(await tusPatch(t, alice.accessToken, location, 0, chunk, { 'upload-checksum': `md5 ${createHash('md5').update(chunk).digest('base64')}` }), 400, 'bad_request');
      const ok = await tusPatch(t, alice.accessToken, location, 0, chunk, { 'upload-checksum': `sha1 ${createHash('sha1').update(chunk).digest('base64')}` });
      assert.equal(ok.statusCode, 204, ok.body);
      const rest = PDF.subarray(20);
      const done = await tusPatch(t, alice.accessToken, location, 20, rest, { 'upload-checksum': `sha256 ${createHash('sha256').update(rest).digest('base64')}` });
      assert.equal(done.statusCode, 204, done.body);
      assert.equal(done.headers['levee-file-state'], 'ready');
      const options = await t.app.inject({ method: 'OPTIONS', url: '/v1/files/uploads' });
      assert.match(String(options.headers['tus-extension']), /checksum/);
      assert.equal(options.headers['tus-checksum-algorithm'], 'sha1,sha256');
    });

    it('tus: a wrong offset is 409 upload_offset_mismatch and changes nothing', async () => {
      const created = await tusCreate(t, alice.accessToken, { bucket: 'attachments', type: 'application/pdf', size: PDF.length });
      const location = created.headers.location as string;
      await tusPatch(t, alice.accessToken, location, 0, PDF.subarray(0, 10));
      problem(await tusPatch(t, alice.accessToken, location, 5, PDF.subarray(5)), 409, 'upload_offset_mismatch');
      problem(await tusPatch(t, alice.accessToken, location, 30, PDF.subarray(30)), 409, 'upload_offset_mismatch');
      assert.equal((await tusHead(t, alice.accessToken, location)).headers['upload-offset'], '10');
    });

    it("tus: someone else's upload URL is 404 file_not_found for HEAD, PATCH and DELETE, and stays untouched", async () => {
      const created = await tusCreate(t, alice.accessToken, { bucket: 'attachments', type: 'application/pdf', size: PDF.length });
      const location = created.headers.location as string;
      await tusPatch(t, alice.accessToken, location, 0, PDF.subarray(0, 10));
      problem(await tusPatch(t, bob.accessToken, location, 10, PDF.subarray(10)), 404, 'file_not_found');
      problem(await tusHead(t, bob.accessToken, location), 404, 'file_not_found');
      problem(await t.app.inject({ method: 'DELETE', url: location, headers: { ...TUS, authorization: `Bearer ${bob.accessToken}` } }), 404, 'file_not_found');
      problem(await t.call('GET', `/v1/files/${location.split('/').pop()}`, { token: bob.accessToken }), 404, 'file_not_found');
      problem(await tusPatch(t, '', location, 10, PDF.subarray(10)).then((r) => r), 401, 'invalid_token');
      const head = await tusHead(t, alice.accessToken, location);
      assert.equal(head.headers['upload-offset'], '10', "the owner's upload is untouched");
      // A made-up upload id is the same 404.
      problem(await tusHead(t, alice.accessToken, '/v1/files/uploads/01900000-0000-7000-8000-000000000000'), 404, 'file_not_found');
    });

    it('path traversal: a file name never becomes a path, and odd upload URLs are refused', async () => {
      const before = stored(t.filesDir!);
      const evil = '../../../../etc/passwd';
      const created = await tusCreate(t, alice.accessToken, { bucket: 'attachments', type: 'application/pdf', size: PDF.length, filename: evil, body: PDF });
      assert.equal(created.statusCode, 201, created.body);
      const id = (created.headers.location as string).split('/').pop()!;
      const added = stored(t.filesDir!).filter((f) => !before.includes(f));
      assert.ok(added.length > 0);
      for (const f of added) {
        assert.ok(!f.includes('..') && !f.includes('passwd'), `stored as ${f}`);
        assert.ok(f.includes(id), `keys are made of ids and hashes: ${f}`);
      }
      const row = await fileRow(id);
      assert.match(row!.key!, /^attachments\/[0-9a-f-]{36}\/original-[0-9a-f]{32}\.pdf$/);
      for (const url of ['/v1/files/uploads/..%2F..%2Fetc%2Fpasswd', '/v1/files/public/../../etc/passwd', '/v1/files/public/attachments%2F..%2F..%2Fx']) {
        for (const method of ['HEAD', 'PATCH', 'GET'] as const) {
          const res = await t.app.inject({ method, url, headers: { ...TUS, authorization: `Bearer ${alice.accessToken}`, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, payload: method === 'PATCH' ? 'x' : undefined });
          assert.ok(res.statusCode >= 400 && res.statusCode < 500, `${method} ${url}: ${res.statusCode}`);
        }
      }
    });

    it('truncated uploads: an unfinished upload is not visible or servable; termination frees it', async () => {
      const created = await tusCreate(t, alice.accessToken, { bucket: 'attachments', type: 'application/pdf', size: PDF.length });
      const location = created.headers.location as string;
      const id = location.split('/').pop()!;
      await tusPatch(t, alice.accessToken, location, 0, PDF.subarray(0, PDF.length - 5));
      const view = (await t.call('GET', `/v1/files/${id}`, { token: alice.accessToken })).json();
      assert.equal(view.state, 'uploading');
      assert.deepEqual(view.urls, {});
      assert.equal((await fileRow(id))!.key, null, 'no servable key');
      problem(await t.call('GET', `/v1/files/${id}`, { token: bob.accessToken }), 404, 'file_not_found');
      // Completing early is refused by the service: the bytes are short.
      await assert.rejects(t.files!.service.completeUpload(id), (e: { code?: string }) => e.code === 'upload_incomplete');
      const term = await t.app.inject({ method: 'DELETE', url: location, headers: { ...TUS, authorization: `Bearer ${alice.accessToken}` } });
      assert.equal(term.statusCode, 204);
      assert.equal(await fileRow(id), undefined);
      assert.deepEqual(objectsOf(id), [], 'its bytes are gone');
      problem(await tusHead(t, alice.accessToken, location), 404, 'file_not_found');
    });

    it('files over the limit: 413 at creation (bucket and one-shot limits), and when the bytes exceed the declared length', async () => {
      const rowsBefore = (await t.database.db.query('SELECT id FROM files')).rows.length;
      problem(await tusCreate(t, alice.accessToken, { bucket: 'avatars', type: 'image/jpeg', size: 5 * 1024 * 1024 + 1 }), 413, 'file_too_large');
      assert.equal((await t.database.db.query('SELECT id FROM files')).rows.length, rowsBefore, 'no row for a refused upload');
      const big = Buffer.concat([PDF, Buffer.alloc(ONE_SHOT_MAX)]);
      problem(await t.app.inject({ method: 'POST', url: '/v1/files?bucket=attachments', headers: { authorization: `Bearer ${alice.accessToken}`, 'content-type': 'application/pdf' }, payload: big }), 413, 'file_too_large');

      const created = await tusCreate(t, alice.accessToken, { bucket: 'attachments', type: 'application/pdf', size: 20 });
      const location = created.headers.location as string;
      const id = location.split('/').pop()!;
      problem(await tusPatch(t, alice.accessToken, location, 0, PDF), 413, 'file_too_large');
      assert.equal(await fileRow(id), undefined, 'the upload is refused as a whole');
      assert.deepEqual(objectsOf(id), []);
    });

    it('over quota: 413 quota_exceeded at creation, and the refused upload reserves nothing', async () => {
      const carol = await signUp(t);
      const first = await tusCreate(t, carol.accessToken, { bucket: 'attachments', type: 'video/mp4', size: QUOTA - 1000 });
      assert.equal(first.statusCode, 201);
      const over = await tusCreate(t, carol.accessToken, { bucket: 'attachments', type: 'application/pdf', size: 2000 });
      problem(over, 413, 'quota_exceeded');
      assert.equal(over.json().quotaBytes, QUOTA);
      problem(await t.app.inject({ method: 'POST', url: '/v1/files?bucket=attachments', headers: { authorization: `Bearer ${carol.accessToken}`, 'content-type': 'application/pdf' }, payload: Buffer.concat([PDF, Buffer.alloc(2000)]) }), 413, 'quota_exceeded');
      // Terminating the big upload frees the quota.
      await t.app.inject({ method: 'DELETE', url: first.headers.location as string, headers: { ...TUS, authorization: `Bearer ${carol.accessToken}` } });
      assert.equal((await tusCreate(t, carol.accessToken, { bucket: 'attachments', type: 'application/pdf', size: 2000 })).statusCode, 201);
    });

    it('a type that lies about its bytes: 415 file_type_mismatch, nothing stored, nothing half-visible', async () => {
      // tus: declared PNG, the bytes are a PDF.
      const before = stored(t.filesDir!);
      const { id, last } = await tusUpload(t, alice.accessToken, 'attachments', 'image/png', PDF, 2);
      problem(last, 415, 'file_type_mismatch');
      const row = await fileRow(id);
      assert.equal(row!.state, 'failed');
      assert.equal(row!.failure_reason, 'file_type_mismatch');
      assert.equal(row!.key, null);
      assert.deepEqual(stored(t.filesDir!).filter((f) => !before.includes(f)), [], 'no bytes kept anywhere');
      const list = (await t.call('GET', '/v1/files', { token: alice.accessToken })).json();
      assert.ok(!list.items.some((f: { id: string }) => f.id === id), 'not listed');
      problem(await tusHead(t, alice.accessToken, `/v1/files/uploads/${id}`), 415, 'file_type_mismatch');
      // One-shot: declared JPEG, the bytes are a PDF.
      const one = await t.app.inject({ method: 'POST', url: '/v1/files?bucket=avatars', headers: { authorization: `Bearer ${alice.accessToken}`, 'content-type': 'image/jpeg' }, payload: PDF });
      problem(one, 415, 'file_type_mismatch');
      assert.deepEqual(stored(t.filesDir!).filter((f) => !before.includes(f)), []);
      // A type the bucket does not take at all is refused before any byte.
      problem(await tusCreate(t, alice.accessToken, { bucket: 'avatars', type: 'image/svg+xml', size: 10 }), 415, 'unsupported_file_type');
      problem(await tusCreate(t, alice.accessToken, { bucket: 'nope', type: 'image/png', size: 10 }), 404, 'unknown_bucket');
    });

    it('images over the pixel limit: the file fails with image_too_large, its original deleted', async () => {
      const bomb = pngBomb();
      const { id, last } = await tusUpload(t, alice.accessToken, 'attachments', 'image/png', bomb);
      assert.equal(last.statusCode, 204, last.body);
      assert.equal(last.headers['levee-file-state'], 'processing');
      assert.equal(await t.processFile!({ fileId: id }), 'failed');
      const view = (await t.call('GET', `/v1/files/${id}`, { token: alice.accessToken })).json();
      assert.equal(view.state, 'failed');
      assert.equal(view.failureReason, 'image_too_large');
      assert.deepEqual(view.urls, {});
      assert.deepEqual(objectsOf(id), [], 'the refused original is not kept');
    });

    it('malformed tus requests are 400 problem+json', async () => {
      const auth = { authorization: `Bearer ${alice.accessToken}` };
      const create = (headers: Record<string, string>) => t.app.inject({ method: 'POST', url: '/v1/files/uploads', headers: { ...auth, ...headers } });
      const meta = metadata({ bucket: 'attachments', filetype: 'application/pdf' });
      problem(await create({ 'upload-length': '10', 'upload-metadata': meta }), 400, 'bad_request'); // no Tus-Resumable
      problem(await create({ ...TUS, 'upload-metadata': meta }), 400, 'bad_request'); // no length
      problem(await create({ ...TUS, 'upload-defer-length': '1', 'upload-metadata': meta }), 400, 'bad_request'); // deferred
      problem(await create({ ...TUS, 'upload-length': '-5', 'upload-metadata': meta }), 400, 'bad_request');
      problem(await create({ ...TUS, 'upload-length': 'ten', 'upload-metadata': meta }), 400, 'bad_request');
      problem(await create({ ...TUS, 'upload-length': '10', 'upload-metadata': 'bucket !!!,,' }), 400, 'bad_request');
      problem(await create({ ...TUS, 'upload-length': '10', 'upload-metadata': metadata({ filetype: 'application/pdf' }) }), 400, 'bad_request'); // no bucket
      problem(await create({ ...TUS, 'upload-length': '0', 'upload-metadata': meta }), 400, 'bad_request'); // empty file
      problem(await create({ ...TUS, 'upload-length': '10', 'upload-metadata': meta, 'upload-concat': 'partial' }), 400, 'bad_request');
      const location = (await tusCreate(t, alice.accessToken, { bucket: 'attachments', type: 'application/pdf', size: PDF.length })).headers.location as string;
      const patch = (headers: Record<string, string>) => t.app.inject({ method: 'PATCH', url: location, headers: { ...auth, ...TUS, ...headers }, payload: PDF });
      problem(await patch({ 'content-type': 'application/offset+octet-stream' }), 400, 'bad_request'); // no offset
      problem(await patch({ 'upload-offset': 'abc', 'content-type': 'application/offset+octet-stream' }), 400, 'bad_request');
      problem(await patch({ 'upload-offset': '0', 'content-type': 'application/json' }), 400, 'bad_request');
      problem(await patch({ 'upload-offset': '0', 'content-type': 'application/offset+octet-stream', 'upload-checksum': 'sha256' }), 400, 'bad_request');
      problem(await t.app.inject({ method: 'POST', url: '/v1/files/uploads', headers: { ...TUS, 'upload-length': '10', 'upload-metadata': meta } }), 401, 'unauthenticated');
      assert.equal((await tusHead(t, alice.accessToken, location)).headers['upload-offset'], '0');
    });

    it('one-shot upload: 201 with the file view; a wrong Content-Digest is 460 and stores nothing', async () => {
      const img = await jpeg(300, 200);
      const digest = createHash('sha256').update(img).digest('base64');
      const ok = await t.app.inject({ method: 'POST', url: '/v1/files?bucket=attachments', headers: { authorization: `Bearer ${alice.accessToken}`, 'content-type': 'image/jpeg', 'content-digest': `sha-256=:${digest}:` }, payload: img });
      assert.equal(ok.statusCode, 201, ok.body);
      assert.equal(ok.json().state, 'processing');
      assert.equal(ok.headers.location, `/v1/files/${ok.json().id}`);
      const before = stored(t.filesDir!);
      const rows = (await t.database.db.query('SELECT id FROM files')).rows.length;
      const wrong = createHash('sha256').update('x').digest('base64');
      problem(await t.app.inject({ method: 'POST', url: '/v1/files?bucket=attachments', headers: { authorization: `Bearer ${alice.accessToken}`, 'content-type': 'image/jpeg', digest: `sha-256=${wrong}` }, payload: img }), 460, 'checksum_mismatch');
      assert.deepEqual(stored(t.filesDir!).filter((f) => !before.includes(f)), []);
      assert.equal((await t.database.db.query('SELECT id FROM files')).rows.length, rows, 'no row left behind');
      problem(await t.app.inject({ method: 'POST', url: '/v1/files', headers: { authorization: `Bearer ${alice.accessToken}`, 'content-type': 'image/jpeg' }, payload: img }), 400, 'validation_failed');
      problem(await t.app.inject({ method: 'POST', url: '/v1/files?bucket=attachments', headers: { authorization: `Bearer ${alice.accessToken}`, 'content-type': 'image/jpeg', 'content-digest': 'md5=abc' }, payload: img }), 400, 'bad_request');
      problem(await t.app.inject({ method: 'POST', url: '/v1/files?bucket=attachments', headers: { 'content-type': 'image/jpeg' }, payload: img }), 401, 'unauthenticated');
    });

    it('deleting a file removes its row and every object; another user cannot', async () => {
      const { id } = await tusUpload(t, alice.accessToken, 'attachments', 'application/pdf', PDF);
      assert.ok(objectsOf(id).length > 0);
      problem(await t.call('DELETE', `/v1/files/${id}`, { token: bob.accessToken }), 404, 'file_not_found');
      assert.equal((await t.call('DELETE', `/v1/files/${id}`, { token: alice.accessToken })).statusCode, 204);
      assert.deepEqual(objectsOf(id), []);
      problem(await t.call('GET', `/v1/files/${id}`, { token: alice.accessToken }), 404, 'file_not_found');
    });
  });
}
