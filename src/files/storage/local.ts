import { createReadStream, createWriteStream } from 'node:fs';
import { link, mkdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FileStore } from '@tus/file-store';
import { isLeveeError, LeveeError } from '../../lib/errors.js';
import { newSecret } from '../../lib/ids.js';
import { assertSafeKey, bound, clampRange, Measure, notFound } from './bounds.js';
import type { GetOptions, GetResult, ObjectInfo, ObjectStorage, PutOptions, PutResult } from './port.js';

// Objects in a local directory (the embedded default, `<LEVEE_DATA_DIR>/files`):
//   objects/<key>        the bytes (tus writes its uploads here too, under objects/uploads/)
//   meta/<key>.json      content type, size and SHA-256, written by `put`
//   tmp/                 puts in progress; renamed into place when complete (atomic on one filesystem)
// The sidecar is renamed into place before the bytes, so a reader never sees bytes without their
// type; during an overwrite it may briefly pair the new type with the old bytes (Levee's keys are
// unique per content, so overwrites are rare).

export interface LocalStorageOptions {
  dir: string;
  /** Bound on one metadata call or the opening of a read. */
  requestTimeoutMs?: number;
  /** Bound on one whole put or copy. */
  transferTimeoutMs?: number;
}

interface Sidecar {
  contentType: string;
  size: number;
  sha256: string;
}

const isMissing = (e: unknown) => (e as NodeJS.ErrnoException).code === 'ENOENT';

