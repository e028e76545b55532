import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_BUCKETS, parseBuckets } from '../../src/files/config.js';

describe('file bucket configuration', () => {
  it('parses a JSON list from the environment, normalising types', () => {
    const [b] = parseBuckets(JSON.stringify([{ name: 'photos', public: true, maxFileBytes: 1000, allowedTypes: ['image/JPG', 'image/jpeg'], variants: [{ name: 'small', width: 64, fit: 'cover', height: 64 }] }]));
    assert.deepEqual(b, { name: 'photos', public: true, maxFileBytes: 1000, allowedTypes: ['image/jpeg'], variants: [{ name: 'small', width: 64, height: 64, fit: 'cover', quality: undefined }] });
  });

  it('accepts its own defaults', () => {
    assert.deepEqual(parseBuckets(DEFAULT_BUCKETS).map((b) => b.name), ['avatars', 'attachments']);
  });

  it('says what is wrong with a bad bucket list', () => {
    const bad: [unknown, RegExp][] = [
      ['not json', /JSON array/],
      [[], /non-empty/],
      [[{ name: 'Bad Name', public: true, maxFileBytes: 1, allowedTypes: ['a/b'] }], /name must match/],
      [[{ name: 'a', public: 'yes', maxFileBytes: 1, allowedTypes: ['a/b'] }], /public must be true or false/],
      [[{ name: 'a', public: true, maxFileBytes: 0, allowedTypes: ['a/b'] }], /maxFileBytes/],
      [[{ name: 'a', public: true, maxFileBytes: 1, allowedTypes: [] }], /allowedTypes/],
      [[{ name: 'a', public: true, maxFileBytes: 1, allowedTypes: ['a/b'], variants: [{ name: 'original', width: 10 }] }], /not be "original"/],
      [[{ name: 'a', public: true, maxFileBytes: 1, allowedTypes: ['a/b'], variants: [{ name: 'v', width: 10 }, { name: 'v', width: 20 }] }], /unique/],
      [[{ name: 'a', public: true, maxFileBytes: 1, allowedTypes: ['a/b'] }, { name: 'a', public: true, maxFileBytes: 1, allowedTypes: ['a/b'] }], /bucket names must be unique/],
    ];
    for (const [raw, message] of bad) assert.throws(() => parseBuckets(raw), message, JSON.stringify(raw));
  });
});
