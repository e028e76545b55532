import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { generateKeyPair, SignJWT, type JWK } from 'jose';
import { createTestApp, signUp, uniqueEmail, type TestApp } from '../support/app.js';
import { engines } from '../support/engines.js';

// Bad input of every kind — malformed or oversized bodies, wrong types, forged tokens, unknown
// collections, undeclared filters, injection attempts, other users' documents — must answer a
// 4xx RFC 9457 problem+json with the exact stable `code` and a request id, write nothing, and
// never be a 500. Each case below is one request; the row counts of every table a request could
// touch are compared before and after it.

type Signed = Awaited<ReturnType<typeof signUp>>;

const TABLES = ['users', 'identities', 'sessions', 'refresh_tokens', 'documents', 'idempotency_keys'] as const;
const PROBLEM_CT = /^application\/problem\+json(;|$)/;
const UUID_NOWHERE = '01900000-0000-7000-8000-000000000000';

const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const nested = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
const decodePart = (token: string, i: number) => JSON.parse(Buffer.from(token.split('.')[i]!, 'base64url').toString()) as Record<string, unknown>;

async function rowCounts(t: TestApp): Promise<Record<string, number>> {
  const sql = `SELECT ${TABLES.map((x) => `(SELECT count(*)::int FROM ${x}) AS ${x}`).join(', ')}`;
  return (await t.database.db.query<Record<string, number>>(sql)).rows[0]!;
}

/** Asserts an RFC 9457 problem with this status and code, whose requestId is the response's. */
function assertProblem(res: LightMyRequestResponse, status: number, code: string, label = '') {
  const where = `${label} → ${res.statusCode} ${res.body.slice(0, 300)}`;
  assert.equal(res.statusCode, status, where);
  assert.match(String(res.headers['content-type']), PROBLEM_CT, where);
  const p = res.json();
  assert.equal(p.code, code, where);
  assert.equal(p.status, status, where);
  assert.equal(p.type, `urn:levee:problem:${code}`, where);
  assert.equal(typeof p.title, 'string', where);
  assert.equal(typeof p.retryable, 'boolean', where);
  assert.equal(typeof p.requestId, 'string', where);
  assert.ok(p.requestId.length > 0, where);
  assert.equal(res.headers['x-request-id'], p.requestId, where);
  return p as { code: string; detail?: string; errors?: { path: string; message: string }[] };
}

interface Case {
  name: string;
  method: InjectOptions['method'];
  url: string | (() => string);
  token?: () => string;
  authorization?: () => string;
  headers?: Record<string, string>;
  /** Sent as JSON (content-type application/json). */
  json?: unknown;
  /** Sent as is; set content-type in headers. */
  raw?: string | Buffer;
  status: number;
  code: string;
}

