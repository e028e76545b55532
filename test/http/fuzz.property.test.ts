import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { InjectOptions } from 'fastify';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { ERRORS } from '../../src/lib/errors.js';
import { createTestApp, makeAdmin, signUp, type TestApp } from '../support/app.js';
import { engines } from '../support/engines.js';

// Property: whatever arrives — any route from the OpenAPI document plus the ops routes, any method,
// real or garbage path parameters, random query strings, headers and bodies — the server answers
// below 500, every error is problem+json with a catalogue `code` and the response's request id,
// and afterwards it still serves. Deterministic by default; FC_SEED (and FC_PATH, both printed by
// fast-check on failure) reproduce a failure, FC_RUNS changes the number of requests per engine.

const SEED = process.env.FC_SEED !== undefined ? Number(process.env.FC_SEED) : 0x1e7ee;
const PATH = process.env.FC_PATH;
const RUNS = process.env.FC_RUNS !== undefined ? Number(process.env.FC_RUNS) : 600;

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'] as const;
type Method = (typeof METHODS)[number];
const OPS_ROUTES = ['/healthz', '/readyz', '/metrics', '/openapi.json', '/docs', '/.well-known/jwks.json'];
const PROVIDER_AUD = 'com.example.fuzz';

/** Path and query fragments that have broken parsers before: escapes, traversal, SQL, brackets. */
const NASTY = [
  '', ' ', "'", '"', '`', '--', ';', '%', '%00', '%ZZ', '%E0%A4%A', '%ED%A0%80', '%C0%AF', '%2e%2e', '..', '..%2F..', '[', ']', '[]', '[in]',
  '__proto__', 'constructor', 'prototype', 'null', 'undefined', 'NaN', 'Infinity', '-1', '0', '1e999', '9'.repeat(40), '😀', 'é', '\u202e',
  "' OR '1'='1", '1; DROP TABLE users; --', '$1', '::uuid', '*', '\\', '{}', '{"$gt":""}', 'a'.repeat(300),
];
const CONTENT_TYPES = [
  'application/json', 'application/json; charset=utf-8', 'application/json; charset=latin1', 'APPLICATION/JSON', 'application/merge-patch+json',
  'text/plain', 'text/plain; charset=utf-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=xyz', 'application/octet-stream',
  'application/jsonx', 'application/vnd.api+json', 'application/problem+json', ';;', 'json', '*/*', '',
];

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v) ?? 'null').toString('base64url');
const enc = (s: string) => encodeURIComponent(s.replace(/[\ud800-\udfff]/g, '\ufffd'));
const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 120 });
const latin1 = fc.string({ unit: fc.integer({ min: 0x20, max: 0xff }).filter((c) => c < 0x7f || c > 0x9f).map((c) => String.fromCharCode(c)), maxLength: 60 });

/** Bodies too big to print in a counterexample are generated as a marker and built when sent. */
const BIG = {
  oversized: () => JSON.stringify({ blob: 'x'.repeat(1_100_000) }),
  overDocLimit: () => JSON.stringify({ title: 't', text: 'x'.repeat(70_000) }),
  deepObjects: () => `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`,
  deepArrays: () => `{"a":${'['.repeat(5000)}${']'.repeat(5000)}}`,
} as const;

