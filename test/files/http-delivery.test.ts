import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import type { LightMyRequestResponse } from 'fastify';
import { composeWorkerMedia } from '../../src/roles/compose-media.js';
import { startWorker } from '../../src/roles/worker.js';
import { createTestApp, signUp, type TestApp } from '../support/app.js';
import { engines } from '../support/engines.js';
import { startS3, type TestS3 } from '../support/s3.js';
import { PDF, tusUpload } from './http-support.js';
import { jpeg } from './images.js';

// Delivery over HTTP: public content-addressed URLs (immutable, ETag, 304, Range, HEAD), private
// files through signed URLs that expire (a fake clock), the CDN base URL, S3 presigned redirects
// and proxy mode (s3rver), and image processing through the real media queue and worker role.

function problem(res: LightMyRequestResponse, status: number, code: string) {
  assert.equal(res.statusCode, status, res.body);
  assert.equal(res.json().code, code, res.body);
}

const oneShot = (t: TestApp, token: string, bucket: string, type: string, body: Buffer) =>
  t.app.inject({ method: 'POST', url: `/v1/files?bucket=${bucket}`, headers: { authorization: `Bearer ${token}`, 'content-type': type }, payload: body });

/** A clock tests move forward. */
function fakeClock() {
  let now = Date.now();
  return { now: () => new Date(now), advance: (ms: number) => void (now += ms) };
}

