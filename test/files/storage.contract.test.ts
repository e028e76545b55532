import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Upload } from '@tus/server';
import { isLeveeError } from '../../src/lib/errors.js';
import { createStorage } from '../../src/files/storage/index.js';
import type { ObjectStorage } from '../../src/files/storage/port.js';
import { startS3, type TestS3 } from '../support/s3.js';

// One contract, every storage engine: the local directory and S3 (s3rver, started here: it is a
// local process, so this suite never skips).

interface Engine {
  name: 'local' | 's3';
  start(): Promise<{ storage: ObjectStorage; stop(): Promise<void> }>;
}

const ENGINES: Engine[] = [
  {
    name: 'local',
    async start() {
      const dir = mkdtempSync(join(tmpdir(), 'levee-files-'));
      const storage = await createStorage({ engine: 'local', dir });
      return { storage, stop: async () => rmSync(dir, { recursive: true, force: true }) };
    },
  },
  {
    name: 's3',
    async start() {
      const s3: TestS3 = await startS3();
      const storage = await createStorage({ engine: 's3', bucket: s3.bucket, endpoint: s3.endpoint, region: s3.region, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, forcePathStyle: true });
      return {
        storage,
        async stop() {
          await storage.close();
          await s3.stop();
        },
      };
    },
  },
];

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const readAll = async (r: Readable) => Buffer.concat(await r.toArray());
const code = (c: string) => (e: unknown) => isLeveeError(e) && e.code === c;

/** `total` bytes of a repeatable pattern, produced chunk by chunk: never held whole in memory. */
function* patternChunks(total: number, chunk = 64 * 1024): Generator<Buffer> {
  for (let sent = 0; sent < total; sent += chunk) {
    const n = Math.min(chunk, total - sent);
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = ((sent + i) * 31) & 0xff;
    yield b;
  }
}