for (const engine of await engines()) {
  describe(`bad input on ${engine.name}`, { skip: engine.skip }, () => {
    // A clock the expiry test can move forward; everything else sees real time.
    const clock = { offsetMs: 0, now: () => new Date(Date.now() + clock.offsetMs) };
    let t: TestApp;
    let alice: Signed;
    let bob: Signed;
    let alicePost: { id: string };
    let aliceNote: { id: string };
    const forged: Record<string, string> = {};

    before(async () => {
      t = await createTestApp(engine, { clock });
      alice = await signUp(t);
      bob = await signUp(t);
      const post = await t.call('POST', '/v1/collections/posts/documents', { token: alice.accessToken, body: { title: 'Alice', status: 'published', score: 5 } });
      assert.equal(post.statusCode, 201, post.body);
      alicePost = post.json();
      const note = await t.call('POST', '/v1/collections/notes/documents', { token: alice.accessToken, body: { text: 'private' } });
      assert.equal(note.statusCode, 201, note.body);
      aliceNote = note.json();

      // Forged access tokens, each claiming to be Alice's real session.
      const { kid, privateKey } = t.services.keys.current();
      const publicJwk = t.services.keys.jwks().keys.find((k) => k.kid === kid) as JWK;
      const iss = t.config.jwtIssuer;
      const sid = decodePart(alice.accessToken, 1).sid as string;
      const now = Math.floor(Date.now() / 1000);
      const claims = { sub: alice.user.id, sid, role: 'admin', anon: false, iss, iat: now, exp: now + 600 };
      const sign = (payload: Record<string, unknown>, header: Record<string, unknown> = {}) =>
        new SignJWT(payload).setProtectedHeader({ alg: 'ES256', kid, typ: 'at+jwt', ...header } as { alg: string }).sign(privateKey);

      forged.algNone = `${b64({ alg: 'none', kid, typ: 'at+jwt' })}.${b64(claims)}.`;
      forged.es256NoSignature = `${b64({ alg: 'ES256', kid, typ: 'at+jwt' })}.${b64(claims)}.`;
      const stranger = await generateKeyPair('ES256');
      forged.otherKeySameKid = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid, typ: 'at+jwt' }).sign(stranger.privateKey);
      forged.hs256PublicJwkSecret = await new SignJWT(claims)
        .setProtectedHeader({ alg: 'HS256', kid, typ: 'at+jwt' })
        .sign(new TextEncoder().encode(JSON.stringify(publicJwk)));
      // Algorithm confusion with the header left as ES256: an HMAC keyed with the public key.
      const confusedInput = `${b64({ alg: 'ES256', kid, typ: 'at+jwt' })}.${b64(claims)}`;
      forged.es256HeaderHmacBody = `${confusedInput}.${createHmac('sha256', JSON.stringify(publicJwk)).update(confusedInput).digest('base64url')}`;
      forged.expired = await sign({ ...claims, iat: now - 3600, exp: now - 60 });
      forged.notYetValid = await sign({ ...claims, nbf: now + 3600 });
      forged.wrongIssuer = await sign({ ...claims, iss: 'https://evil.example' });
      forged.wrongTyp = await sign(claims, { typ: 'JWT' });
      forged.noSid = await sign({ ...claims, sid: undefined });
      forged.unknownKid = await sign(claims, { kid: 'no-such-kid' });
      const parts = alice.accessToken.split('.');
      const sig = Buffer.from(parts[2]!, 'base64url');
      sig[7]! ^= 0x01;
      forged.flippedSignature = `${parts[0]}.${parts[1]}.${sig.toString('base64url')}`;
      forged.tamperedPayload = `${parts[0]}.${b64({ ...decodePart(alice.accessToken, 1), role: 'admin' })}.${parts[2]}`;
      forged.garbage = 'not-a-jwt';
      forged.threeGarbageParts = 'aaa.bbb.ccc';
      forged.tooLong = `${parts[0]}.${'A'.repeat(5000)}.${parts[2]}`;
    });
    after(() => t.close());

    async function run(c: Case): Promise<LightMyRequestResponse> {
      const headers: Record<string, string> = { ...c.headers };
      if (c.token) headers.authorization = `Bearer ${c.token()}`;
      if (c.authorization) headers.authorization = c.authorization();
      let payload: string | Buffer | undefined = c.raw;
      if (c.json !== undefined) {
        headers['content-type'] ??= 'application/json';
        payload = JSON.stringify(c.json);
      }
      const url = typeof c.url === 'string' ? c.url : c.url();
      return t.app.inject({ method: c.method, url, headers, ...(payload !== undefined ? { payload } : {}) });
    }

    function table(title: string, cases: Case[]) {
      describe(title, () => {
        for (const c of cases) {
          it(`${c.name} → ${c.status} ${c.code}`, async () => {
            const before = await rowCounts(t);
            const res = await run(c);
            assertProblem(res, c.status, c.code, c.name);
            assert.deepEqual(await rowCounts(t), before, `${c.name}: nothing may be written`);
          });
        }
      });
    }

    const posts = '/v1/collections/posts/documents';
    const notes = '/v1/collections/notes/documents';
    const asAlice = () => alice.accessToken;
    const asBob = () => bob.accessToken;
    const json = { 'content-type': 'application/json' };

    table('malformed and wrongly typed bodies', [
      { name: 'truncated JSON', method: 'POST', url: posts, token: asAlice, headers: json, raw: '{"title": "x"', status: 400, code: 'invalid_json' },
      { name: 'JSON followed by garbage', method: 'POST', url: posts, token: asAlice, headers: json, raw: '{"title":"x"} trailing', status: 400, code: 'invalid_json' },
      { name: 'single quotes', method: 'POST', url: posts, token: asAlice, headers: json, raw: "{'title':'x'}", status: 400, code: 'invalid_json' },
      { name: 'empty body declared as JSON', method: 'POST', url: posts, token: asAlice, headers: json, raw: '', status: 400, code: 'invalid_json' },
      { name: '__proto__ key (prototype poisoning)', method: 'POST', url: posts, token: asAlice, headers: json, raw: '{"__proto__":{"isAdmin":true}}', status: 400, code: 'invalid_json' },
      { name: 'malformed merge-patch', method: 'PATCH', url: () => `${posts}/${alicePost.id}`, token: asAlice, headers: { 'content-type': 'application/merge-patch+json' }, raw: '{"title":', status: 400, code: 'invalid_json' },
      { name: 'malformed JSON on signup', method: 'POST', url: '/v1/auth/signup', headers: json, raw: '{"email":"a@b.c","password":}', status: 400, code: 'invalid_json' },
      { name: 'a JSON array as a document', method: 'POST', url: posts, token: asAlice, json: [{ title: 'x' }], status: 400, code: 'validation_failed' },
      { name: 'a JSON string as a document', method: 'POST', url: posts, token: asAlice, json: 'title', status: 400, code: 'validation_failed' },
      { name: 'JSON null as a document', method: 'POST', url: posts, token: asAlice, json: null, status: 400, code: 'validation_failed' },
      { name: 'a number as a merge patch', method: 'PATCH', url: () => `${posts}/${alicePost.id}`, token: asAlice, json: 42, status: 400, code: 'validation_failed' },
      { name: 'text/plain body', method: 'POST', url: posts, token: asAlice, headers: { 'content-type': 'text/plain' }, raw: 'title=x', status: 400, code: 'validation_failed' },
      { name: 'form-encoded body', method: 'POST', url: posts, token: asAlice, headers: { 'content-type': 'application/x-www-form-urlencoded' }, raw: 'title=x', status: 415, code: 'unsupported_media_type' },
      { name: 'binary body', method: 'POST', url: posts, token: asAlice, headers: { 'content-type': 'application/octet-stream' }, raw: Buffer.from([0, 255, 1, 254, 0x7b]), status: 415, code: 'unsupported_media_type' },
      { name: 'signup: email is a number', method: 'POST', url: '/v1/auth/signup', json: { email: 5, password: 'correct horse 1' }, status: 400, code: 'validation_failed' },
      { name: 'signup: password is an array', method: 'POST', url: '/v1/auth/signup', json: { email: uniqueEmail(), password: ['correct horse 1'] }, status: 400, code: 'validation_failed' },
      { name: 'signup: password missing', method: 'POST', url: '/v1/auth/signup', json: { email: uniqueEmail() }, status: 400, code: 'validation_failed' },
      { name: 'signup: email longer than 254', method: 'POST', url: '/v1/auth/signup', json: { email: `${'a'.repeat(250)}@example.com`, password: 'correct horse 1' }, status: 400, code: 'validation_failed' },
      { name: 'signup: deviceName is an object', method: 'POST', url: '/v1/auth/signup', json: { email: uniqueEmail(), password: 'correct horse 1', deviceName: { x: 1 } }, status: 400, code: 'validation_failed' },
      { name: 'signin: password longer than the maximum', method: 'POST', url: '/v1/auth/signin', json: { email: 'someone@example.com', password: 'x'.repeat(257) }, status: 400, code: 'validation_failed' },
      { name: 'refresh: token is an object', method: 'POST', url: '/v1/auth/refresh', json: { refreshToken: { $ne: null } }, status: 400, code: 'validation_failed' },
      { name: 'password change: wrong types', method: 'POST', url: '/v1/auth/password', token: asAlice, json: { currentPassword: true, newPassword: 1 }, status: 400, code: 'validation_failed' },
      { name: 'document breaks the collection schema (title is a number)', method: 'POST', url: posts, token: asAlice, json: { title: 5 }, status: 422, code: 'document_invalid' },
      { name: 'document breaks the collection schema (title too long)', method: 'POST', url: posts, token: asAlice, json: { title: 'x'.repeat(201) }, status: 422, code: 'document_invalid' },
      { name: 'merge patch that breaks the schema', method: 'PATCH', url: () => `${posts}/${alicePost.id}`, token: asAlice, json: { score: 'high' }, status: 422, code: 'document_invalid' },
      // What JSON allows but PostgreSQL cannot store: these were 500s.
      { name: 'U+0000 in a document string', method: 'POST', url: notes, token: asAlice, json: { text: 'a\u0000b' }, status: 400, code: 'validation_failed' },
      { name: 'U+0000 in a document key', method: 'POST', url: notes, token: asAlice, json: { 'a\u0000': 1 }, status: 400, code: 'validation_failed' },
      { name: 'U+0000 in a nested array string', method: 'POST', url: notes, token: asAlice, json: { list: [1, { deep: ['ok', '\u0000'] }] }, status: 400, code: 'validation_failed' },
      { name: 'unpaired surrogate in a document', method: 'POST', url: notes, token: asAlice, headers: json, raw: '{"text":"\\ud800"}', status: 400, code: 'validation_failed' },
      { name: 'U+0000 in a patch', method: 'PATCH', url: () => `${notes}/${aliceNote.id}`, token: asAlice, json: { text: '\u0000' }, status: 400, code: 'validation_failed' },
      { name: 'U+0000 in a replacement', method: 'PUT', url: () => `${notes}/${aliceNote.id}`, token: asAlice, json: { text: '\u0000' }, status: 400, code: 'validation_failed' },
      { name: 'a number beyond a double (1e999)', method: 'POST', url: notes, token: asAlice, headers: json, raw: '{"n":1e999}', status: 400, code: 'validation_failed' },
      { name: 'nesting one level past the limit (65)', method: 'POST', url: notes, token: asAlice, headers: json, raw: nested(65), status: 400, code: 'validation_failed' },
      { name: 'nesting 10,000 levels (stack overflow)', method: 'POST', url: notes, token: asAlice, headers: json, raw: nested(10_000), status: 400, code: 'validation_failed' },
      { name: 'arrays nested 10,000 levels', method: 'POST', url: notes, token: asAlice, headers: json, raw: `{"a":${'['.repeat(10_000)}${']'.repeat(10_000)}}`, status: 400, code: 'validation_failed' },
      { name: 'signup: U+0000 in the email', method: 'POST', url: '/v1/auth/signup', json: { email: `a\u0000${uniqueEmail()}`, password: 'correct horse 1' }, status: 400, code: 'validation_failed' },
      { name: 'signup: U+0000 in the device name', method: 'POST', url: '/v1/auth/signup', json: { email: uniqueEmail(), password: 'correct horse 1', deviceName: 'Pixel\u0000' }, status: 400, code: 'validation_failed' },
      { name: 'signin: U+0000 in the email', method: 'POST', url: '/v1/auth/signin', json: { email: 'a\u0000@example.com', password: 'correct horse 1' }, status: 400, code: 'validation_failed' },
      { name: 'anonymous: U+0000 in the device name', method: 'POST', url: '/v1/auth/anonymous', json: { deviceName: '\u0000' }, status: 400, code: 'validation_failed' },
    ]);

    table('oversized bodies and bad framing', [
      { name: 'body over the 1 MiB limit (document)', method: 'POST', url: posts, token: asAlice, json: { title: 'x', blob: 'a'.repeat(1_048_576) }, status: 413, code: 'payload_too_large' },
      { name: 'body over the 1 MiB limit (signup)', method: 'POST', url: '/v1/auth/signup', json: { email: uniqueEmail(), password: 'p'.repeat(1_048_576) }, status: 413, code: 'payload_too_large' },
      { name: 'body over the 1 MiB limit (patch)', method: 'PATCH', url: () => `${posts}/${alicePost.id}`, token: asAlice, json: { blob: 'a'.repeat(1_048_576) }, status: 413, code: 'payload_too_large' },
      { name: 'document over the collection maximum (64 KiB)', method: 'POST', url: notes, token: asAlice, json: { text: 'a'.repeat(70_000) }, status: 413, code: 'payload_too_large' },
      { name: 'Content-Length shorter than the body', method: 'POST', url: '/v1/auth/signin', headers: { ...json, 'content-length': '3' }, raw: '{"email":"a@example.com","password":"x"}', status: 400, code: 'bad_request' },
    ]);

    table('bad write headers', [
      { name: 'If-Match that is not an ETag', method: 'PATCH', url: () => `${posts}/${alicePost.id}`, token: asAlice, headers: { 'if-match': "1' OR '1'='1" }, json: { title: 'x' }, status: 400, code: 'bad_request' },
      { name: 'If-Match with a huge version', method: 'DELETE', url: () => `${posts}/${alicePost.id}`, token: asAlice, headers: { 'if-match': '"99999999999999999999"' }, status: 400, code: 'bad_request' },
      { name: 'stale If-Match', method: 'PUT', url: () => `${posts}/${alicePost.id}`, token: asAlice, headers: { 'if-match': '"7"' }, json: { title: 'x' }, status: 412, code: 'version_conflict' },
      { name: 'Idempotency-Key with spaces', method: 'POST', url: posts, token: asAlice, headers: { 'idempotency-key': 'a key' }, json: { title: 'x' }, status: 400, code: 'bad_request' },
      { name: 'Idempotency-Key of 256 characters', method: 'POST', url: posts, token: asAlice, headers: { 'idempotency-key': 'k'.repeat(256) }, json: { title: 'x' }, status: 400, code: 'bad_request' },
    ]);

    const forgedNames = [
      'algNone', 'es256NoSignature', 'otherKeySameKid', 'hs256PublicJwkSecret', 'es256HeaderHmacBody', 'expired', 'notYetValid',
      'wrongIssuer', 'wrongTyp', 'noSid', 'unknownKid', 'flippedSignature', 'tamperedPayload', 'garbage', 'threeGarbageParts', 'tooLong',
    ];
    table('bad, expired and forged access tokens', [
      ...forgedNames.flatMap((n): Case[] => [
        { name: `${n} token reading /me`, method: 'GET', url: '/v1/auth/me', token: () => forged[n]!, status: 401, code: 'invalid_token' },
        { name: `${n} token writing a document`, method: 'POST', url: '/v1/collections/members/documents', token: () => forged[n]!, json: { x: 1 }, status: 401, code: 'invalid_token' },
        { name: `${n} token deleting Alice's post`, method: 'DELETE', url: () => `${posts}/${alicePost.id}`, token: () => forged[n]!, status: 401, code: 'invalid_token' },
      ]),
      { name: 'a bad token on a public route', method: 'GET', url: posts, authorization: () => `Bearer ${forged.flippedSignature}`, status: 401, code: 'invalid_token' },
      { name: 'Basic credentials', method: 'GET', url: '/v1/auth/me', authorization: () => `Basic ${b64('alice:secret')}`, status: 401, code: 'invalid_token' },
      { name: 'Bearer with no token', method: 'GET', url: '/v1/auth/me', authorization: () => 'Bearer ', status: 401, code: 'invalid_token' },
      { name: 'two tokens', method: 'GET', url: '/v1/auth/me', authorization: () => `Bearer ${alice.accessToken} ${alice.accessToken}`, status: 401, code: 'invalid_token' },
      { name: 'lowercase scheme with SQL', method: 'GET', url: '/v1/auth/me', authorization: () => "bearer ' OR 1=1 --", status: 401, code: 'invalid_token' },
      { name: 'no token on /me', method: 'GET', url: '/v1/auth/me', status: 401, code: 'unauthenticated' },
      { name: 'no token on an authenticated collection', method: 'GET', url: '/v1/collections/members/documents', status: 401, code: 'unauthenticated' },
      { name: 'no token writing an owner collection', method: 'POST', url: posts, json: { title: 'x' }, status: 401, code: 'unauthenticated' },
    ]);

    describe('token controls', () => {
      it("Alice's real token works (so the forgeries above fail on their forgery alone)", async () => {
        const me = await t.call('GET', '/v1/auth/me', { token: alice.accessToken });
        assert.equal(me.statusCode, 200);
        assert.equal(me.json().id, alice.user.id);
        assert.equal(me.json().role, 'user');
      });

      it('an issued token expires with the clock, even after it has been verified (and cached)', async () => {
        const s = await signUp(t);
        assert.equal((await t.call('GET', '/v1/auth/me', { token: s.accessToken })).statusCode, 200);
        clock.offsetMs = (t.config.accessTokenTtlSeconds + 1) * 1000;
        try {
          const res = await t.call('GET', '/v1/auth/me', { token: s.accessToken });
          const p = assertProblem(res, 401, 'invalid_token');
          assert.match(p.detail ?? '', /expired/);
          const fresh = await t.call('GET', '/v1/auth/me', { token: (await signUp(t)).accessToken });
          assert.equal(fresh.statusCode, 200, 'a token issued at the moved clock is valid');
        } finally {
          clock.offsetMs = 0;
        }
      });
    });

    const longName = 'c'.repeat(65);
    table('unknown collections and path traversal', [
      { name: 'unknown collection (list)', method: 'GET', url: '/v1/collections/nope/documents', token: asAlice, status: 404, code: 'unknown_collection' },
      { name: 'unknown collection (create)', method: 'POST', url: '/v1/collections/nope/documents', token: asAlice, json: { x: 1 }, status: 404, code: 'unknown_collection' },
      { name: 'unknown collection (read)', method: 'GET', url: `/v1/collections/nope/documents/${UUID_NOWHERE}`, token: asAlice, status: 404, code: 'unknown_collection' },
      { name: 'unknown collection (patch)', method: 'PATCH', url: `/v1/collections/nope/documents/${UUID_NOWHERE}`, token: asAlice, json: { x: 1 }, status: 404, code: 'unknown_collection' },
      { name: 'unknown collection (delete)', method: 'DELETE', url: `/v1/collections/nope/documents/${UUID_NOWHERE}`, token: asAlice, status: 404, code: 'unknown_collection' },
      { name: 'a table name as a collection', method: 'GET', url: '/v1/collections/users/documents', token: asAlice, status: 404, code: 'unknown_collection' },
      { name: 'encoded ../', method: 'GET', url: '/v1/collections/..%2F..%2Fusers/documents', token: asAlice, status: 404, code: 'unknown_collection' },
      { name: 'encoded .. (the URL resolves it away: no route)', method: 'POST', url: '/v1/collections/%2E%2E/documents', token: asAlice, json: { x: 1 }, status: 404, code: 'not_found' },
      { name: 'dotted collection name', method: 'POST', url: '/v1/collections/...posts/documents', token: asAlice, json: { x: 1 }, status: 404, code: 'unknown_collection' },
      { name: 'collection with NUL', method: 'GET', url: '/v1/collections/posts%00/documents', token: asAlice, status: 404, code: 'unknown_collection' },
      { name: 'collection with a quote', method: 'GET', url: "/v1/collections/posts'--/documents", token: asAlice, status: 404, code: 'unknown_collection' },
      { name: 'collection with SQL', method: 'POST', url: `/v1/collections/${encodeURIComponent("posts'; DROP TABLE users; --")}/documents`, token: asAlice, json: { x: 1 }, status: 404, code: 'unknown_collection' },
      { name: 'collection in another case', method: 'GET', url: '/v1/collections/POSTS/documents', token: asAlice, status: 404, code: 'unknown_collection' },
      { name: '__proto__ as a collection', method: 'GET', url: '/v1/collections/__proto__/documents', token: asAlice, status: 404, code: 'unknown_collection' },
      { name: 'collection name over 64 characters', method: 'GET', url: `/v1/collections/${longName}/documents`, token: asAlice, status: 400, code: 'validation_failed' },
      { name: 'path parameter over the router limit', method: 'GET', url: `/v1/collections/${'c'.repeat(300)}/documents`, token: asAlice, status: 400, code: 'bad_request' },
      { name: 'malformed %-escape in the path', method: 'GET', url: '/v1/collections/posts/documents/%E0%A4%A', token: asAlice, status: 400, code: 'bad_request' },
      { name: 'no such route', method: 'GET', url: '/v1/collections', status: 404, code: 'not_found' },
      { name: 'unknown method', method: 'PROPFIND' as InjectOptions['method'], url: '/v1/auth/me', status: 404, code: 'not_found' },
    ]);

    table('non-UUID and unknown ids in paths', [
      { name: 'read a non-UUID id', method: 'GET', url: `${posts}/not-a-uuid`, token: asAlice, status: 404, code: 'document_not_found' },
      { name: 'read an id with SQL', method: 'GET', url: `${posts}/${encodeURIComponent("1' OR '1'='1")}`, token: asAlice, status: 404, code: 'document_not_found' },
      { name: 'patch a non-UUID id', method: 'PATCH', url: `${posts}/123`, token: asAlice, json: { title: 'x' }, status: 404, code: 'document_not_found' },
      { name: 'replace a non-UUID id', method: 'PUT', url: `${posts}/${encodeURIComponent('../../etc/passwd')}`, token: asAlice, json: { title: 'x' }, status: 404, code: 'document_not_found' },
      { name: 'delete a non-UUID id', method: 'DELETE', url: `${posts}/%00`, token: asAlice, status: 404, code: 'document_not_found' },
      { name: 'read an unknown UUID', method: 'GET', url: `${posts}/${UUID_NOWHERE}`, token: asAlice, status: 404, code: 'document_not_found' },
      { name: 'delete an unknown UUID', method: 'DELETE', url: `${posts}/${UUID_NOWHERE}`, token: asAlice, status: 404, code: 'document_not_found' },
      { name: 'id over 64 characters', method: 'GET', url: `${posts}/${'f'.repeat(65)}`, token: asAlice, status: 400, code: 'validation_failed' },
      { name: "a post's id in another collection", method: 'GET', url: () => `${notes}/${alicePost.id}`, token: asAlice, status: 404, code: 'document_not_found' },
      { name: 'revoke a non-UUID session', method: 'DELETE', url: "/v1/auth/sessions/1'%20OR%20'1'='1", token: asAlice, status: 404, code: 'session_not_found' },
    ]);

    const list = (qs: string) => `${posts}?${qs}`;
    const cursor = (c: unknown) => b64(c);
    table('filters, sorts, limits and cursors', [
      { name: 'filter on an undeclared field', method: 'GET', url: list('title=Alice'), status: 400, code: 'invalid_filter' },
      { name: 'filter on a JSON path', method: 'GET', url: list('data.title=Alice'), status: 400, code: 'invalid_filter' },
      { name: 'filter on a quoted field name', method: 'GET', url: list(`${encodeURIComponent('"status"')}=x`), status: 400, code: 'invalid_filter' },
      { name: 'filter on a field with a quote', method: 'GET', url: list(`${encodeURIComponent("sta'tus")}=x`), status: 400, code: 'invalid_filter' },
      { name: 'filter key with SQL', method: 'GET', url: list(`${encodeURIComponent("status) OR 1=1 --")}=x`), status: 400, code: 'invalid_filter' },
      { name: 'unknown operator', method: 'GET', url: list('status[like]=%25'), status: 400, code: 'invalid_filter' },
      { name: 'operator with SQL', method: 'GET', url: list(`${encodeURIComponent('score[gt];--')}=1`), status: 400, code: 'invalid_filter' },
      { name: 'number filter with SQL', method: 'GET', url: list(`score=${encodeURIComponent('1 OR 1=1')}`), status: 400, code: 'invalid_filter' },
      { name: 'number filter with Infinity', method: 'GET', url: list('score[gt]=Infinity'), status: 400, code: 'invalid_filter' },
      { name: 'id filter with SQL', method: 'GET', url: list(`id=${encodeURIComponent("x' OR '1'='1")}`), status: 400, code: 'invalid_filter' },
      { name: 'ownerId filter that is not a UUID', method: 'GET', url: list('ownerId=alice'), status: 400, code: 'invalid_filter' },
      { name: 'timestamp filter that is not a timestamp', method: 'GET', url: list('createdAt[gt]=yesterday'), status: 400, code: 'invalid_filter' },
      { name: 'timestamp filter in year 0', method: 'GET', url: list('createdAt[gt]=0000-01-01'), status: 400, code: 'invalid_filter' },
      { name: 'timestamp filter that becomes year 0 in UTC', method: 'GET', url: list(`createdAt[gt]=${encodeURIComponent('0001-01-01T00:00:00+14:00')}`), status: 400, code: 'invalid_filter' },
      { name: 'timestamp filter past year 9999 in UTC', method: 'GET', url: list(`createdAt[lt]=${encodeURIComponent('9999-12-31T23:00:00-14:00')}`), status: 400, code: 'invalid_filter' },
      { name: 'text filter with U+0000', method: 'GET', url: list('status=a%00b'), status: 400, code: 'invalid_filter' },
      { name: 'in-list of 101 values', method: 'GET', url: list(`status[in]=${Array.from({ length: 101 }, (_, i) => `s${i}`).join(',')}`), status: 400, code: 'invalid_filter' },
      { name: 'in-list of 5,000 values', method: 'GET', url: list(`score[in]=${Array.from({ length: 5000 }, (_, i) => i).join(',')}`), status: 400, code: 'invalid_filter' },
      { name: 'in-list with one bad number', method: 'GET', url: list('score[in]=1,2,three'), status: 400, code: 'invalid_filter' },
      { name: 'value over 1024 characters', method: 'GET', url: list(`status=${'s'.repeat(1025)}`), status: 400, code: 'invalid_filter' },
      { name: 'the same filter twice (array)', method: 'GET', url: list('status=a&status=b'), status: 400, code: 'validation_failed' },
      { name: 'sort with a statement', method: 'GET', url: list(`sort=${encodeURIComponent('createdAt;DROP TABLE users')}`), status: 400, code: 'invalid_filter' },
      { name: 'sort with a subquery', method: 'GET', url: list(`sort=${encodeURIComponent('(SELECT 1)')}`), status: 400, code: 'invalid_filter' },
      { name: 'sort on two fields', method: 'GET', url: list('sort=createdAt,id'), status: 400, code: 'invalid_filter' },
      { name: 'sort on a quoted field', method: 'GET', url: list(`sort=${encodeURIComponent('"createdAt"')}`), status: 400, code: 'invalid_filter' },
      { name: 'sort with a direction keyword', method: 'GET', url: list(`sort=${encodeURIComponent('createdAt DESC')}`), status: 400, code: 'invalid_filter' },
      { name: 'sort on an undeclared field', method: 'GET', url: list('sort=-title'), status: 400, code: 'invalid_filter' },
      { name: 'limit=0', method: 'GET', url: list('limit=0'), status: 400, code: 'invalid_filter' },
      { name: 'limit=101', method: 'GET', url: list('limit=101'), status: 400, code: 'invalid_filter' },
      { name: 'limit=-1', method: 'GET', url: list('limit=-1'), status: 400, code: 'invalid_filter' },
      { name: 'limit=abc', method: 'GET', url: list('limit=abc'), status: 400, code: 'invalid_filter' },
      { name: 'limit=1e1', method: 'GET', url: list('limit=1e1'), status: 400, code: 'invalid_filter' },
      { name: 'limit given twice', method: 'GET', url: list('limit=1&limit=2'), status: 400, code: 'validation_failed' },
      { name: 'cursor with non-base64url characters', method: 'GET', url: list(`cursor=${encodeURIComponent("' OR 1=1 --")}`), status: 400, code: 'invalid_cursor' },
      { name: 'cursor that is not JSON', method: 'GET', url: list(`cursor=${b64('DROP TABLE users')}`), status: 400, code: 'invalid_cursor' },
      { name: 'cursor that is a JSON array', method: 'GET', url: list(`cursor=${cursor([1, 2])}`), status: 400, code: 'invalid_cursor' },
      { name: 'cursor with SQL in the id', method: 'GET', url: list(`cursor=${cursor({ s: '-createdAt', v: '2024-01-01T00:00:00.000Z', id: "x' OR '1'='1" })}`), status: 400, code: 'invalid_cursor' },
      { name: 'cursor with SQL in the value', method: 'GET', url: list(`cursor=${cursor({ s: '-createdAt', v: "2024-01-01'); DROP TABLE users; --", id: UUID_NOWHERE })}`), status: 400, code: 'invalid_cursor' },
      { name: 'cursor with a value of the wrong type', method: 'GET', url: list(`sort=score&cursor=${cursor({ s: 'score', v: '1 OR 1=1', id: UUID_NOWHERE })}`), status: 400, code: 'invalid_cursor' },
      { name: 'cursor with an object value', method: 'GET', url: list(`cursor=${cursor({ s: '-createdAt', v: { $gt: '' }, id: UUID_NOWHERE })}`), status: 400, code: 'invalid_cursor' },
      { name: 'cursor from another sort order', method: 'GET', url: list(`sort=score&cursor=${cursor({ s: '-createdAt', v: '2024-01-01T00:00:00.000Z', id: UUID_NOWHERE })}`), status: 400, code: 'invalid_cursor' },
      { name: 'cursor with a sort key injected', method: 'GET', url: list(`cursor=${cursor({ s: '-createdAt;DROP TABLE users', v: '2024-01-01T00:00:00.000Z', id: UUID_NOWHERE })}`), status: 400, code: 'invalid_cursor' },
      { name: 'cursor in year 0', method: 'GET', url: list(`cursor=${cursor({ s: '-createdAt', v: '0000-06-01T00:00:00.000Z', id: UUID_NOWHERE })}`), status: 400, code: 'invalid_cursor' },
      { name: 'cursor with U+0000 in a text value', method: 'GET', url: list(`sort=status&cursor=${cursor({ s: 'status', v: 'a\u0000', id: UUID_NOWHERE })}`), status: 400, code: 'invalid_cursor' },
      { name: 'cursor over 512 characters', method: 'GET', url: list(`cursor=${'A'.repeat(513)}`), status: 400, code: 'invalid_cursor' },
      { name: 'filters on a collection you may not read', method: 'GET', url: '/v1/collections/settings/documents?sort=createdAt', token: asBob, status: 403, code: 'forbidden' },
    ]);

    describe('injection in values is data, not SQL', () => {
      it('a SQL-ish text filter matches only the literal string', async () => {
        const evil = "x' OR '1'='1' --";
        const created = await t.call('POST', posts, { token: bob.accessToken, body: { title: 'literal', status: evil } });
        assert.equal(created.statusCode, 201);
        const before = await rowCounts(t);
        const res = await t.call('GET', list(`status=${encodeURIComponent(evil)}`));
        assert.equal(res.statusCode, 200, res.body);
        assert.deepEqual(res.json().items.map((d: { id: string }) => d.id), [created.json().id]);
        const inList = await t.call('GET', list(`status[in]=${encodeURIComponent("published') OR ('1'='1")},published`));
        assert.equal(inList.statusCode, 200, inList.body);
        assert.ok(inList.json().items.every((d: { data: { status: string } }) => d.data.status === 'published'));
        assert.ok(inList.json().items.some((d: { id: string }) => d.id === alicePost.id));
        assert.deepEqual(await rowCounts(t), before);
      });

      it('an in-list of exactly 100 values is accepted', async () => {
        const res = await t.call('GET', list(`score[in]=${Array.from({ length: 100 }, (_, i) => i).join(',')}`));
        assert.equal(res.statusCode, 200, res.body);
        assert.ok(res.json().items.some((d: { id: string }) => d.id === alicePost.id));
      });

      it('id and ownerId filters compare as UUIDs (they were a 500)', async () => {
        const byId = await t.call('GET', list(`id=${alicePost.id}`));
        assert.equal(byId.statusCode, 200, byId.body);
        assert.deepEqual(byId.json().items.map((d: { id: string }) => d.id), [alicePost.id]);
        const byIds = await t.call('GET', list(`id[in]=${alicePost.id},${UUID_NOWHERE}`));
        assert.deepEqual(byIds.json().items.map((d: { id: string }) => d.id), [alicePost.id]);
        const byOwner = await t.call('GET', list(`ownerId=${alice.user.id}`));
        assert.equal(byOwner.statusCode, 200, byOwner.body);
        assert.ok(byOwner.json().items.length >= 1);
        assert.ok(byOwner.json().items.every((d: { ownerId: string }) => d.ownerId === alice.user.id));
        const bySort = await t.call('GET', list(`sort=ownerId&cursor=${cursor({ s: 'ownerId', v: UUID_NOWHERE, id: UUID_NOWHERE })}`));
        assert.equal(bySort.statusCode, 200, bySort.body);
      });

      it('a cursor date that JavaScript accepts but PostgreSQL would not is normalised (was a 500)', async () => {
        for (const v of ['2020-02-30', '2024-01-01 (comment)']) {
          const res = await t.call('GET', list(`cursor=${cursor({ s: '-createdAt', v, id: UUID_NOWHERE })}`));
          assert.equal(res.statusCode, 200, `${v}: ${res.body}`);
        }
      });

      it('nesting at the limit (64 levels) is stored', async () => {
        const res = await t.app.inject({ method: 'POST', url: notes, headers: { ...json, authorization: `Bearer ${alice.accessToken}` }, payload: nested(64) });
        assert.equal(res.statusCode, 201, res.body);
      });

      it('a POST to /anonymous with no body at all signs in (the body is optional)', async () => {
        const res = await t.app.inject({ method: 'POST', url: '/v1/auth/anonymous' });
        assert.equal(res.statusCode, 201, res.body);
        assert.equal(res.json().user.isAnonymous, true);
      });

      it('a value the database refuses that validation missed is a 400, not a 500, and writes nothing', async () => {
        // A NUL in User-Agent cannot arrive over real HTTP (Node refuses it), but in-process it
        // reaches the sessions table: the database's data exception must still be the client's 400.
        const before = await rowCounts(t);
        const res = await t.app.inject({ method: 'POST', url: '/v1/auth/anonymous', headers: { 'user-agent': 'x\u0000y' } });
        assertProblem(res, 400, 'bad_request');
        assert.deepEqual(await rowCounts(t), before);
      });
    });

    describe("other users' documents", () => {
      const rowOf = async (id: string) =>
        (await t.database.db.query('SELECT owner_id, data, version, updated_at FROM documents WHERE id = $1', [id])).rows[0];

      it("Bob cannot see, change or delete Alice's owner-only note: 404, and it is unchanged", async () => {
        const before = await rowOf(aliceNote.id);
        const counts = await rowCounts(t);
        const url = `${notes}/${aliceNote.id}`;
        assertProblem(await t.call('GET', url, { token: bob.accessToken }), 404, 'document_not_found', 'GET');
        assertProblem(await t.call('PATCH', url, { token: bob.accessToken, body: { text: 'pwned' } }), 404, 'document_not_found', 'PATCH');
        assertProblem(await t.call('PUT', url, { token: bob.accessToken, body: { text: 'pwned' } }), 404, 'document_not_found', 'PUT');
        assertProblem(await t.call('PUT', url, { token: bob.accessToken, body: { text: 'pwned' }, headers: { 'if-match': '"1"', 'idempotency-key': 'bob-1' } }), 404, 'document_not_found', 'PUT+keys');
        assertProblem(await t.call('DELETE', url, { token: bob.accessToken }), 404, 'document_not_found', 'DELETE');
        assertProblem(await t.call('DELETE', url, { token: bob.accessToken, headers: { 'if-match': '*' } }), 404, 'document_not_found', 'DELETE *');
        assertProblem(await t.call('GET', url), 401, 'unauthenticated', 'GET without a token');
        assertProblem(await t.call('DELETE', url), 401, 'unauthenticated', 'DELETE without a token');
        const bobsList = await t.call('GET', `${notes}?id=${aliceNote.id}`, { token: bob.accessToken });
        assert.equal(bobsList.statusCode, 200, bobsList.body);
        assert.deepEqual(bobsList.json().items, []);
        const byOwner = await t.call('GET', `${notes}?ownerId=${alice.user.id}`, { token: bob.accessToken });
        assert.deepEqual(byOwner.json().items, []);
        assert.deepEqual(await rowOf(aliceNote.id), before);
        assert.deepEqual(await rowCounts(t), counts);
        const own = await t.call('GET', url, { token: alice.accessToken });
        assert.equal(own.statusCode, 200);
        assert.equal(own.json().data.text, 'private');
      });

      it("Bob can read Alice's public post but not change or delete it: 403, and it is unchanged", async () => {
        const before = await rowOf(alicePost.id);
        const counts = await rowCounts(t);
        const url = `${posts}/${alicePost.id}`;
        const read = await t.call('GET', url, { token: bob.accessToken });
        assert.equal(read.statusCode, 200);
        assertProblem(await t.call('PATCH', url, { token: bob.accessToken, body: { title: 'pwned' } }), 403, 'forbidden', 'PATCH');
        assertProblem(await t.call('PATCH', url, { token: bob.accessToken, body: { title: null } }), 403, 'forbidden', 'PATCH null');
        assertProblem(await t.call('PUT', url, { token: bob.accessToken, body: { title: 'pwned' } }), 403, 'forbidden', 'PUT');
        assertProblem(await t.call('PUT', url, { token: bob.accessToken, body: { title: 'pwned' }, headers: { 'idempotency-key': 'bob-put-1' } }), 403, 'forbidden', 'PUT+key');
        assertProblem(await t.call('DELETE', url, { token: bob.accessToken }), 403, 'forbidden', 'DELETE');
        assertProblem(await t.call('DELETE', url, { token: bob.accessToken, headers: { 'if-match': '"1"' } }), 403, 'forbidden', 'DELETE If-Match');
        assertProblem(await t.call('PATCH', url, { body: { title: 'anon' } }), 401, 'unauthenticated', 'PATCH without a token');
        // A retried forbidden write does not replay anything, and still writes nothing.
        assertProblem(await t.call('PUT', url, { token: bob.accessToken, body: { title: 'pwned' }, headers: { 'idempotency-key': 'bob-put-1' } }), 403, 'forbidden', 'PUT+key again');
        assert.deepEqual(await rowOf(alicePost.id), before);
        assert.deepEqual(await rowCounts(t), counts);
      });

      it('admin-only collections refuse ordinary users', async () => {
        const counts = await rowCounts(t);
        assertProblem(await t.call('GET', '/v1/collections/settings/documents', { token: bob.accessToken }), 403, 'forbidden', 'list');
        assertProblem(await t.call('POST', '/v1/collections/settings/documents', { token: bob.accessToken, body: { flag: true } }), 403, 'forbidden', 'create');
        assertProblem(await t.call('GET', `/v1/collections/settings/documents/${UUID_NOWHERE}`, { token: bob.accessToken }), 403, 'forbidden', 'read');
        assert.deepEqual(await rowCounts(t), counts);
      });
    });

    describe('request ids', () => {
      it('every response carries one; a well-formed X-Request-Id is kept, a malformed one replaced', async () => {
        // Generated ids are a per-process prefix and a counter: present, well formed and never repeated.
        const generated = await Promise.all([1, 2, 3].map(() => t.call('GET', '/healthz')));
        const ids = generated.map((r) => String(r.headers['x-request-id']));
        for (const id of ids) assert.match(id, /^[A-Za-z0-9_-]{8}-[0-9a-z]+$/);
        assert.equal(new Set(ids).size, ids.length);
        const kept = await t.call('GET', '/v1/auth/me', { headers: { 'x-request-id': 'client-req.42:a' } });
        assert.equal(kept.headers['x-request-id'], 'client-req.42:a');
        assert.equal(kept.json().requestId, 'client-req.42:a');
        for (const bad of ['has space', 'x'.repeat(129), "quote'd", '<script>']) {
          const res = await t.call('GET', '/v1/auth/me', { headers: { 'x-request-id': bad } });
          assert.notEqual(res.headers['x-request-id'], bad);
          assert.equal(res.json().requestId, res.headers['x-request-id']);
        }
        const framework = await t.call('GET', '/v1/collections/%ZZ/documents', { headers: { 'x-request-id': 'bad-url-1' } });
        assertProblem(framework, 400, 'bad_request');
        assert.equal(framework.headers['x-request-id'], 'bad-url-1');
      });
    });
  });
}