for (const engine of await engines()) {
  describe(`file delivery over HTTP on ${engine.name}`, { skip: engine.skip }, () => {
    let t: TestApp;
    let alice: Awaited<ReturnType<typeof signUp>>;
    let bob: Awaited<ReturnType<typeof signUp>>;
    const clock = fakeClock();
    before(async () => {
      t = await createTestApp(engine, { files: true, clock, overrides: { signedUrlTtlSeconds: 60 } });
      alice = await signUp(t);
      bob = await signUp(t);
    });
    after(() => t.close());

    it('public files: immutable caching, strong ETag, 304, Range (206, 416), HEAD without a body', async () => {
      const up = await oneShot(t, alice.accessToken, 'avatars', 'image/jpeg', await jpeg(600, 600));
      assert.equal(up.statusCode, 201, up.body);
      await t.processFile!({ fileId: up.json().id });
      const view = (await t.call('GET', `/v1/files/${up.json().id}`)).json(); // anyone may see a public, ready file
      const url: string = view.urls.medium;
      assert.ok(!('original' in view.urls), "others do not get the original (it may carry EXIF): only variants");

      const full = await t.app.inject({ method: 'GET', url });
      assert.equal(full.statusCode, 200);
      assert.equal(full.headers['cache-control'], 'public, max-age=31536000, immutable');
      const etag = full.headers.etag as string;
      assert.match(etag, /^"[0-9a-f]{64}"$/, 'strong: the SHA-256 of the bytes');
      assert.equal(full.headers['content-type'], 'image/webp');
      assert.equal(Number(full.headers['content-length']), full.rawPayload.length);
      assert.equal(full.headers['accept-ranges'], 'bytes');

      const revalidated = await t.app.inject({ method: 'GET', url, headers: { 'if-none-match': etag } });
      assert.equal(revalidated.statusCode, 304);
      assert.equal(revalidated.rawPayload.length, 0);
      assert.equal(revalidated.headers.etag, etag);
      assert.equal((await t.app.inject({ method: 'GET', url, headers: { 'if-none-match': `"other", W/${etag}` } })).statusCode, 304);
      assert.equal((await t.app.inject({ method: 'GET', url, headers: { 'if-none-match': '"other"' } })).statusCode, 200);

      const part = await t.app.inject({ method: 'GET', url, headers: { range: 'bytes=10-19' } });
      assert.equal(part.statusCode, 206);
      assert.equal(part.headers['content-range'], `bytes 10-19/${full.rawPayload.length}`);
      assert.ok(part.rawPayload.equals(full.rawPayload.subarray(10, 20)));
      const tail = await t.app.inject({ method: 'GET', url, headers: { range: 'bytes=-5' } });
      assert.ok(tail.rawPayload.equals(full.rawPayload.subarray(-5)));
      const open = await t.app.inject({ method: 'GET', url, headers: { range: 'bytes=20-' } });
      assert.ok(open.rawPayload.equals(full.rawPayload.subarray(20)));
      const stale = await t.app.inject({ method: 'GET', url, headers: { range: 'bytes=0-1', 'if-range': '"stale"' } });
      assert.equal(stale.statusCode, 200, 'If-Range with another validator: the whole file');
      const beyond = await t.app.inject({ method: 'GET', url, headers: { range: `bytes=${full.rawPayload.length}-` } });
      problem(beyond, 416, 'range_not_satisfiable');
      assert.equal(beyond.headers['content-range'], `bytes */${full.rawPayload.length}`);
      assert.equal((await t.app.inject({ method: 'GET', url, headers: { range: 'bytes=5-1' } })).statusCode, 200, 'an invalid range is ignored');

      const head = await t.app.inject({ method: 'HEAD', url });
      assert.equal(head.statusCode, 200);
      assert.equal(head.headers['content-length'], String(full.rawPayload.length));
      assert.equal(head.headers.etag, etag);
      assert.equal(head.rawPayload.length, 0);

      // A key that names nothing, or a private file's, is 404 — never a path on disk.
      problem(await t.app.inject({ method: 'GET', url: url.replace(/medium-[0-9a-f]{32}/, 'medium-' + '0'.repeat(32)) }), 404, 'file_not_found');
      problem(await t.app.inject({ method: 'GET', url: '/v1/files/public/avatars/x' }), 404, 'file_not_found');
    });

    it('private files: a signed URL works for its variant until it expires (fake clock), and only as signed', async () => {
      const { id } = await tusUpload(t, alice.accessToken, 'attachments', 'application/pdf', PDF);
      const view = (await t.call('GET', `/v1/files/${id}`, { token: alice.accessToken })).json();
      assert.equal(view.visibility, 'private');
      const url: string = view.urls.original;
      assert.match(url, /^\/v1\/files\/[0-9a-f-]{36}\/original\?expires=\d+&sig=[A-Za-z0-9_-]{43}$/);
      problem(await t.call('GET', `/v1/files/${id}`, { token: bob.accessToken }), 404, 'file_not_found');

      const got = await t.app.inject({ method: 'GET', url });
      assert.equal(got.statusCode, 200);
      assert.ok(got.rawPayload.equals(PDF));
      assert.equal(got.headers['cache-control'], 'private, max-age=60');
      const etag = got.headers.etag as string;
      assert.equal((await t.app.inject({ method: 'GET', url, headers: { 'if-none-match': etag } })).statusCode, 304);
      assert.equal((await t.app.inject({ method: 'GET', url, headers: { range: 'bytes=0-3' } })).body, '%PDF');

      problem(await t.app.inject({ method: 'GET', url: url.replace(/sig=./, (m) => (m.endsWith('A') ? 'sig=B' : 'sig=A')) }), 403, 'invalid_signed_url');
      problem(await t.app.inject({ method: 'GET', url: url.replace(/expires=(\d+)/, (_m, e) => `expires=${Number(e) + 3600}`) }), 403, 'invalid_signed_url');
      problem(await t.app.inject({ method: 'GET', url: url.replace('/original?', '/thumb?') }), 403, 'invalid_signed_url');
      problem(await t.app.inject({ method: 'GET', url: url.split('?')[0]! }), 403, 'invalid_signed_url');

      clock.advance(30_000);
      const later = await t.app.inject({ method: 'GET', url });
      assert.equal(later.headers['cache-control'], 'private, max-age=30', 'cached only for the time it has left');
      clock.advance(31_000);
      problem(await t.app.inject({ method: 'GET', url }), 403, 'signed_url_expired');
      // The client asks for the file again and gets a fresh URL.
      const fresh = (await t.call('GET', `/v1/files/${id}`, { token: alice.accessToken })).json().urls.original;
      assert.equal((await t.app.inject({ method: 'GET', url: fresh })).statusCode, 200);
      // A deleted file's URLs stop working at once.
      await t.call('DELETE', `/v1/files/${id}`, { token: alice.accessToken });
      problem(await t.app.inject({ method: 'GET', url: fresh }), 404, 'file_not_found');
    });
  });
}

