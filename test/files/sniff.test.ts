import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import sharp from 'sharp';
import { declaredMatches, normalizeType, sniff, SNIFF_BYTES } from '../../src/files/sniff.js';

const hex = (h: string) => Buffer.from(h.replace(/\s/g, ''), 'hex');
/** An ISO-BMFF `ftyp` box with a major brand and compatible brands. */
const ftyp = (major: string, ...compatible: string[]) => {
  const size = 16 + 4 * compatible.length;
  const b = Buffer.alloc(size + 8);
  b.writeUInt32BE(size, 0);
  b.write(`ftyp${major}`, 4, 'latin1');
  compatible.forEach((c, i) => b.write(c, 16 + 4 * i, 'latin1'));
  b.write('mdat', size + 4, 'latin1');
  return b;
};
const image = (format: 'jpeg' | 'png' | 'webp' | 'gif' | 'avif') =>
  sharp({ create: { width: 8, height: 8, channels: 3, background: '#36c' } }).toFormat(format).toBuffer();

describe('sniff', () => {
  it('recognises real images made by an encoder', async () => {
    for (const [format, type] of [['jpeg', 'image/jpeg'], ['png', 'image/png'], ['webp', 'image/webp'], ['gif', 'image/gif'], ['avif', 'image/avif']] as const) {
      assert.equal(sniff(await image(format)), type, format);
    }
  });

  it('recognises PDF, WebM and the ISO-BMFF family by their ftyp brands', () => {
    assert.equal(sniff(Buffer.from('%PDF-1.7\n%âãÏÓ\n1 0 obj')), 'application/pdf');
    assert.equal(sniff(hex('1a45dfa3 9f4286 8101')), 'video/webm');
    assert.equal(sniff(ftyp('isom', 'isom', 'iso2', 'avc1', 'mp41')), 'video/mp4');
    assert.equal(sniff(ftyp('mp42', 'mp42', 'isom')), 'video/mp4');
    assert.equal(sniff(ftyp('qt  ', 'qt  ')), 'video/quicktime');
    assert.equal(sniff(ftyp('heic', 'mif1', 'heic')), 'image/heic');
    assert.equal(sniff(ftyp('mif1', 'mif1', 'heic')), 'image/heic', 'a generic major brand defers to heic');
    assert.equal(sniff(ftyp('mif1', 'mif1', 'avif', 'miaf')), 'image/avif');
    assert.equal(sniff(ftyp('mif1', 'mif1')), 'image/heif');
    assert.equal(sniff(ftyp('M4A ', 'M4A ', 'mp42')), 'audio/mp4');
    assert.equal(sniff(ftyp('zzzz', 'zzzz')), undefined);
  });

  it('calls UTF-8 without control bytes text, and anything binary not', () => {
    assert.equal(sniff(Buffer.from('name,age\nZoë,42\n')), 'text/plain');
    assert.equal(sniff(Buffer.from('{"a": 1}')), 'text/plain');
    // A multi-byte character cut by the sample's end is still text.
    const cut = Buffer.concat([Buffer.alloc(SNIFF_BYTES - 1, 0x61), Buffer.from('é')]);
    assert.equal(sniff(cut), 'text/plain');
    assert.equal(sniff(Buffer.from([0x61, 0x00, 0x62])), undefined);
    assert.equal(sniff(hex('c3 28')), undefined, 'invalid UTF-8');
    assert.equal(sniff(hex('4d5a9000 0300')), undefined, 'a Windows executable');
    assert.equal(sniff(hex('7f454c46 0201')), undefined, 'an ELF executable');
    assert.equal(sniff(Buffer.alloc(0)), undefined);
  });

  it('looks only at the head of the bytes it is given', () => {
    const png = hex('89504e470d0a1a0a');
    assert.equal(sniff(Buffer.concat([png, Buffer.alloc(10 * SNIFF_BYTES)])), 'image/png');
    assert.equal(sniff(png.subarray(0, 7)), undefined, 'a truncated signature is not a PNG');
  });

  it('never throws, whatever the bytes, and answers a known type or undefined', () => {
    const known = new Set(['image/jpeg', 'image/png', 'image/gif', 'image/webp', 'application/pdf', 'video/webm', 'text/plain', 'image/avif', 'image/heic', 'image/heif', 'image/heic-sequence', 'image/heif-sequence', 'video/quicktime', 'video/mp4', 'video/3gpp', 'video/3gpp2', 'audio/mp4']);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2 * SNIFF_BYTES }), (bytes) => {
        const t = sniff(bytes);
        assert.ok(t === undefined || known.has(t), String(t));
      }),
      { numRuns: 2000 },
    );
    // Random brands and box sizes after a real `ftyp` header.
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.uint8Array({ minLength: 0, maxLength: 64 }), (size, rest) => {
        const head = Buffer.alloc(8);
        head.writeUInt32BE(size, 0);
        head.write('ftyp', 4, 'latin1');
        const t = sniff(Buffer.concat([head, rest]));
        assert.ok(t === undefined || known.has(t));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('the declared type must match the bytes', () => {
  it('accepts a matching type, its aliases and parameters', () => {
    assert.equal(declaredMatches('image/jpeg', 'image/jpeg'), true);
    assert.equal(declaredMatches('Image/JPG', 'image/jpeg'), true);
    assert.equal(declaredMatches('text/csv; charset=utf-8', 'text/plain'), true);
    assert.equal(declaredMatches('image/heif', 'image/heic'), true);
    assert.equal(normalizeType(' IMAGE/PJPEG ; q=1'), 'image/jpeg');
  });

  it('refuses a type that lies about its bytes, and bytes nobody recognises', () => {
    assert.equal(declaredMatches('image/png', 'image/jpeg'), false);
    assert.equal(declaredMatches('image/jpeg', 'text/plain'), false, 'text declared as an image');
    assert.equal(declaredMatches('image/svg+xml', 'text/plain'), false, 'SVG (scriptable) is not accepted as an image');
    assert.equal(declaredMatches('video/mp4', 'video/quicktime'), false);
    assert.equal(declaredMatches('application/octet-stream', undefined), false);
    assert.equal(declaredMatches('text/plain', undefined), false);
  });
});