async function startJwksServer() {
  const { publicKey, privateKey } = await generateKeyPair('ES256');
  const body = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'fuzz-1', alg: 'ES256', use: 'sig' }] });
  const server: Server = createServer((req, res) => {
    if (req.url === '/keys') res.writeHead(200, { 'content-type': 'application/json' }).end(body);
    else res.writeHead(404).end();
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/keys`, privateKey, close: () => new Promise<void>((ok) => server.close(() => ok())) };
}

for (const engine of await engines()) {
  describe(`fuzzing every route on ${engine.name}`, { skip: engine.skip }, () => {
    let t: TestApp;
    let jwks: Awaited<ReturnType<typeof startJwksServer>>;
    const routes: { method: Method; path: string }[] = [];
    const ids: string[] = [];
    /** Document ids with a token that may write them, for requests that get past access checks. */
    const owned: { collection: string; id: string; token: string }[] = [];
    const tokens: string[] = [];
    let providerToken = '';

    before(async () => {
      jwks = await startJwksServer();
      // Both providers configured against a local key set, so their routes verify (and refuse)
      // instead of answering 501 — and no request leaves the machine.
      t = await createTestApp(engine, {
        files: true,
        overrides: {
          appleAudiences: [PROVIDER_AUD],
          appleJwksUrl: jwks.url,
          googleAudiences: [PROVIDER_AUD],
          googleJwksUrl: jwks.url,
        },
      });
      const alice = await signUp(t);
      const bob = await signUp(t);
      const admin = await makeAdmin(t);
      const anon = (await t.call('POST', '/v1/auth/anonymous', { body: {} })).json();
      tokens.push(alice.accessToken, bob.accessToken, admin.accessToken, anon.accessToken);
      for (const [collection, token, body] of [
        ['posts', alice.accessToken, { title: 'a', status: 'published', score: 1 }],
        ['posts', bob.accessToken, { title: 'b', status: 'draft', score: 2 }],
        ['notes', alice.accessToken, { text: 'private' }],
        ['members', bob.accessToken, { x: 1 }],
        ['settings', admin.accessToken, { flag: true }],
      ] as const) {
        const res = await t.call('POST', `/v1/collections/${collection}/documents`, { token, body });
        assert.equal(res.statusCode, 201, res.body);
        ids.push(res.json().id);
        owned.push({ collection, id: res.json().id, token });
      }
      const sessions = await t.call('GET', '/v1/auth/sessions', { token: alice.accessToken });
      ids.push(...sessions.json().items.map((s: { id: string }) => s.id));
      ids.push(alice.user.id);
      // A correctly signed provider token with the wrong audience: exercises the key-set fetch.
      providerToken = await new SignJWT({ email: 'x@example.com' })
        .setProtectedHeader({ alg: 'ES256', kid: 'fuzz-1' })
        .setIssuer('https://appleid.apple.com')
        .setAudience('someone.else')
        .setSubject('fuzz')
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(jwks.privateKey);

      const spec = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json() as { paths: Record<string, Record<string, unknown>> };
      for (const [path, ops] of Object.entries(spec.paths)) {
        for (const m of Object.keys(ops)) {
          const method = m.toUpperCase() as Method;
          if (METHODS.includes(method)) routes.push({ method, path });
        }
      }
      for (const path of OPS_ROUTES) if (!routes.some((r) => r.path === path)) routes.push({ method: 'GET', path });
    });
    after(async () => {
      await t.close();
      await jwks.close();
    });

    it('enumerates the routes from the OpenAPI document (and each is really served)', () => {
      const has = (method: Method, path: string) => routes.some((r) => r.method === method && r.path === path);
      assert.ok(routes.length >= 20, `only ${routes.length} routes enumerated`);
      for (const [m, p] of [
        ['POST', '/v1/auth/signup'], ['POST', '/v1/auth/refresh'], ['DELETE', '/v1/auth/sessions/{id}'], ['POST', '/v1/auth/apple'],
        ['GET', '/v1/collections/{collection}/documents'], ['POST', '/v1/collections/{collection}/documents'],
        ['GET', '/v1/collections/{collection}/documents/{id}'], ['PUT', '/v1/collections/{collection}/documents/{id}'],
        ['PATCH', '/v1/collections/{collection}/documents/{id}'], ['DELETE', '/v1/collections/{collection}/documents/{id}'], ['GET', '/healthz'],
      ] as const) {
        assert.ok(has(m, p), `${m} ${p} is not enumerated`);
      }
      for (const r of routes) {
        const url = r.path.replace('{*}', '*').replace(/\{(\w+)\}/g, ':$1');
        assert.ok(t.app.hasRoute({ method: r.method, url }), `${r.method} ${r.path} is in the OpenAPI document but not served`);
      }
    });

    it(`answers ${RUNS} random requests below 500, errors as problem+json (seed ${SEED})`, async (ctx) => {
      ctx.diagnostic(`fast-check seed ${SEED}${PATH ? ` path ${PATH}` : ''}, ${RUNS} runs; reproduce with FC_SEED=${SEED}`);

      const statuses = new Map<string, number>();
      const routeHits = new Map<string, number>();
      const garbageSegment = fc.oneof(
        { weight: 2, arbitrary: fc.uuid() },
        { weight: 2, arbitrary: fc.constantFrom(...NASTY) },
        { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 70 }).map(enc) },
        { weight: 1, arbitrary: printable.map((s) => s.replace(/[#?]/g, '')) },
      );
      const collectionSegment = fc.oneof({ weight: 3, arbitrary: fc.constantFrom('posts', 'notes', 'members', 'settings') }, { weight: 1, arbitrary: garbageSegment });
      const idSegment = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...ids) }, { weight: 1, arbitrary: garbageSegment });
      const segment = fc.oneof(collectionSegment, idSegment);
      const queryKey = fc.oneof(
        { weight: 4, arbitrary: fc.constantFrom('sort', 'limit', 'cursor', 'status', 'score', 'createdAt', 'id', 'ownerId', 'title', 'status[in]', 'score[gt]', 'score[lte]', 'createdAt[gte]', 'id[in]', 'ownerId[ne]', 'status[like]', 'x[y][z]', 'a[]') },
        { weight: 1, arbitrary: fc.constantFrom(...NASTY) },
        { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 20 }) },
      );
      const queryValue = fc.oneof(
        { weight: 3, arbitrary: fc.constantFrom('-createdAt', 'createdAt', 'score', '-score', 'status', 'id', '-ownerId', '1', '20', '100', '101', 'abc', '2024-01-01', '2020-02-30', '0000-01-01', '9999-12-31T23:00:00-14:00', 'true', 'published', ...ids) },
        { weight: 2, arbitrary: fc.constantFrom(...NASTY) },
        { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }) },
        { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 20 }) },
        { weight: 2, arbitrary: fc.record({ s: fc.constantFrom('-createdAt', 'score', 'status', 'id'), v: fc.jsonValue({ maxDepth: 1 }), id: fc.oneof(fc.uuid(), fc.string()) }, { requiredKeys: [] }).map(b64) },
        { weight: 1, arbitrary: fc.array(fc.oneof(fc.integer(), fc.uuid(), fc.string({ maxLength: 5 })), { maxLength: 120 }).map((a) => a.join(',')) },
      );
      const query = fc.array(fc.tuple(queryKey, queryValue, fc.boolean()), { maxLength: 6 }).map((pairs) =>
        pairs.map(([k, v, raw]) => (raw ? `${k.replace(/[#\s]/g, '')}=${v.replace(/[#\s&]/g, '')}` : `${enc(k)}=${enc(v)}`)).join('&'),
      );
      const path = fc.oneof(
        { weight: 8, arbitrary: fc.record({ route: fc.constantFrom(...routes), collection: collectionSegment, id: idSegment }).map(({ route, collection, id }) => ({ route, url: route.path.replace('{collection}', collection).replace('{id}', id).replace('{*}', `${collection}/${id}`).replace('{variant}', collection) })) },
        { weight: 1, arbitrary: fc.webPath().map((p) => ({ route: undefined, url: `/v1${p}` })) },
        // Not `//…` or `/\…`: inject reads those as a host (a real client could not send them either).
        { weight: 1, arbitrary: fc.array(segment, { minLength: 1, maxLength: 6 }).map((s) => ({ route: undefined, url: `/v1/${s.join('/')}` })) },
      );
      const authorization = fc.oneof(
        { weight: 8, arbitrary: fc.constantFrom(...tokens).map((tk) => `Bearer ${tk}`) },
        { weight: 1, arbitrary: fc.constantFrom(...tokens).map((tk) => `Bearer ${tk.slice(0, -3)}${tk.endsWith('AAA') ? 'BBB' : 'AAA'}`) },
        { weight: 1, arbitrary: fc.constantFrom(...tokens).map((tk) => `Bearer ${tk.split('.').slice(0, 2).join('.')}.`) },
        { weight: 1, arbitrary: fc.constantFrom('Bearer ', 'Basic YTpi', 'Bearer a.b.c', 'Bearer eyJhbGciOiJub25lIn0.e30.', `Bearer ${'a'.repeat(5000)}`) },
        { weight: 1, arbitrary: printable.map((s) => `Bearer ${s}`) },
        { weight: 1, arbitrary: printable },
      );
      const headers = fc.record(
        {
          authorization,
          'if-match': fc.oneof({ weight: 4, arbitrary: fc.constantFrom('"1"', '"2"', 'W/"1"', '*', '"0"', '"999999999"', '1', '"-1"', '"1", "2"') }, { weight: 1, arbitrary: printable }),
          'if-none-match': fc.oneof(fc.constantFrom('"1"', '*'), printable),
          'idempotency-key': fc.oneof({ weight: 4, arbitrary: fc.stringMatching(/^[\x21-\x7e]{1,40}$/) }, { weight: 1, arbitrary: latin1 }, { weight: 1, arbitrary: fc.constant('k'.repeat(300)) }),
          'x-request-id': fc.oneof(fc.stringMatching(/^[A-Za-z0-9._:-]{1,128}$/), latin1),
          'user-agent': latin1,
          accept: fc.constantFrom('application/json', '*/*', 'text/html', 'application/problem+json', 'application/xml'),
          traceparent: fc.oneof(fc.constant('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'), printable),
        },
        { requiredKeys: [] },
      );
      const anyJson = fc.jsonValue({ maxDepth: 2, stringUnit: 'binary' });
      const body: fc.Arbitrary<string | Buffer | keyof typeof BIG | undefined> = fc.oneof(
        { weight: 2, arbitrary: fc.constant(undefined) },
        { weight: 3, arbitrary: fc.json({ maxDepth: 4 }) },
        { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3, stringUnit: 'binary' }).map((v) => JSON.stringify(v) ?? 'null') },
        {
          weight: 4,
          arbitrary: fc
            .record(
              {
                title: anyJson, status: anyJson, score: fc.oneof(fc.double(), anyJson), text: anyJson,
                email: fc.oneof(fc.emailAddress(), anyJson), password: fc.oneof(fc.string({ minLength: 8, maxLength: 24 }), anyJson),
                deviceName: anyJson, refreshToken: fc.oneof(fc.constant('rt_x'), anyJson), idToken: fc.oneof(fc.constant(providerToken), printable, anyJson),
                nonce: anyJson, currentPassword: anyJson, newPassword: anyJson,
              },
              { requiredKeys: [] },
            )
            .map((o) => JSON.stringify(o)),
        },
        // Plausible documents and credentials, so requests also get past validation.
        {
          weight: 4,
          arbitrary: fc
            .oneof(
              fc.record({ title: fc.string({ maxLength: 60 }), status: fc.constantFrom('draft', 'published', "' OR 1=1 --"), score: fc.integer() }, { requiredKeys: [] }),
              fc.record({ text: fc.string({ unit: 'grapheme', maxLength: 60 }), tags: fc.array(fc.string({ maxLength: 8 }), { maxLength: 4 }) }),
              fc.record({ email: fc.emailAddress(), password: fc.string({ minLength: 8, maxLength: 24 }), deviceName: fc.string({ maxLength: 20 }) }, { requiredKeys: ['email', 'password'] }),
            )
            .map((o) => JSON.stringify(o)),
        },
        { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
        { weight: 1, arbitrary: fc.json({ maxDepth: 3 }).map((s) => s.slice(0, -1)) },
        { weight: 1, arbitrary: fc.uint8Array({ maxLength: 256 }).map((a) => Buffer.from(a)) },
        {
          weight: 2,
          arbitrary: fc.constantFrom(
            '{"__proto__":{"x":1}}', '{"constructor":{"prototype":{"x":1}}}', '{"n":1e999}', '{"a":"\\u0000"}', '{"\\u0000":1}', '{"a":"\\ud800"}',
            'null', '[]', '""', '0', 'true', '{}', '{"title":null}', ...(Object.keys(BIG) as (keyof typeof BIG)[]),
          ),
        },
      );
      const contentType = fc.oneof(
        { weight: 6, arbitrary: fc.constant('application/json') },
        { weight: 1, arbitrary: fc.constant(undefined) },
        { weight: 3, arbitrary: fc.constantFrom(...CONTENT_TYPES) },
        { weight: 1, arbitrary: printable },
      );
      const anything = fc.record({
        path,
        contentType,
        // Mostly the route's own method; sometimes another one.
        method: fc.oneof({ weight: 5, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.constantFrom(...METHODS) }),
        query,
        headers,
        body,
      });
      // A well-formed document request by a user allowed to make it, with one part random: the
      // body, the query string or a write header. These get past authentication, routing and
      // access rules, into validation, the list query builder and the store.
      const documentRoutes = routes.filter((r) => r.path.startsWith('/v1/collections/'));
      const nastyBody = fc.oneof(
        body,
        fc.jsonValue({ maxDepth: 3, stringUnit: 'binary' }).map((v) => JSON.stringify({ text: v, title: typeof v === 'string' ? v.slice(0, 100) : 't' })),
        fc.dictionary(fc.string({ unit: 'binary', maxLength: 8 }), fc.jsonValue({ maxDepth: 2, stringUnit: 'binary' }), { maxKeys: 4 }).map((o) => JSON.stringify(o)),
      );
      // Values shaped like each field's type (and its edges), so they reach the database.
      const uuidValue = fc.oneof(fc.constantFrom(...ids), fc.uuid(), queryValue);
      const dateValue = fc.oneof(
        fc.date({ min: new Date('-000001-01-01T00:00:00Z'), max: new Date('+010000-01-01T00:00:00Z'), noInvalidDate: true }).map((d) => d.toISOString()),
        fc.constantFrom('0000-01-01', '0001-01-01T00:00:00+14:00', '9999-12-31T23:00:00-14:00', '2020-02-30', '2024-01-01 (note)', '2024-01-01T25:00'),
        queryValue,
      );
      const textValue = fc.oneof(fc.string({ unit: 'binary', maxLength: 12 }), queryValue);
      const numberValue = fc.oneof(fc.double().map(String), fc.integer().map(String), queryValue);
      const valueFor: Record<string, fc.Arbitrary<string>> = { createdAt: dateValue, id: uuidValue, ownerId: uuidValue, status: textValue, score: numberValue };
      const sometimes = <T>(arb: fc.Arbitrary<T>) => fc.oneof({ weight: 2, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: arb });
      const listQuery = fc.constantFrom('createdAt', 'id', 'ownerId', 'status', 'score').chain((field) =>
        fc
          .record({
            sort: sometimes(fc.oneof({ weight: 3, arbitrary: fc.constantFrom(field, `-${field}`) }, { weight: 1, arbitrary: queryValue })),
            limit: sometimes(fc.oneof({ weight: 3, arbitrary: fc.integer({ min: -1, max: 101 }).map(String) }, { weight: 1, arbitrary: queryValue })),
            cursor: sometimes(
              fc.oneof(
                { weight: 3, arbitrary: fc.record({ s: fc.constantFrom(field, `-${field}`), v: fc.oneof(valueFor[field]!, fc.double(), fc.boolean()), id: uuidValue }).map(b64) },
                { weight: 1, arbitrary: queryValue },
              ),
            ),
            eq: sometimes(valueFor[field]!),
            op: sometimes(fc.tuple(fc.constantFrom('gt', 'gte', 'lt', 'lte', 'ne', 'in'), fc.array(valueFor[field]!, { minLength: 1, maxLength: 3 }))),
          })
          .map(({ eq, op, ...rest }) => {
            const pairs: [string, string][] = Object.entries(rest).filter((e): e is [string, string] => e[1] !== undefined);
            if (eq !== undefined) pairs.push([field, eq]);
            if (op !== undefined) pairs.push([`${field}[${op[0]}]`, op[0] === 'in' ? op[1].join(',') : op[1][0]!]);
            return pairs.map(([k, v]) => `${enc(k)}=${enc(v)}`).join('&');
          }),
      );
      const allowed = fc
        .record({
          route: fc.oneof(
            { weight: 1, arbitrary: fc.constantFrom(...documentRoutes) },
            { weight: 1, arbitrary: fc.constant({ method: 'GET' as Method, path: '/v1/collections/{collection}/documents' }) },
          ),
          doc: fc.constantFrom(...owned),
          query: fc.oneof(fc.constant(''), listQuery),
          headers: fc.record({ 'if-match': headers.map((h) => h['if-match'] ?? '*'), 'idempotency-key': fc.stringMatching(/^[\x21-\x7e]{1,40}$/) }, { requiredKeys: [] }),
          body: nastyBody,
        })
        .map(({ route, doc, query: q, headers: h, body: b }) => ({
          path: { route, url: route.path.replace('{collection}', doc.collection).replace('{id}', doc.id) },
          contentType: 'application/json' as string | undefined,
          method: null as Method | null,
          query: q,
          headers: { ...h, authorization: `Bearer ${doc.token}` } as Record<string, string>,
          body: b,
        }));
      const request = fc.oneof({ weight: 3, arbitrary: anything }, { weight: 2, arbitrary: allowed });

      await fc.assert(
        fc.asyncProperty(request, async (r) => {
          const method: Method = r.method ?? r.path.route?.method ?? 'GET';
          const url = r.query ? `${r.path.url}?${r.query}` : r.path.url;
          const payload = typeof r.body === 'string' && Object.hasOwn(BIG, r.body) ? BIG[r.body as keyof typeof BIG]() : r.body;
          const headers = { ...r.headers, ...(r.contentType !== undefined ? { 'content-type': r.contentType } : {}) };
          const opts: InjectOptions = { method, url, headers, ...(payload !== undefined ? { payload } : {}) };
          const res = await t.app.inject(opts);
          const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
          bump(statuses, String(res.statusCode));
          if (r.path.route) bump(routeHits, `${r.path.route.method} ${r.path.route.path}`);
          const where = `${method} ${url.slice(0, 200)} → ${res.statusCode} ${res.body.slice(0, 300)}`;
          assert.ok(res.statusCode < 500, where);
          assert.ok(res.headers['x-request-id'], `no x-request-id: ${where}`);
          if (res.statusCode >= 400 && method !== 'HEAD') {
            assert.match(String(res.headers['content-type']), /^application\/problem\+json(;|$)/, where);
            const p = res.json();
            assert.ok(typeof p.code === 'string' && p.code in ERRORS, `unknown code: ${where}`);
            assert.equal(p.status, res.statusCode, where);
            assert.equal(p.requestId, res.headers['x-request-id'], where);
          }
        }),
        { seed: SEED, numRuns: RUNS, ...(PATH ? { path: PATH } : {}) },
      );

      // Not vacuous: every route was tried, and a fair share of requests got through to a 2xx.
      ctx.diagnostic(`statuses ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`);
      if (!PATH && RUNS >= 200) {
        for (const r of routes) assert.ok(routeHits.has(`${r.method} ${r.path}`), `${r.method} ${r.path} was never requested`);
        const ok = [...statuses].filter(([s]) => s.startsWith('2')).reduce((n, [, c]) => n + c, 0);
        assert.ok(ok >= RUNS * 0.05, `only ${ok} of ${RUNS} requests succeeded: the generators no longer reach the handlers`);
      }
      // Still up and still working: health, readiness, a sign-up and a write.
      const health = await t.app.inject({ method: 'GET', url: '/healthz' });
      assert.equal(health.statusCode, 200);
      assert.equal((await t.app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
      const s = await signUp(t);
      const write = await t.call('POST', '/v1/collections/notes/documents', { token: s.accessToken, body: { text: 'after the storm' } });
      assert.equal(write.statusCode, 201, write.body);
    });
  });
}