const [pglite] = await engines();

describe('CDN base URL', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp(pglite!, { files: true, overrides: { cdnBaseUrl: 'https://cdn.example.com/' } });
  });
  after(() => t.close());

  it('the public URLs clients receive point at the CDN; private ones stay signed API paths', async () => {
    const a = await signUp(t);
    const pub = await oneShot(t, a.accessToken, 'avatars', 'image/jpeg', await jpeg());
    await t.processFile!({ fileId: pub.json().id });
    const view = (await t.call('GET', `/v1/files/${pub.json().id}`, { token: a.accessToken })).json();
    assert.match(view.urls.thumb, /^https:\/\/cdn\.example\.com\/v1\/files\/public\/avatars\//);
    // The CDN's origin request: the same path on Levee.
    const origin = await t.app.inject({ method: 'GET', url: new URL(view.urls.thumb).pathname });
    assert.equal(origin.statusCode, 200);
    assert.match(view.urls.original, /^\/v1\/files\/.+\/original\?expires=/, "the owner's original is private: signed, not on the CDN");
  });
});

describe('media through the real queue and the worker role', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp(pglite!, { files: true, queues: true });
  });
  after(() => t.close());

  it('an uploaded image is processed by the worker (media queue) to ready', async () => {
    const a = await signUp(t);
    const up = await oneShot(t, a.accessToken, 'avatars', 'image/jpeg', await jpeg());
    assert.equal(up.json().state, 'processing');
    const storage = t.files!.storage;
    const worker = await startWorker({ db: t.database.db, clock: { now: () => new Date() }, logger: pino({ level: 'silent' }), queues: t.queues!, housekeepingEveryMs: 3_600_000, media: composeWorkerMedia(t.config, t.services.db, storage, t.files!, t.queues!) });
    try {
      let state = 'processing';
      for (let i = 0; i < 200 && state === 'processing'; i++) {
        await new Promise((r) => setTimeout(r, 50));
        state = (await t.call('GET', `/v1/files/${up.json().id}`, { token: a.accessToken })).json().state;
      }
      assert.equal(state, 'ready');
    } finally {
      await worker.stop();
      await t.queues!.unschedule('maintenance', 'housekeeping');
    }
  });

  it('housekeeping discards uploads left unfinished past LEVEE_UPLOAD_EXPIRY_HOURS and re-enqueues stuck images', async () => {
    const { housekeeping } = await import('../../src/roles/worker.js');
    const a = await signUp(t);
    const created = await t.app.inject({ method: 'POST', url: '/v1/files/uploads', headers: { 'tus-resumable': '1.0.0', authorization: `Bearer ${a.accessToken}`, 'upload-length': '100', 'upload-metadata': `bucket ${Buffer.from('attachments').toString('base64')},filetype ${Buffer.from('application/pdf').toString('base64')}` } });
    const id = (created.headers.location as string).split('/').pop()!;
    const media = composeWorkerMedia(t.config, t.services.db, t.files!.storage, t.files!, t.queues!);
    const soon = await housekeeping(t.database.db, new Date(), undefined, media.housekeeping);
    assert.equal(soon.staleUploads, 0);
    // The service's clock is the system clock: age the row instead.
    await t.database.db.query(`UPDATE files SET updated_at = now() - interval '25 hours' WHERE id = $1`, [id]);
    const later = await housekeeping(t.database.db, new Date(), undefined, media.housekeeping);
    assert.equal(later.staleUploads, 1);
    assert.equal((await t.database.db.query('SELECT 1 FROM files WHERE id = $1', [id])).rows.length, 0);
    // An image whose job was lost stays `processing`: past 15 minutes it is enqueued again.
    const img = await oneShot(t, a.accessToken, 'avatars', 'image/jpeg', await jpeg());
    await t.database.db.query(`UPDATE files SET updated_at = now() - interval '20 minutes' WHERE id = $1`, [img.json().id]);
    const waitingBefore = (await t.queues!.stats('media')).waiting;
    const again = await housekeeping(t.database.db, new Date(), undefined, media.housekeeping);
    assert.equal(again.requeuedImages, 1);
    assert.equal((await t.queues!.stats('media')).waiting, waitingBefore + 1);
  });
});