for (const engine of ENGINES) {
  describe(`object storage contract: ${engine.name}`, () => {
    let storage: ObjectStorage;
    let stop: () => Promise<void>;
    before(async () => {
      ({ storage, stop } = await engine.start());
    });
    after(() => stop());

    it('puts, heads, gets, checks existence and deletes an object', async () => {
      const bytes = Buffer.from('hello, levee');
      const put = await storage.put('t/basic/a.txt', bytes, { contentType: 'text/plain' });
      assert.equal(put.size, bytes.length);
      assert.equal(put.sha256, sha256(bytes));
      assert.match(put.etag, /^"[^"]+"$/);
      const head = await storage.head('t/basic/a.txt');
      assert.deepEqual({ size: head.size, contentType: head.contentType, etag: head.etag }, { size: bytes.length, contentType: 'text/plain', etag: put.etag });
      const got = await storage.get('t/basic/a.txt');
      assert.equal(got.contentType, 'text/plain');
      assert.equal(got.range, undefined);
      assert.deepEqual(await readAll(got.body), bytes);
      assert.equal(await storage.exists('t/basic/a.txt'), true);
      await storage.delete('t/basic/a.txt');
      assert.equal(await storage.exists('t/basic/a.txt'), false);
      await storage.delete('t/basic/a.txt'); // idempotent
    });

    it('answers file_not_found for a missing key from get and head, false from exists', async () => {
      await assert.rejects(storage.get('t/missing/nothing'), code('file_not_found'));
      await assert.rejects(storage.head('t/missing/nothing'), code('file_not_found'));
      await assert.rejects(storage.get('t/missing/nothing', { range: { start: 0, end: 3 } }), code('file_not_found'));
      assert.equal(await storage.exists('t/missing/nothing'), false);
    });

    it('replaces an object on overwrite: bytes, size, type and etag', async () => {
      const first = await storage.put('t/over/x', Buffer.from('first version'), { contentType: 'text/plain' });
      const second = await storage.put('t/over/x', Buffer.from('2nd'), { contentType: 'application/pdf' });
      assert.notEqual(first.etag, second.etag);
      const head = await storage.head('t/over/x');
      assert.deepEqual([head.size, head.contentType, head.etag], [3, 'application/pdf', second.etag]);
      assert.equal((await readAll((await storage.get('t/over/x')).body)).toString(), '2nd');
    });

    it('serves byte ranges, clamps an end past the object, refuses a start past it', async () => {
      const bytes = Buffer.from('0123456789abcdef');
      await storage.put('t/range/r', bytes, { contentType: 'application/octet-stream' });
      const mid = await storage.get('t/range/r', { range: { start: 2, end: 5 } });
      assert.deepEqual(mid.range, { start: 2, end: 5 });
      assert.equal(mid.size, 16, 'size is the whole object’s');
      assert.equal((await readAll(mid.body)).toString(), '2345');
      const tail = await storage.get('t/range/r', { range: { start: 10 } });
      assert.deepEqual(tail.range, { start: 10, end: 15 });
      assert.equal((await readAll(tail.body)).toString(), 'abcdef');
      const clamped = await storage.get('t/range/r', { range: { start: 14, end: 99 } });
      assert.equal((await readAll(clamped.body)).toString(), 'ef');
      await assert.rejects(storage.get('t/range/r', { range: { start: 16 } }), (e) => code('range_not_satisfiable')(e) && (e as { extra?: { size?: number } }).extra?.size === 16);
    });

    it('checks a declared SHA-256: a mismatch is checksum_mismatch and stores nothing', async () => {
      const bytes = Buffer.from('checked bytes');
      await assert.rejects(storage.put('t/sum/bad', bytes, { contentType: 'text/plain', sha256: sha256(Buffer.from('other')) }), code('checksum_mismatch'));
      assert.equal(await storage.exists('t/sum/bad'), false);
      const ok = await storage.put('t/sum/good', bytes, { contentType: 'text/plain', sha256: sha256(bytes) });
      assert.equal(ok.sha256, sha256(bytes));
    });

    it('refuses a stream whose length differs from the declared size, storing nothing', async () => {
      await assert.rejects(storage.put('t/size/long', Readable.from([Buffer.from('123456')]), { contentType: 'text/plain', size: 4 }), code('bad_request'));
      assert.equal(await storage.exists('t/size/long'), false);
      // A short body: S3 clients notice the missing bytes themselves, the local adapter counts them.
      await assert.rejects(storage.put('t/size/short', Readable.from([Buffer.from('12')]), { contentType: 'text/plain', size: 4 }));
      assert.equal(await storage.exists('t/size/short'), false);
    });

    it('streams an 8 MB object in and out, chunk by chunk', async () => {
      const total = 8 * 1024 * 1024;
      const expected = createHash('sha256');
      for (const c of patternChunks(total)) expected.update(c);
      const digest = expected.digest('hex');
      const put = await storage.put('t/big/eight', Readable.from(patternChunks(total)), { contentType: 'video/mp4', size: total, sha256: digest });
      assert.equal(put.size, total);
      const got = await storage.get('t/big/eight');
      assert.equal(got.size, total);
      const h = createHash('sha256');
      let largestChunk = 0;
      for await (const c of got.body as AsyncIterable<Buffer>) {
        h.update(c);
        largestChunk = Math.max(largestChunk, c.length);
      }
      assert.equal(h.digest('hex'), digest);
      assert.ok(largestChunk < total / 4, `read in chunks (largest ${largestChunk} bytes), not as one buffer`);
      const ranged = await storage.get('t/big/eight', { range: { start: total - 10 } });
      assert.equal((await readAll(ranged.body)).length, 10);
    });

    it('aborts a put whose body stalls, with storage_unavailable, and stores nothing', async () => {
      const stalled = new Readable({ read() {} });
      stalled.push(Buffer.from('a few bytes, then nothing'));
      await assert.rejects(storage.put('t/stall/x', stalled, { contentType: 'text/plain', size: 1000, signal: AbortSignal.timeout(200) }), code('storage_unavailable'));
      assert.equal(await storage.exists('t/stall/x'), false);
    });

    it('copies an object to another key, optionally with a new content type', async () => {
      await storage.put('t/copy/src', Buffer.from('copied'), { contentType: 'application/octet-stream' });
      const c = await storage.copy('t/copy/src', 't/copy/dst', { contentType: 'text/plain' });
      assert.deepEqual([c.size, c.contentType], [6, 'text/plain']);
      assert.equal((await readAll((await storage.get('t/copy/dst')).body)).toString(), 'copied');
      assert.equal(await storage.exists('t/copy/src'), true);
      await assert.rejects(storage.copy('t/copy/none', 't/copy/dst2'), code('file_not_found'));
    });

    it('refuses unsafe keys before touching the storage', async () => {
      for (const key of ['', '../escape', 'a/../../b', '/abs', 'a//b', 'A/Upper', 'a/.hidden', 'a b', 'a\\b', 'x'.repeat(600)]) {
        await assert.rejects(storage.put(key, Buffer.from('x'), { contentType: 'text/plain' }), /unsafe object key/, key);
        await assert.rejects(storage.get(key), /unsafe object key/, key);
      }
    });

    it('gives tus a DataStore that creates uploads in the same storage', async () => {
      const id = 'uploads/0190f3c2-6a4e-7c31-9d0e-2b7f8e1a5c44';
      const ds = storage.uploads.dataStore;
      await ds.create(new Upload({ id, size: 11, offset: 0, metadata: {} }));
      // On S3 the first 6 bytes are too few for a part: they wait in the store's `.part` object.
      assert.equal(await ds.write(Readable.from([Buffer.from('hello ')]), id, 0), 6);
      assert.equal((await ds.getUpload(id)).offset, 6);
      assert.equal(await ds.write(Readable.from([Buffer.from('world')]), id, 6), 11);
      const got = await storage.get(storage.uploads.key(id));
      assert.equal((await readAll(got.body)).toString(), 'hello world');
      await storage.uploads.discard(id);
      assert.equal(await storage.exists(storage.uploads.key(id)), false);
      await storage.uploads.discard(id); // idempotent
    });

    if (engine.name === 's3') {
      it('signs presigned GET URLs that fetch the object with the asked-for headers', async () => {
        await storage.put('t/signed/p', Buffer.from('presigned body'), { contentType: 'text/plain' });
        const url = await storage.presignedGetUrl!('t/signed/p', { ttlSeconds: 60, cacheControl: 'private, max-age=60' });
        assert.match(url, /X-Amz-Expires=60/);
        const res = await fetch(url);
        assert.equal(res.status, 200);
        assert.equal(await res.text(), 'presigned body');
        assert.equal(res.headers.get('cache-control'), 'private, max-age=60');
        const ranged = await fetch(url, { headers: { range: 'bytes=0-8' } });
        assert.equal(ranged.status, 206);
        assert.equal(await ranged.text(), 'presigned');
      });
    } else {
      it('has no presigned URLs (files are proxied)', () => {
        assert.equal(storage.presignedGetUrl, undefined);
      });
    }
  });
}
