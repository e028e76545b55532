import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { isLeveeError } from '../../src/lib/errors.js';
import { createImageProcessor } from '../../src/files/processing.js';
import { sniff } from '../../src/files/sniff.js';
import { exifHasGps, jpeg, jpegWithGps, pngBomb } from './images.js';

const VARIANTS = [
  { name: 'thumb', width: 128 },
  { name: 'medium', width: 512 },
];
const code = (c: string) => (e: unknown) => isLeveeError(e) && e.code === c;

describe('image processing', () => {
  const processor = createImageProcessor({ maxPixels: 50_000_000, concurrency: 2, timeoutMs: 10_000 });

  it('makes each configured variant as WebP, never enlarging', async () => {
    const out = await processor.variants(await jpeg(400, 300), VARIANTS);
    assert.deepEqual(out.map((v) => [v.name, v.width, v.height, v.contentType]), [['thumb', 128, 96, 'image/webp'], ['medium', 400, 300, 'image/webp']]);
    for (const v of out) {
      assert.equal(sniff(v.data), 'image/webp');
      assert.equal(v.size, v.data.length);
      assert.match(v.sha256, /^[0-9a-f]{64}$/);
    }
  });

  it('crops to fill with fit: cover', async () => {
    const [v] = await processor.variants(await jpeg(400, 300), [{ name: 'square', width: 64, height: 64, fit: 'cover' }]);
    assert.deepEqual([v!.width, v!.height], [64, 64]);
  });

  it('strips EXIF (the GPS position with it) from every variant', async () => {
    const input = await jpegWithGps();
    assert.ok(exifHasGps((await sharp(input).metadata()).exif), 'the test image does carry GPS');
    for (const v of await processor.variants(input, VARIANTS)) {
      const meta = await sharp(v.data).metadata();
      assert.equal(meta.exif, undefined, `${v.name} has no EXIF at all`);
      assert.equal(meta.xmp, undefined);
      assert.equal(exifHasGps(meta.exif), false);
    }
  });

  it('applies the EXIF orientation to the pixels before dropping it', async () => {
    const sideways = await sharp({ create: { width: 400, height: 200, channels: 3, background: '#000' } }).withMetadata({ orientation: 6 }).jpeg().toBuffer();
    const [v] = await processor.variants(sideways, [{ name: 'thumb', width: 100, height: 200 }]);
    assert.deepEqual([v!.width, v!.height], [100, 200], 'rotated a quarter turn: portrait');
    assert.equal((await sharp(v!.data).metadata()).orientation, undefined);
  });

  it('refuses a decompression bomb by its header, quickly, with image_too_large', async () => {
    const bomb = pngBomb(20_000);
    assert.ok(bomb.length < 200_000, `the bomb is small (${bomb.length} bytes)`);
    const started = performance.now();
    await assert.rejects(processor.variants(bomb, VARIANTS), code('image_too_large'));
    assert.ok(performance.now() - started < 2_000, 'refused before decoding');
  });

  it('refuses truncated and corrupt images with invalid_image', async () => {
    const whole = await jpeg();
    await assert.rejects(processor.variants(whole.subarray(0, whole.length >> 1), VARIANTS), code('invalid_image'));
    const png = await sharp({ create: { width: 300, height: 300, channels: 3, background: '#123' } }).png().toBuffer();
    await assert.rejects(processor.variants(png.subarray(0, png.length - 40), VARIANTS), code('invalid_image'));
    await assert.rejects(processor.variants(Buffer.from('not an image at all'), VARIANTS), code('invalid_image'));
    // The magic number of a JPEG followed by garbage.
    await assert.rejects(processor.variants(Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(500, 7)]), VARIANTS), code('invalid_image'));
  });

  it('runs at most `concurrency` images at once and queues the rest', async () => {
    const one = createImageProcessor({ concurrency: 1 });
    const input = await jpeg(1600, 1200);
    const runs = [one.variants(input, VARIANTS), one.variants(input, VARIANTS), one.variants(input, VARIANTS)];
    await new Promise((r) => setImmediate(r));
    assert.equal(one.waiting, 2);
    await Promise.all(runs);
    assert.equal(one.waiting, 0);
  });

  it('gives up on an image past its time budget or when cancelled, with timeout', async () => {
    const slow = createImageProcessor({ timeoutMs: 1 });
    await assert.rejects(slow.variants(await jpeg(3000, 3000), VARIANTS), code('timeout'));
    const aborted = AbortSignal.abort();
    const busy = createImageProcessor({ concurrency: 1 });
    const first = busy.variants(await jpeg(2000, 2000), VARIANTS);
    await assert.rejects(busy.variants(await jpeg(), VARIANTS, aborted), code('timeout'));
    await first;
  });
});
