import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { createTestApp, signUp, uniqueEmail, type TestApp } from '../support/app.js';
import { engines } from '../support/engines.js';

// Sign in with Apple and Google against a local JWKS: the providers' ID tokens are minted here
// with our own keys, so every verification rule (issuer, audience, expiry, key, algorithm, nonce)
// can be exercised without leaving the machine.

const APPLE_ISS = 'https://appleid.apple.com';
const APPLE_AUD = 'com.example.app';
const GOOGLE_ISSUERS = ['https://accounts.google.com', 'accounts.google.com'];
const GOOGLE_AUD = '1234-example.apps.googleusercontent.com';

interface SigningKey {
  kid: string;
  alg: 'RS256' | 'ES256';
  privateKey: CryptoKey;
  publicJwk: JWK;
}

async function signingKey(alg: 'RS256' | 'ES256', kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg);
  return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

const rsa = await signingKey('RS256', 'rsa-1');
const ec = await signingKey('ES256', 'ec-1');
/** Never published: tokens it signs must be refused. */
const stranger = await signingKey('RS256', 'stranger');
/** Same kid as a published key, different key material. */
const impostor = await signingKey('RS256', 'rsa-1');

/**
 * The provider's JWKS endpoint. `/keys` serves the published keys; `/flaky` does whatever
 * `flaky.mode` says (hang without answering, answer 500, or serve the keys).
 */