export async function createLocalStorage(opts: LocalStorageOptions): Promise<ObjectStorage> {
  const root = resolve(opts.dir);
  const objects = join(root, 'objects');
  const meta = join(root, 'meta');
  const tmp = join(root, 'tmp');
  await Promise.all([objects, meta, tmp].map((d) => mkdir(d, { recursive: true })));
  const requestTimeoutMs = opts.requestTimeoutMs ?? 5_000;
  const transferTimeoutMs = opts.transferTimeoutMs ?? 120_000;

  /** The path of `key` under `base`; the safe-key check makes traversal impossible, this checks again. */
  const pathOf = (base: string, key: string, suffix = '') => {
    assertSafeKey(key);
    const p = resolve(base, key + suffix);
    if (!p.startsWith(base + sep)) throw new Error(`object key escapes the storage directory: ${key}`);
    return p;
  };
  const tmpPath = () => join(tmp, `${Date.now()}-${newSecret(9)}`);

  /** fs errors other than "missing" mean the disk is in trouble: a 503, never a silent 404. */
  const fsFailure = (what: string, e: unknown) =>
    isLeveeError(e) ? e : new LeveeError('storage_unavailable', `${what} failed: ${(e as Error).message}`, { cause: e });

  async function readSidecar(key: string): Promise<Sidecar | undefined> {
    try {
      return JSON.parse(await readFile(pathOf(meta, key, '.json'), 'utf8')) as Sidecar;
    } catch (e) {
      if (isMissing(e)) return undefined;
      throw e;
    }
  }

  async function info(key: string): Promise<ObjectInfo> {
    let s;
    try {
      s = await stat(pathOf(objects, key));
    } catch (e) {
      if (isMissing(e)) throw notFound(key);
      throw e;
    }
    if (!s.isFile()) throw notFound(key);
    const side = await readSidecar(key);
    const current = side && side.size === s.size;
    return {
      key,
      size: s.size,
      // Bytes written by tus have no sidecar: size and mtime tell one version from another.
      etag: current ? `"${side.sha256.slice(0, 32)}"` : `"${s.size.toString(16)}-${Math.floor(s.mtimeMs).toString(16)}"`,
      contentType: side?.contentType ?? 'application/octet-stream',
    };
  }

  async function place(tmpFile: string, key: string, side: Sidecar): Promise<void> {
    const dataPath = pathOf(objects, key);
    const sidePath = pathOf(meta, key, '.json');
    const sideTmp = `${tmpFile}.json`;
    await writeFile(sideTmp, JSON.stringify(side));
    await Promise.all([mkdir(dirname(dataPath), { recursive: true }), mkdir(dirname(sidePath), { recursive: true })]);
    await rename(sideTmp, sidePath);
    await rename(tmpFile, dataPath);
  }

  const storage: ObjectStorage = {
    engine: 'local',

    async put(key, body, o: PutOptions): Promise<PutResult> {
      pathOf(objects, key);
      const b = bound(transferTimeoutMs, o.signal);
      const file = tmpPath();
      const m = new Measure(o);
      try {
        const source = body instanceof Readable ? body : Readable.from([Buffer.from(body.buffer, body.byteOffset, body.byteLength)]);
        await pipeline(source, m, createWriteStream(file, { flags: 'wx' }), { signal: b.signal });
        const sha256 = m.sha256;
        await place(file, key, { contentType: o.contentType, size: m.bytes, sha256 });
        return { key, size: m.bytes, etag: `"${sha256.slice(0, 32)}"`, contentType: o.contentType, sha256 };
      } catch (e) {
        await rm(file, { force: true });
        await rm(`${file}.json`, { force: true });
        if (b.signal.aborted) throw b.abortError(`Storing ${key}`);
        throw fsFailure(`Storing ${key}`, e);
      } finally {
        b.release();
      }
    },

    async get(key, o: GetOptions = {}): Promise<GetResult> {
      const b = bound(requestTimeoutMs, o.signal);
      try {
        const i = await info(key);
        const range = o.range && clampRange(o.range, i.size);
        const body = createReadStream(pathOf(objects, key), range ? { start: range.start, end: range.end } : {});
        // Open before answering, so a file deleted in between is a 404 here rather than a broken stream.
        await new Promise<void>((ok, fail) => body.once('open', () => ok()).once('error', fail));
        return { ...i, body, range };
      } catch (e) {
        if (isMissing(e)) throw notFound(key);
        if (b.signal.aborted) throw b.abortError(`Reading ${key}`);
        throw fsFailure(`Reading ${key}`, e);
      } finally {
        b.release();
      }
    },

    async head(key) {
      try {
        return await info(key);
      } catch (e) {
        throw fsFailure(`Reading ${key}`, e);
      }
    },

    async exists(key) {
      try {
        await info(key);
        return true;
      } catch (e) {
        if (isLeveeError(e) && e.code === 'file_not_found') return false;
        throw fsFailure(`Reading ${key}`, e);
      }
    },

    async delete(key) {
      const dataPath = pathOf(objects, key);
      try {
        await unlink(dataPath).catch((e) => (isMissing(e) ? undefined : Promise.reject(e)));
        await unlink(pathOf(meta, key, '.json')).catch((e) => (isMissing(e) ? undefined : Promise.reject(e)));
      } catch (e) {
        throw fsFailure(`Deleting ${key}`, e);
      }
    },

    async copy(from, to, o = {}) {
      const src = await info(from);
      const side = (await readSidecar(from)) ?? undefined;
      const file = tmpPath();
      try {
        // A hard link costs nothing and is safe: objects are replaced by rename, never written in place.
        await link(pathOf(objects, from), file).catch(async (e) => {
          if (isMissing(e)) throw notFound(from);
          await pipeline(createReadStream(pathOf(objects, from)), createWriteStream(file, { flags: 'wx' }));
        });
        const sha256 = side && side.size === src.size ? side.sha256 : await hashFile(file);
        const contentType = o.contentType ?? src.contentType;
        await place(file, to, { contentType, size: src.size, sha256 });
        return { key: to, size: src.size, etag: `"${sha256.slice(0, 32)}"`, contentType };
      } catch (e) {
        await rm(file, { force: true });
        throw fsFailure(`Copying ${from}`, e);
      }
    },

    uploads: {
      dataStore: new FileStore({ directory: objects }),
      key: (uploadId) => (assertSafeKey(uploadId), uploadId),
      async discard(uploadId) {
        await storage.delete(uploadId);
        await rm(pathOf(objects, uploadId, '.json'), { force: true });
      },
    },

    async close() {},
  };
  return storage;
}

async function hashFile(path: string): Promise<string> {
  const m = new Measure();
  await pipeline(createReadStream(path), m, async function* (src) {
    for await (const _ of src);
  });
  return m.sha256;
}
