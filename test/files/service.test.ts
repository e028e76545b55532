import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Upload } from '@tus/server';
import sharp from 'sharp';
import { migrate } from '../../src/db/migrate.js';
import type { Db } from '../../src/db/port.js';
import { createFiles, createFilesWorker, createStorage, DEFAULT_FILES_CONFIG, IMMUTABLE, type FilesConfig, type ObjectStorage } from '../../src/files/index.js';
import { isLeveeError } from '../../src/lib/errors.js';
import { newId } from '../../src/lib/ids.js';
import { engines, type TestDatabase } from '../support/engines.js';
import { startS3, type TestS3 } from '../support/s3.js';
import { jpegWithGps, pngBomb } from './images.js';

// The files service and delivery on both database engines, with the local storage (the storage
// contract covers S3; one suite below runs the S3 download path).

const code = (c: string, check?: (e: { extra?: Record<string, unknown> }) => boolean) => (e: unknown) => isLeveeError(e) && e.code === c && (!check || check(e as never));
const PDF = Buffer.from('%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n%%EOF\n');
const SECRET = 'x'.repeat(32);
const readAll = async (r: Readable) => Buffer.concat(await r.toArray());

interface Fixture {
  db: Db;
  storage: ObjectStorage;
  files: ReturnType<typeof createFiles>;
  worker: ReturnType<typeof createFilesWorker>;
  enqueued: string[];
  clock: { now(): Date; advance(ms: number): void };
  newUser(): Promise<string>;
  close(): Promise<void>;
}

async function fixture(db: Db, storage: ObjectStorage, config: Partial<FilesConfig> = {}): Promise<Omit<Fixture, 'close'>> {
  let now = Date.now();
  const clock = { now: () => new Date(now), advance: (ms: number) => void (now += ms) };
  const enqueued: string[] = [];
  const full = { ...DEFAULT_FILES_CONFIG, ...config };
  const files = createFiles({ db, storage, clock, config: full, urlSecrets: [SECRET], enqueueProcessing: async (id) => void enqueued.push(id) });
  const worker = createFilesWorker({ db, storage, clock, config: full, processing: { maxPixels: 50_000_000 } });
  const newUser = async () => {
    const id = newId();
    await db.query('INSERT INTO users (id) VALUES ($1)', [id]);
    return id;
  };
  return { db, storage, files, worker, enqueued, clock, newUser };
}

