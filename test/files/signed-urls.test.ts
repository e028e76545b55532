import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isLeveeError } from '../../src/lib/errors.js';
import { createUrlSigner } from '../../src/files/signed-urls.js';

const code = (c: string) => (e: unknown) => isLeveeError(e) && e.code === c;
const ID = '0190f3c2-6a4e-7c31-9d0e-2b7f8e1a5c44';
const OTHER = '0190f3c2-6a4e-7c31-9d0e-2b7f8e1a5c45';
const SECRET = 'a'.repeat(32);

describe('signed file URLs', () => {
  let now = new Date('2026-11-01T12:00:00Z');
  const clock = { now: () => now };
  const signer = createUrlSigner({ secrets: [SECRET], clock });

  it('verifies a URL it signed, until it expires', () => {
    const s = signer.sign(ID, 'thumb', 300);
    assert.equal(signer.path(s), `/v1/files/${ID}/thumb?expires=${s.expires}&sig=${s.sig}`);
    signer.verify(ID, 'thumb', String(s.expires), s.sig);
    now = new Date(now.getTime() + 300_000);
    signer.verify(ID, 'thumb', String(s.expires), s.sig);
    now = new Date(now.getTime() + 1_000);
    assert.throws(() => signer.verify(ID, 'thumb', String(s.expires), s.sig), code('signed_url_expired'));
  });

  it('refuses a URL for another file or variant, a moved expiry, or a missing signature', () => {
    const s = signer.sign(ID, 'thumb', 300);
    assert.throws(() => signer.verify(OTHER, 'thumb', String(s.expires), s.sig), code('invalid_signed_url'));
    assert.throws(() => signer.verify(ID, 'original', String(s.expires), s.sig), code('invalid_signed_url'));
    assert.throws(() => signer.verify(ID, 'thumb', String(s.expires + 3600), s.sig), code('invalid_signed_url'));
    assert.throws(() => signer.verify(ID, 'thumb', undefined, s.sig), code('invalid_signed_url'));
    assert.throws(() => signer.verify(ID, 'thumb', String(s.expires), undefined), code('invalid_signed_url'));
    assert.throws(() => signer.verify(ID, 'thumb', '-1', s.sig), code('invalid_signed_url'));
  });

  it('is not fooled by an expired URL signed with another key', () => {
    const other = createUrlSigner({ secrets: ['b'.repeat(32)], clock });
    const s = other.sign(ID, 'thumb', -10);
    assert.throws(() => signer.verify(ID, 'thumb', String(s.expires), s.sig), code('invalid_signed_url'), 'a forged URL is invalid, not "expired"');
  });

  it('accepts URLs signed with a previous key during rotation', () => {
    const old = createUrlSigner({ secrets: [SECRET], clock });
    const rotated = createUrlSigner({ secrets: ['c'.repeat(32), SECRET], clock });
    const s = old.sign(ID, 'thumb', 60);
    rotated.verify(ID, 'thumb', String(s.expires), s.sig);
    const fresh = rotated.sign(ID, 'thumb', 60);
    assert.throws(() => old.verify(ID, 'thumb', String(fresh.expires), fresh.sig), code('invalid_signed_url'));
  });

  it('refuses short secrets', () => {
    assert.throws(() => createUrlSigner({ secrets: ['short'], clock }), /at least 32 bytes/);
    assert.throws(() => createUrlSigner({ secrets: [], clock }), /at least one secret/);
  });

  it('never throws anything but its two errors for arbitrary query values', () => {
    fc.assert(
      fc.property(fc.option(fc.string()), fc.option(fc.string()), (expires, sig) => {
        try {
          signer.verify(ID, 'thumb', expires ?? undefined, sig ?? undefined);
          assert.fail('verified a random signature');
        } catch (e) {
          assert.ok(code('invalid_signed_url')(e), String(e));
        }
      }),
      { numRuns: 1000 },
    );
  });
});