describe('S3 storage (s3rver): one-shot uploads, presigned redirects and proxy mode', () => {
  let s3: TestS3;
  let redirecting: TestApp;
  let proxying: TestApp;
  before(async () => {
    s3 = await startS3();
    const storage = { engine: 's3' as const, bucket: s3.bucket, endpoint: s3.endpoint, region: s3.region, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, forcePathStyle: true };
    redirecting = await createTestApp(pglite!, { files: { storage } });
    proxying = await createTestApp(pglite!, { files: { storage }, overrides: { mediaProxy: true } });
  });
  after(async () => {
    await redirecting.close();
    await proxying.close();
    await s3.stop();
  });

  it('a private download redirects (302) to a presigned S3 URL that serves the bytes', async () => {
    const a = await signUp(redirecting);
    const up = await oneShot(redirecting, a.accessToken, 'attachments', 'application/pdf', PDF);
    assert.equal(up.statusCode, 201, up.body);
    assert.equal(up.json().state, 'ready');
    const res = await redirecting.app.inject({ method: 'GET', url: up.json().urls.original });
    assert.equal(res.statusCode, 302);
    const location = res.headers.location as string;
    assert.ok(location.startsWith(`${s3.endpoint}/${s3.bucket}/attachments/`), location);
    assert.match(location, /X-Amz-Signature=/);
    const direct = await fetch(location);
    assert.equal(direct.status, 200);
    assert.ok(Buffer.from(await direct.arrayBuffer()).equals(PDF));
  });

  it('with LEVEE_MEDIA_PROXY=on the bytes stream through Levee (ETag, Range); public files always do', async () => {
    const a = await signUp(proxying);
    const up = await oneShot(proxying, a.accessToken, 'attachments', 'application/pdf', PDF);
    const res = await proxying.app.inject({ method: 'GET', url: up.json().urls.original });
    assert.equal(res.statusCode, 200);
    assert.ok(res.rawPayload.equals(PDF));
    const ranged = await proxying.app.inject({ method: 'GET', url: up.json().urls.original, headers: { range: 'bytes=1-3' } });
    assert.equal(ranged.statusCode, 206);
    assert.equal(ranged.body, 'PDF');
    const img = await oneShot(proxying, a.accessToken, 'avatars', 'image/jpeg', await jpeg());
    assert.equal(await proxying.processFile!({ fileId: img.json().id }), 'ready');
    const view = (await proxying.call('GET', `/v1/files/${img.json().id}`, { token: a.accessToken })).json();
    const thumb = await proxying.app.inject({ method: 'GET', url: view.urls.thumb });
    assert.equal(thumb.statusCode, 200);
    assert.equal(thumb.headers['cache-control'], 'public, max-age=31536000, immutable');
    assert.equal((await proxying.app.inject({ method: 'GET', url: view.urls.thumb, headers: { 'if-none-match': thumb.headers.etag as string } })).statusCode, 304);
  });

  it('a type that lies about its bytes stores nothing in the bucket', async () => {
    const a = await signUp(redirecting);
    problem(await oneShot(redirecting, a.accessToken, 'avatars', 'image/png', PDF), 415, 'file_type_mismatch');
    const rows = (await redirecting.database.db.query<{ state: string; key: string | null }>('SELECT state, key FROM files WHERE owner_id = $1', [a.user.id])).rows;
    assert.deepEqual(rows.map((r) => [r.state, r.key]), [['failed', null]]);
  });
});