for (const engine of await engines()) {
  describe(`files service on ${engine.name}`, { skip: engine.skip }, () => {
    let database: TestDatabase;
    let dir: string;
    let f: Omit<Fixture, 'close'>;
    before(async () => {
      database = await engine.create();
      await migrate(database.db);
      dir = mkdtempSync(join(tmpdir(), 'levee-files-svc-'));
      f = await fixture(database.db, await createStorage({ engine: 'local', dir }), { quotaBytesPerUser: 10 * 1024 * 1024 });
    });
    after(async () => {
      await database?.drop();
      rmSync(dir, { recursive: true, force: true });
    });

    const uploadsLeft = () => readdirSync(join(dir, 'objects', 'uploads')).length;

    it('takes an avatar in one shot, processes it off the request path, then serves only EXIF-free variants publicly', async () => {
      const alice = await f.newUser();
      const bytes = await jpegWithGps();
      const file = await f.files.service.uploadOneShot({ ownerId: alice, bucket: 'avatars', contentType: 'image/jpg', size: bytes.length, body: bytes });
      assert.equal(file.state, 'processing');
      assert.equal(file.content_type, 'image/jpeg');
      assert.match(file.key!, new RegExp(`^avatars/${file.id}/original-[0-9a-f]{32}\\.jpg$`));
      assert.deepEqual(f.enqueued, [file.id]);
      assert.equal(uploadsLeft(), 0, 'the upload area is emptied');
      assert.deepEqual(f.files.delivery.view(file, alice).urls, {}, 'nothing is servable while processing');

      assert.equal(await f.worker.processFile({ fileId: file.id }), 'ready');
      assert.equal(await f.worker.processFile({ fileId: file.id }), 'skipped', 'a re-delivered job does nothing');
      const ready = await f.files.service.get(file.id, undefined);
      assert.deepEqual(Object.keys(ready.variants).sort(), ['medium', 'thumb']);
      assert.deepEqual([ready.variants.thumb!.width, ready.variants.thumb!.height], [128, 128]);

      const bob = await f.newUser();
      const seenByBob = f.files.delivery.view(ready, bob);
      assert.deepEqual(Object.keys(seenByBob.urls).sort(), ['medium', 'thumb'], 'others never get the original (it has GPS)');
      assert.equal(seenByBob.urls.thumb, `/v1/files/public/${ready.variants.thumb!.key}`);
      const seenByAlice = f.files.delivery.view(ready, alice);
      assert.match(seenByAlice.urls.original!, new RegExp(`^/v1/files/${file.id}/original\\?expires=\\d+&sig=`), 'the owner gets a signed URL for it');

      const thumb = await f.files.delivery.resolvePublic(ready.variants.thumb!.key);
      assert.deepEqual([thumb.cacheControl, thumb.etag, thumb.contentType], [IMMUTABLE, `"${ready.variants.thumb!.sha256}"`, 'image/webp']);
      const served = await readAll((await f.files.delivery.open(thumb)).body);
      assert.equal((await sharp(served).metadata()).exif, undefined);
      await assert.rejects(f.files.delivery.resolvePublic(ready.key!), code('file_not_found'), 'the original has no public URL');
      await assert.rejects(f.files.delivery.resolvePublic(ready.variants.thumb!.key.replace(/-[0-9a-f]{32}\./, `-${'0'.repeat(32)}.`)), code('file_not_found'));
      await assert.rejects(f.files.delivery.resolvePublic('../../etc/passwd'), code('file_not_found'));
    });

    it('points public URLs at the CDN when one is configured', async () => {
      const g = await fixture(database.db, f.storage, { cdnBaseUrl: 'https://cdn.example.com/' });
      assert.equal(g.files.delivery.publicUrl('avatars/x/thumb-y.webp'), 'https://cdn.example.com/v1/files/public/avatars/x/thumb-y.webp');
    });

    it('stores a private PDF ready at once, served to its owner through signed URLs only', async () => {
      const alice = await f.newUser();
      const bob = await f.newUser();
      const file = await f.files.service.uploadOneShot({ ownerId: alice, bucket: 'attachments', contentType: 'application/pdf', size: PDF.length, body: Readable.from([PDF]) });
      assert.equal(file.state, 'ready');
      assert.equal(f.enqueued.includes(file.id), false, 'no job for a PDF');
      await assert.rejects(f.files.service.get(file.id, bob), code('file_not_found'), 'private files are not disclosed');
      await assert.rejects(f.files.service.get(file.id, undefined), code('file_not_found'));
      const url = new URL(f.files.delivery.view(await f.files.service.get(file.id, alice), alice).urls.original!, 'http://x');
      const [, , , id, variant] = url.pathname.split('/');
      const resolved = await f.files.delivery.resolveSigned(id!, variant!, url.searchParams.get('expires') ?? undefined, url.searchParams.get('sig') ?? undefined);
      assert.equal(resolved.redirect, undefined, 'the local storage is proxied');
      assert.match(resolved.cacheControl, /^private, max-age=(300|299)$/);
      const ranged = await f.files.delivery.open(resolved, { start: 0, end: 3 });
      assert.equal((await readAll(ranged.body)).toString(), '%PDF');
      await assert.rejects(f.files.delivery.resolveSigned(id!, 'thumb', url.searchParams.get('expires') ?? undefined, url.searchParams.get('sig') ?? undefined), code('invalid_signed_url'));
      f.clock.advance(301_000);
      await assert.rejects(f.files.delivery.resolveSigned(id!, variant!, url.searchParams.get('expires') ?? undefined, url.searchParams.get('sig') ?? undefined), code('signed_url_expired'));
    });

    it('refuses a file whose bytes are not its declared type: failed, nothing stored, quota freed', async () => {
      const alice = await f.newUser();
      const exe = Buffer.concat([Buffer.from('MZ'), Buffer.alloc(200, 0x90)]);
      await assert.rejects(f.files.service.uploadOneShot({ ownerId: alice, bucket: 'avatars', contentType: 'image/png', size: exe.length, body: exe }), code('file_type_mismatch'));
      const { rows } = await database.db.query<{ state: string; failure_reason: string; key: string | null }>('SELECT state, failure_reason, key FROM files WHERE owner_id = $1', [alice]);
      assert.deepEqual(rows, [{ state: 'failed', failure_reason: 'file_type_mismatch', key: null }]);
      assert.equal(uploadsLeft(), 0);
      assert.equal(await f.files.service.usedBytes(alice), 0);
      assert.deepEqual(await f.files.service.list(alice), [], 'failed files are not listed');
    });

    it('checks bucket rules before anything is stored', async () => {
      const alice = await f.newUser();
      const base = { ownerId: alice, bucket: 'avatars', contentType: 'image/png', size: 100 };
      await assert.rejects(f.files.service.createUpload({ ...base, bucket: 'nope' }), code('unknown_bucket'));
      await assert.rejects(f.files.service.createUpload({ ...base, contentType: 'application/pdf' }), code('unsupported_file_type'));
      await assert.rejects(f.files.service.createUpload({ ...base, contentType: 'image/svg+xml' }), code('unsupported_file_type'));
      await assert.rejects(f.files.service.createUpload({ ...base, size: 5 * 1024 * 1024 + 1 }), code('file_too_large', (e) => e.extra?.maxFileBytes === 5 * 1024 * 1024));
      await assert.rejects(f.files.service.createUpload({ ...base, size: 0 }), code('bad_request'));
      await assert.rejects(f.files.service.uploadOneShot({ ...base, bucket: 'attachments', contentType: 'application/pdf', size: 6 * 1024 * 1024, body: Buffer.alloc(0) }), code('file_too_large'));
      assert.equal(await f.files.service.usedBytes(alice), 0);
    });

    it('enforces the quota at creation, race-safely, counting every file that did not fail', async () => {
      const g = await fixture(database.db, f.storage, { quotaBytesPerUser: 1000 });
      const alice = await g.newUser();
      const attempts = await Promise.allSettled(Array.from({ length: 10 }, () => g.files.service.createUpload({ ownerId: alice, bucket: 'attachments', contentType: 'application/pdf', size: 300 })));
      const ok = attempts.filter((a) => a.status === 'fulfilled');
      assert.equal(ok.length, 3, 'three 300-byte files fit in 1000 bytes, however the requests interleave');
      for (const a of attempts) if (a.status === 'rejected') assert.ok(code('quota_exceeded', (e) => e.extra?.quotaBytes === 1000 && e.extra?.usedBytes === 900)(a.reason), String(a.reason));
      assert.equal(await g.files.service.usedBytes(alice), 900);
      // A failed file gives its bytes back.
      const [first] = ok as PromiseFulfilledResult<{ file: { id: string }; uploadId: string }>[];
      await g.storage.put(first!.value.uploadId, Buffer.alloc(300, 0x00), { contentType: 'application/octet-stream' });
      await assert.rejects(g.files.service.completeUpload(first!.value.file.id), code('file_type_mismatch'));
      assert.equal(await g.files.service.usedBytes(alice), 600);
      await g.files.service.createUpload({ ownerId: alice, bucket: 'attachments', contentType: 'application/pdf', size: 400 });
    });

    it('completes a resumable (tus) upload only when every byte is there, once', async () => {
      const alice = await f.newUser();
      const { file, uploadId } = await f.files.service.createUpload({ ownerId: alice, bucket: 'attachments', contentType: 'application/pdf', size: PDF.length });
      assert.equal(uploadId, `uploads/${file.id}`);
      const tus = f.storage.uploads.dataStore;
      await tus.create(new Upload({ id: uploadId, size: PDF.length, offset: 0, metadata: {} }));
      await tus.write(Readable.from([PDF.subarray(0, 10)]), uploadId, 0);
      await assert.rejects(f.files.service.completeUpload(file.id), code('upload_incomplete'));
      await tus.write(Readable.from([PDF.subarray(10)]), uploadId, 10);
      const done = await f.files.service.completeUpload(file.id);
      assert.equal(done.state, 'ready');
      assert.deepEqual(await f.files.service.completeUpload(file.id), done, 'completing again changes nothing');
      assert.equal(uploadsLeft(), 0, 'tus bytes and metadata are gone');
      assert.equal((await readAll((await f.storage.get(done.key!)).body)).toString(), PDF.toString());
    });

    it('fails a decompression bomb and a corrupt image in the job, and drops their bytes', async () => {
      const alice = await f.newUser();
      const bomb = pngBomb(20_000);
      const b = await f.files.service.uploadOneShot({ ownerId: alice, bucket: 'avatars', contentType: 'image/png', size: bomb.length, body: bomb });
      assert.equal(await f.worker.processFile({ fileId: b.id }), 'failed');
      const failed = (await database.db.query<{ state: string; failure_reason: string }>('SELECT state, failure_reason FROM files WHERE id = $1', [b.id])).rows[0]!;
      assert.deepEqual(failed, { state: 'failed', failure_reason: 'image_too_large' });
      assert.equal(await f.storage.exists(b.key!), false);
      await assert.rejects(f.files.service.get(b.id, alice).then((r) => f.files.delivery.resolvePublic(r.key!)), code('file_not_found'));

      const corrupt = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(2000, 0x42)]);
      const c = await f.files.service.uploadOneShot({ ownerId: alice, bucket: 'avatars', contentType: 'image/jpeg', size: corrupt.length, body: corrupt });
      assert.equal(await f.worker.processFile({ fileId: c.id }), 'failed');
      assert.equal((await database.db.query<{ failure_reason: string }>('SELECT failure_reason FROM files WHERE id = $1', [c.id])).rows[0]!.failure_reason, 'invalid_image');
      assert.equal(await f.files.service.usedBytes(alice), 0);
    });

    it('deletes a file and all its objects for its owner only; a job for a deleted file does nothing', async () => {
      const alice = await f.newUser();
      const bob = await f.newUser();
      const bytes = await jpegWithGps();
      const file = await f.files.service.uploadOneShot({ ownerId: alice, bucket: 'avatars', contentType: 'image/jpeg', size: bytes.length, body: bytes });
      await f.worker.processFile({ fileId: file.id });
      const ready = await f.files.service.get(file.id, alice);
      const keys = [ready.key!, ...Object.values(ready.variants).map((v) => v.key)];
      await assert.rejects(f.files.service.remove(file.id, bob), code('file_not_found'));
      await f.files.service.remove(file.id, alice);
      for (const k of keys) assert.equal(await f.storage.exists(k), false, k);
      await assert.rejects(f.files.service.get(file.id, alice), code('file_not_found'));
      assert.equal(await f.worker.processFile({ fileId: file.id }), 'skipped');
    });

    it('gives up uploads left unfinished, freeing their quota', async () => {
      const alice = await f.newUser();
      const { uploadId } = await f.files.service.createUpload({ ownerId: alice, bucket: 'attachments', contentType: 'application/pdf', size: 1000 });
      await f.storage.put(uploadId, Buffer.alloc(10), { contentType: 'application/octet-stream' });
      assert.equal(await f.files.service.discardStaleUploads(86_400_000), 0);
      f.clock.advance(86_400_001);
      assert.ok((await f.files.service.discardStaleUploads(86_400_000)) >= 1);
      assert.equal(await f.files.service.usedBytes(alice), 0);
      assert.equal(await f.storage.exists(uploadId), false);
    });
  });
}