async function startJwksServer() {
  const flaky = { mode: 'ok' as 'ok' | 'hang' | 'error' };
  const hits = { keys: 0, flaky: 0 };
  const body = JSON.stringify({ keys: [rsa.publicJwk, ec.publicJwk] });
  const server: Server = createServer((req, res) => {
    const serveKeys = () => res.writeHead(200, { 'content-type': 'application/json' }).end(body);
    if (req.url === '/keys') {
      hits.keys++;
      return serveKeys();
    }
    if (req.url === '/flaky') {
      hits.flaky++;
      if (flaky.mode === 'ok') return serveKeys();
      if (flaky.mode === 'error') return res.writeHead(500).end('upstream trouble');
      return; // hang: never answer
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    base,
    flaky,
    hits,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}

/** A loopback URL on which nothing listens. */
async function deadUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((ok) => s.close(() => ok()));
  return `http://127.0.0.1:${port}/keys`;
}

interface Claims {
  sub?: string;
  iss?: string;
  aud?: string | string[];
  email?: string;
  email_verified?: boolean | string;
  nonce?: string;
  /** Seconds from now; negative for an expired token. */
  expiresIn?: number;
}

let subjects = 0;
const newSubject = (tag: string) => `${tag}.${process.pid}.${Date.now()}.${subjects++}`;

async function idToken(key: SigningKey, c: Claims & { iss: string; aud: string | string[] }): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const { iss, aud, sub, expiresIn = 600, ...rest } = c;
  const jwt = new SignJWT({ ...rest }).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' }).setIssuer(iss).setAudience(aud).setIssuedAt(now - 5).setExpirationTime(now + expiresIn);
  if (sub !== undefined) jwt.setSubject(sub);
  return jwt.sign(key.privateKey);
}
const appleToken = (c: Claims = {}, key = rsa) => idToken(key, { iss: APPLE_ISS, aud: APPLE_AUD, sub: c.sub ?? newSubject('apple'), ...c });
const googleToken = (c: Claims = {}, key = ec) => idToken(key, { iss: GOOGLE_ISSUERS[0]!, aud: GOOGLE_AUD, sub: c.sub ?? newSubject('google'), ...c });

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
const decodePart = (token: string, i: number) => JSON.parse(Buffer.from(token.split('.')[i]!, 'base64url').toString('utf8')) as Record<string, unknown>;

const jwks = await startJwksServer();
after(() => jwks.close());

for (const engine of await engines()) {
  describe(`sign in with Apple and Google on ${engine.name}`, { skip: engine.skip }, () => {
    let t: TestApp;
    before(async () => {
      t = await createTestApp(engine, {
        overrides: {
          appleJwksUrl: `${jwks.base}/keys`,
          appleAudiences: [APPLE_AUD],
          appleIssuer: APPLE_ISS,
          googleJwksUrl: `${jwks.base}/keys`,
          googleAudiences: [GOOGLE_AUD],
          googleIssuers: GOOGLE_ISSUERS,
        },
      });
    });
    after(() => t.close());

    const signIn = (provider: 'apple' | 'google', body: Record<string, unknown>, token?: string) => t.call('POST', `/v1/auth/${provider}`, { body, ...(token ? { token } : {}) });
    const assertRefused = async (provider: 'apple' | 'google', idTokenValue: string, extra: Record<string, unknown> = {}) => {
      const res = await signIn(provider, { idToken: idTokenValue, ...extra });
      assert.equal(res.statusCode, 401, res.body);
      assert.equal(res.json().code, 'invalid_id_token');
      assert.match(res.headers['content-type'] as string, /^application\/problem\+json/);
      return res;
    };

    it('a valid Apple token creates an account; the same subject signs into it again', async () => {
      const sub = newSubject('apple');
      const email = uniqueEmail('apple');
      const first = await signIn('apple', { idToken: await appleToken({ sub, email, email_verified: 'true' }), deviceName: 'iPhone' });
      assert.equal(first.statusCode, 200, first.body);
      const body = first.json();
      assert.deepEqual(Object.keys(body).sort(), ['accessToken', 'expiresIn', 'refreshToken', 'user']);
      assert.equal(body.user.email, email);
      assert.equal(body.user.isAnonymous, false);
      assert.equal(body.expiresIn, 900);

      const again = await signIn('apple', { idToken: await appleToken({ sub }) });
      assert.equal(again.statusCode, 200, again.body);
      assert.equal(again.json().user.id, body.user.id);
      assert.notEqual(again.json().refreshToken, body.refreshToken);

      const me = await t.call('GET', '/v1/auth/me', { token: again.json().accessToken });
      assert.equal(me.statusCode, 200);
      assert.deepEqual(me.json().providers, ['apple']);
      // Two device sessions now, both usable.
      assert.equal((await t.call('GET', '/v1/auth/sessions', { token: body.accessToken })).json().items.length, 2);
      assert.equal((await t.call('POST', '/v1/auth/refresh', { body: { refreshToken: body.refreshToken } })).statusCode, 200);
    });

    it('Google: RS256 and ES256 keys, every configured issuer, audience lists', async () => {
      const sub = newSubject('google');
      const first = await signIn('google', { idToken: await googleToken({ sub, email: uniqueEmail('g'), email_verified: true }, ec) });
      assert.equal(first.statusCode, 200, first.body);
      const id = first.json().user.id;
      const viaRsa = await signIn('google', { idToken: await googleToken({ sub, iss: 'accounts.google.com' }, rsa) });
      assert.equal(viaRsa.statusCode, 200, viaRsa.body);
      assert.equal(viaRsa.json().user.id, id);
      const multiAud = await signIn('google', { idToken: await googleToken({ sub, aud: ['someone-else', GOOGLE_AUD] }) });
      assert.equal(multiAud.statusCode, 200, multiAud.body);
      assert.equal(multiAud.json().user.id, id);
      const me = await t.call('GET', '/v1/auth/me', { token: multiAud.json().accessToken });
      assert.deepEqual(me.json().providers, ['google']);
    });

    it('identities are per provider: the same subject at Apple and Google are two accounts', async () => {
      const sub = newSubject('shared');
      const a = await signIn('apple', { idToken: await appleToken({ sub }) });
      const g = await signIn('google', { idToken: await googleToken({ sub }) });
      assert.equal(a.statusCode, 200, a.body);
      assert.equal(g.statusCode, 200, g.body);
      assert.notEqual(a.json().user.id, g.json().user.id);
    });

    it('refuses wrong audience, wrong issuer and expired tokens', async () => {
      await assertRefused('apple', await appleToken({ aud: 'com.attacker.app' }));
      await assertRefused('google', await googleToken({ aud: 'another-client.apps.googleusercontent.com' }));
      await assertRefused('apple', await appleToken({ iss: 'https://appleid.evil.example' }));
      await assertRefused('google', await googleToken({ iss: 'https://accounts.google.com.evil.example' }));
      // A valid Google token is not an Apple token (issuer and audience both differ).
      await assertRefused('apple', await googleToken());
      await assertRefused('apple', await appleToken({ expiresIn: -120 }));
      await assertRefused('google', await googleToken({ expiresIn: -1 }));
    });

    it('refuses tokens signed by unknown keys, unsigned (alg none) and tampered tokens', async () => {
      const hitsBefore = jwks.hits.keys;
      await assertRefused('apple', await appleToken({}, stranger));
      await assertRefused('apple', await appleToken({}, impostor));

      const valid = await appleToken({ sub: newSubject('victim') });
      const [header, payload] = valid.split('.');
      const unsigned = `${b64({ alg: 'none', typ: 'JWT' })}.${payload}.`;
      await assertRefused('apple', unsigned);
      await assertRefused('apple', `${b64({ alg: 'none', kid: rsa.kid })}.${payload}.${valid.split('.')[2]}`);
      // Same header and signature, payload changed to another subject.
      const forged = { ...decodePart(valid, 1), sub: 'someone-else' };
      await assertRefused('apple', `${header}.${b64(forged)}.${valid.split('.')[2]}`);
      // Algorithm swap: HS256 "signed" with the public key must not be accepted.
      const hs = await new SignJWT({ sub: 'x' }).setProtectedHeader({ alg: 'HS256', kid: rsa.kid }).setIssuer(APPLE_ISS).setAudience(APPLE_AUD).setExpirationTime('5m').sign(new TextEncoder().encode(JSON.stringify(rsa.publicJwk)));
      await assertRefused('apple', hs);
      await assertRefused('apple', 'not.a.jwt');
      // No subject.
      await assertRefused('apple', await idToken(rsa, { iss: APPLE_ISS, aud: APPLE_AUD }));

      // The original still works: none of the above burned the key set.
      const ok = await signIn('apple', { idToken: valid });
      assert.equal(ok.statusCode, 200, ok.body);
      // An unknown kid may trigger at most one refetch (then the cool-down applies).
      assert.ok(jwks.hits.keys - hitsBefore <= 1, `JWKS fetched ${jwks.hits.keys - hitsBefore} times`);
    });

    it('checks the nonce when one is sent or the token carries one', async () => {
      const sub = newSubject('nonce');
      const token = await appleToken({ sub, nonce: 'n-123' });
      await assertRefused('apple', token, { nonce: 'n-456' });
      // Replaying a nonce-bound token without its nonce is also refused.
      await assertRefused('apple', token);
      // A nonce was expected but the token has none.
      await assertRefused('google', await googleToken(), { nonce: 'n-789' });
      const ok = await signIn('apple', { idToken: token, nonce: 'n-123' });
      assert.equal(ok.statusCode, 200, ok.body);
      // No nonce on either side is fine (not every SDK flow sets one).
      assert.equal((await signIn('google', { idToken: await googleToken() })).statusCode, 200);
    });

    it('an email already used by a password account is not taken over', async () => {
      const owner = await signUp(t);
      for (const email of [owner.email, owner.email.toUpperCase()]) {
        const res = await signIn('google', { idToken: await googleToken({ email, email_verified: true }) });
        assert.equal(res.statusCode, 200, res.body);
        assert.notEqual(res.json().user.id, owner.user.id);
        assert.equal(res.json().user.email, null);
      }
      const apple = await signIn('apple', { idToken: await appleToken({ email: owner.email, email_verified: 'true' }) });
      assert.notEqual(apple.json().user.id, owner.user.id);
      assert.equal(apple.json().user.email, null);
      // The password account is untouched.
      const back = await t.call('POST', '/v1/auth/signin', { body: { email: owner.email, password: owner.password } });
      assert.equal(back.statusCode, 200);
      assert.equal(back.json().user.id, owner.user.id);
      assert.deepEqual((await t.call('GET', '/v1/auth/me', { token: back.json().accessToken })).json().providers, ['password']);
    });

    it('an unverified email is not recorded', async () => {
      const res = await signIn('google', { idToken: await googleToken({ email: uniqueEmail('unverified'), email_verified: false }) });
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(res.json().user.email, null);
    });

    it('a signed-in anonymous user gets the identity linked, keeping its id and data', async () => {
      const anon = await t.call('POST', '/v1/auth/anonymous', { body: { deviceName: 'first launch' } });
      assert.equal(anon.statusCode, 201);
      const { user, accessToken } = anon.json();
      const note = await t.call('POST', '/v1/collections/notes/documents', { token: accessToken, body: { text: 'written before sign-in' } });
      assert.equal(note.statusCode, 201, note.body);

      const sub = newSubject('link');
      const linked = await signIn('apple', { idToken: await appleToken({ sub }) }, accessToken);
      assert.equal(linked.statusCode, 200, linked.body);
      assert.equal(linked.json().user.id, user.id);
      assert.equal(linked.json().user.isAnonymous, false);
      assert.deepEqual((await t.call('GET', '/v1/auth/me', { token: linked.json().accessToken })).json().providers, ['apple']);

      // Later, on another device, without a token: the same account, with the note.
      const later = await signIn('apple', { idToken: await appleToken({ sub }) });
      assert.equal(later.json().user.id, user.id);
      const notes = await t.call('GET', '/v1/collections/notes/documents', { token: later.json().accessToken });
      assert.equal(notes.statusCode, 200, notes.body);
      assert.deepEqual(notes.json().items.map((d: { data: unknown }) => d.data), [{ text: 'written before sign-in' }]);
    });

    it('the OpenAPI document lists the provider routes\' failure answers', async () => {
      const doc = (await t.call('GET', '/openapi.json')).json();
      for (const provider of ['apple', 'google']) {
        const responses = Object.keys(doc.paths[`/v1/auth/${provider}`].post.responses);
        for (const status of ['200', '401', '501', '503']) assert.ok(responses.includes(status), `${provider}: ${status} not in ${responses.join(', ')}`);
      }
    });

    it('concurrent first sign-ins with one identity (a client retrying) end in one account', async () => {
      const sub = newSubject('race');
      const email = uniqueEmail('race');
      const tokens = await Promise.all([1, 2, 3, 4].map(() => googleToken({ sub, email, email_verified: true })));
      const results = await Promise.all(tokens.map((idTokenValue) => signIn('google', { idToken: idTokenValue })));
      for (const r of results) assert.equal(r.statusCode, 200, r.body);
      assert.equal(new Set(results.map((r) => r.json().user.id)).size, 1);
      assert.equal(results[0]!.json().user.email, email);
    });
  });

  describe(`provider availability on ${engine.name}`, { skip: engine.skip }, () => {
    let down: TestApp;
    let bare: TestApp;
    before(async () => {
      down = await createTestApp(engine, {
        overrides: { appleJwksUrl: await deadUrl(), appleAudiences: [APPLE_AUD], googleJwksUrl: `${jwks.base}/flaky`, googleAudiences: [GOOGLE_AUD], googleIssuers: GOOGLE_ISSUERS },
      });
      // Audiences empty: configured nowhere, although the key URLs point at a working JWKS.
      bare = await createTestApp(engine, { overrides: { appleJwksUrl: `${jwks.base}/keys`, googleJwksUrl: `${jwks.base}/keys`, appleAudiences: [], googleAudiences: [] } });
    });
    after(async () => {
      jwks.flaky.mode = 'ok';
      await Promise.all([down.close(), bare.close()]);
    });

    const assertUnavailable = (res: { statusCode: number; headers: Record<string, unknown>; body: string; json(): { code: string; retryable: boolean } }) => {
      assert.equal(res.statusCode, 503, res.body);
      assert.equal(res.json().code, 'unavailable');
      assert.equal(res.json().retryable, true);
      assert.match(String(res.headers['retry-after']), /^\d+$/);
    };

    it('a provider without audiences answers 501 provider_not_configured and fetches nothing', async () => {
      const hits = jwks.hits.keys;
      for (const [provider, token] of [['apple', await appleToken()], ['google', await googleToken()]] as const) {
        const res = await bare.call('POST', `/v1/auth/${provider}`, { body: { idToken: token } });
        assert.equal(res.statusCode, 501, res.body);
        assert.equal(res.json().code, 'provider_not_configured');
      }
      assert.equal(jwks.hits.keys, hits);
    });

    it('an unreachable JWKS is a fast 503 unavailable, not a 401 and not a hang', async () => {
      const started = Date.now();
      const res = await down.call('POST', '/v1/auth/apple', { body: { idToken: await appleToken() } });
      assertUnavailable(res);
      assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
    });

    it('a JWKS that never answers is a 503 within the fetch deadline, for every waiting request; then it recovers', async () => {
      jwks.flaky.mode = 'hang';
      const hits = jwks.hits.flaky;
      const started = Date.now();
      const results = await Promise.all([1, 2, 3, 4, 5].map(async () => down.call('POST', '/v1/auth/google', { body: { idToken: await googleToken() } })));
      const took = Date.now() - started;
      for (const r of results) assertUnavailable(r);
      assert.ok(took < 5000, `took ${took} ms`);
      // Waiting requests share one fetch rather than stampeding the provider.
      assert.equal(jwks.hits.flaky - hits, 1);

      jwks.flaky.mode = 'error';
      const t0 = Date.now();
      assertUnavailable(await down.call('POST', '/v1/auth/google', { body: { idToken: await googleToken() } }));
      assert.ok(Date.now() - t0 < 2000);

      // Repeated failures opened the circuit: calls fail at once without touching the provider,
      // and the first trial call after the half-open delay (5 s) closes it again.
      jwks.flaky.mode = 'ok';
      const before = jwks.hits.flaky;
      const t1 = Date.now();
      assertUnavailable(await down.call('POST', '/v1/auth/google', { body: { idToken: await googleToken() } }));
      assert.ok(Date.now() - t1 < 100, 'an open circuit answers at once');
      assert.equal(jwks.hits.flaky, before, 'an open circuit does not call the provider');
      let ok;
      const recoverBy = Date.now() + 8000;
      do {
        await new Promise((r) => setTimeout(r, 250));
        ok = await down.call('POST', '/v1/auth/google', { body: { idToken: await googleToken() } });
      } while (ok.statusCode !== 200 && Date.now() < recoverBy);
      assert.equal(ok.statusCode, 200, ok.body);
    });
  });
}
