import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { createStorage, guardStorage, isStorageOutage, storageUnavailable } from '../../src/files/index.js';
import { isLeveeError } from '../../src/lib/errors.js';
import { createDependencies } from '../../src/protection/dependency.js';

// The storage behind a breaker and bulkhead, as the composition root will build it.

const code = (c: string) => (e: unknown) => isLeveeError(e) && e.code === c;
const dependency = createDependencies(new Registry());

/** A port nothing listens on. */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

describe('guarded storage', () => {
  const dir = mkdtempSync(join(tmpdir(), 'levee-files-guard-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('missing keys and bad checksums do not open the circuit', async () => {
    const dep = dependency({ name: 'files-local', failuresToOpen: 2, isFailure: isStorageOutage, unavailable: storageUnavailable });
    const storage = guardStorage(await createStorage({ engine: 'local', dir }), dep);
    for (let i = 0; i < 5; i++) await assert.rejects(storage.get('nothing/here'), code('file_not_found'));
    await assert.rejects(storage.put('a/b', Buffer.from('x'), { contentType: 'text/plain', sha256: '0'.repeat(64) }), code('checksum_mismatch'));
    assert.equal(dep.state(), 'closed');
    await storage.put('a/b', Buffer.from('x'), { contentType: 'text/plain' });
    assert.equal(await storage.exists('a/b'), true);
  });

  it('an unreachable S3 is storage_unavailable, then fails fast with the circuit open', async () => {
    const dep = dependency({ name: 's3-dead', failuresToOpen: 2, halfOpenAfterMs: 60_000, isFailure: isStorageOutage, unavailable: storageUnavailable });
    const s3 = await createStorage({ engine: 's3', bucket: 'b', endpoint: `http://127.0.0.1:${await deadPort()}`, region: 'us-east-1', accessKeyId: 'k', secretAccessKey: 's', forcePathStyle: true, requestTimeoutMs: 2_000 });
    const storage = guardStorage(s3, dep);
    await assert.rejects(storage.head('a/b'), code('storage_unavailable'));
    await assert.rejects(storage.get('a/b'), code('storage_unavailable'));
    assert.equal(dep.state(), 'open');
    const started = performance.now();
    await assert.rejects(storage.head('a/b'), (e) => code('storage_unavailable')(e) && /circuit open/.test((e as Error).message));
    assert.ok(performance.now() - started < 50, 'refused without trying');
    await s3.close();
  });

  it('bounds calls by the bulkhead: past its queue, storage_unavailable at once', async () => {
    const dep = dependency({ name: 'files-busy', concurrency: 1, queue: 0, isFailure: isStorageOutage, unavailable: storageUnavailable });
    const storage = guardStorage(await createStorage({ engine: 'local', dir }), dep);
    const big = storage.put('busy/one', Buffer.alloc(4 * 1024 * 1024), { contentType: 'application/octet-stream' });
    await assert.rejects(storage.head('busy/one'), (e) => code('storage_unavailable')(e) && /busy/.test((e as Error).message));
    await big;
  });
});