describe('private downloads with S3', () => {
  let s3: TestS3;
  let database: TestDatabase;
  let storage: ObjectStorage;
  before(async () => {
    s3 = await startS3();
    database = await (await engines())[0]!.create();
    await migrate(database.db);
    storage = await createStorage({ engine: 's3', bucket: s3.bucket, endpoint: s3.endpoint, region: s3.region, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, forcePathStyle: true });
  });
  after(async () => {
    await storage?.close();
    await database?.drop();
    await s3?.stop();
  });

  const signedFor = async (f: Awaited<ReturnType<typeof fixture>>) => {
    const alice = await f.newUser();
    const file = await f.files.service.uploadOneShot({ ownerId: alice, bucket: 'attachments', contentType: 'application/pdf', size: PDF.length, body: PDF });
    const url = new URL(f.files.delivery.view(file, alice).urls.original!, 'http://x');
    return f.files.delivery.resolveSigned(file.id, 'original', url.searchParams.get('expires')!, url.searchParams.get('sig')!);
  };

  it('redirects to a presigned S3 URL that serves the bytes', async () => {
    const resolved = await signedFor(await fixture(database.db, storage));
    assert.ok(resolved.redirect?.startsWith(s3.endpoint), resolved.redirect);
    const res = await fetch(resolved.redirect!);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), PDF.toString());
    assert.match(res.headers.get('cache-control') ?? '', /^private, max-age=\d+$/);
  });

  it('streams through Levee instead when proxying is configured', async () => {
    const f = await fixture(database.db, storage, { proxyDownloads: true });
    const resolved = await signedFor(f);
    assert.equal(resolved.redirect, undefined);
    assert.equal((await readAll((await f.files.delivery.open(resolved)).body)).toString(), PDF.toString());
  });
});
