import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, signUp, uniqueEmail, type TestApp } from '../support/app.js';
import { engines } from '../support/engines.js';

for (const engine of await engines()) {
  describe(`accounts on ${engine.name}`, { skip: engine.skip }, () => {
    let t: TestApp;
    before(async () => {
      t = await createTestApp(engine);
    });
    after(() => t.close());

    it('signs up, signs in and answers /me', async () => {
      const email = uniqueEmail();
      const up = await t.call('POST', '/v1/auth/signup', { body: { email, password: 'correct horse 1' } });
      assert.equal(up.statusCode, 201);
      const body = up.json();
      assert.deepEqual(Object.keys(body).sort(), ['accessToken', 'expiresIn', 'refreshToken', 'user']);
      assert.equal(body.user.email, email);
      assert.equal(body.expiresIn, 900);

      const dup = await t.call('POST', '/v1/auth/signup', { body: { email: email.toUpperCase(), password: 'correct horse 1' } });
      assert.equal(dup.statusCode, 409);
      assert.equal(dup.json().code, 'email_taken');

      const wrong = await t.call('POST', '/v1/auth/signin', { body: { email, password: 'wrong password' } });
      assert.equal(wrong.statusCode, 401);
      assert.equal(wrong.json().code, 'invalid_credentials');
      const nobody = await t.call('POST', '/v1/auth/signin', { body: { email: uniqueEmail('nobody'), password: 'whatever123' } });
      assert.equal(nobody.json().code, 'invalid_credentials');

      const inRes = await t.call('POST', '/v1/auth/signin', { body: { email, password: 'correct horse 1', deviceName: 'Pixel' } });
      assert.equal(inRes.statusCode, 200);
      const me = await t.call('GET', '/v1/auth/me', { token: inRes.json().accessToken });
      assert.equal(me.statusCode, 200);
      assert.equal(me.json().id, body.user.id);
      assert.deepEqual(me.json().providers, ['password']);
    });

    it('rejects weak passwords and bad emails without creating anything', async () => {
      const email = uniqueEmail();
      const weak = await t.call('POST', '/v1/auth/signup', { body: { email, password: 'short' } });
      assert.equal(weak.statusCode, 422);
      assert.equal(weak.json().code, 'weak_password');
      const badEmail = await t.call('POST', '/v1/auth/signup', { body: { email: 'not-an-email', password: 'correct horse 1' } });
      assert.equal(badEmail.statusCode, 400);
      const signin = await t.call('POST', '/v1/auth/signin', { body: { email, password: 'short' } });
      assert.equal(signin.statusCode, 401);
    });

    it('rotates refresh tokens and revokes the session when a used one comes back', async () => {
      const s = await signUp(t);
      const r1 = await t.call('POST', '/v1/auth/refresh', { body: { refreshToken: s.refreshToken } });
      assert.equal(r1.statusCode, 200);
      const next = r1.json().refreshToken as string;
      assert.notEqual(next, s.refreshToken);
      assert.equal((await t.call('GET', '/v1/auth/me', { token: r1.json().accessToken })).statusCode, 200);

      // The old token again: a theft signal. The whole session family dies, including `next`.
      const reuse = await t.call('POST', '/v1/auth/refresh', { body: { refreshToken: s.refreshToken } });
      assert.equal(reuse.statusCode, 401);
      assert.equal(reuse.json().code, 'refresh_token_reused');
      const after = await t.call('POST', '/v1/auth/refresh', { body: { refreshToken: next } });
      assert.equal(after.statusCode, 401);
      assert.equal(after.json().code, 'invalid_refresh_token');
      const sessions = await t.call('GET', '/v1/auth/sessions', { token: s.accessToken });
      assert.equal(sessions.json().items.length, 0);
    });

    it('resumes a session after hours with only the refresh token (many rotations)', async () => {
      const s = await signUp(t);
      let token = s.refreshToken;
      for (let i = 0; i < 5; i++) {
        const r = await t.call('POST', '/v1/auth/refresh', { body: { refreshToken: token } });
        assert.equal(r.statusCode, 200, r.body);
        token = r.json().refreshToken;
      }
      const unknown = await t.call('POST', '/v1/auth/refresh', { body: { refreshToken: 'rt_never-issued' } });
      assert.equal(unknown.json().code, 'invalid_refresh_token');
    });

    it('an app reopening after hours refreshes even though it still sends its expired access token', async () => {
      const s = await signUp(t);
      const stale = `${s.accessToken.slice(0, -4)}AAAA`; // any token that no longer verifies
      assert.equal((await t.call('GET', '/v1/auth/me', { token: stale })).statusCode, 401);
      const r = await t.call('POST', '/v1/auth/refresh', { token: stale, body: { refreshToken: s.refreshToken } });
      assert.equal(r.statusCode, 200, r.body);
      const signin = await t.call('POST', '/v1/auth/signin', { token: stale, body: { email: s.email, password: s.password } });
      assert.equal(signin.statusCode, 200, signin.body);
    });

    it('concurrent refreshes with one token: exactly one succeeds', async () => {
      const s = await signUp(t);
      const results = await Promise.all([1, 2, 3].map(() => t.call('POST', '/v1/auth/refresh', { body: { refreshToken: s.refreshToken } })));
      assert.equal(results.filter((r) => r.statusCode === 200).length, 1);
    });

    it('lists sessions, revokes one, signs out others, signs out', async () => {
      const a = await signUp(t);
      const b = await t.call('POST', '/v1/auth/signin', { body: { email: a.email, password: a.password, deviceName: 'iPad' } });
      const c = await t.call('POST', '/v1/auth/signin', { body: { email: a.email, password: a.password, deviceName: 'Mac' } });
      const list = await t.call('GET', '/v1/auth/sessions', { token: a.accessToken });
      assert.equal(list.json().items.length, 3);
      assert.equal(list.json().items.filter((x: { current: boolean }) => x.current).length, 1);

      const ipad = list.json().items.find((x: { deviceName: string }) => x.deviceName === 'iPad');
      assert.equal((await t.call('DELETE', `/v1/auth/sessions/${ipad.id}`, { token: a.accessToken })).statusCode, 204);
      assert.equal((await t.call('POST', '/v1/auth/refresh', { body: { refreshToken: b.json().refreshToken } })).statusCode, 401);
      assert.equal((await t.call('DELETE', `/v1/auth/sessions/${ipad.id}`, { token: a.accessToken })).statusCode, 404);

      // Another user's session id is not yours to revoke.
      const other = await signUp(t);
      const otherSessions = await t.call('GET', '/v1/auth/sessions', { token: other.accessToken });
      assert.equal((await t.call('DELETE', `/v1/auth/sessions/${otherSessions.json().items[0].id}`, { token: a.accessToken })).statusCode, 404);

      const others = await t.call('DELETE', '/v1/auth/sessions', { token: a.accessToken });
      assert.deepEqual(others.json(), { revoked: 1 });
      assert.equal((await t.call('POST', '/v1/auth/refresh', { body: { refreshToken: c.json().refreshToken } })).statusCode, 401);

      assert.equal((await t.call('POST', '/v1/auth/signout', { token: a.accessToken })).statusCode, 204);
      assert.equal((await t.call('POST', '/v1/auth/refresh', { body: { refreshToken: a.refreshToken } })).statusCode, 401);
    });

    it('a password change revokes the other sessions and keeps this one', async () => {
      const a = await signUp(t);
      const other = await t.call('POST', '/v1/auth/signin', { body: { email: a.email, password: a.password } });
      const bad = await t.call('POST', '/v1/auth/password', { token: a.accessToken, body: { currentPassword: 'nope nope', newPassword: 'a brand new pw 2' } });
      assert.equal(bad.statusCode, 401);
      const ok = await t.call('POST', '/v1/auth/password', { token: a.accessToken, body: { currentPassword: a.password, newPassword: 'a brand new pw 2' } });
      assert.equal(ok.statusCode, 204);
      assert.equal((await t.call('POST', '/v1/auth/refresh', { body: { refreshToken: other.json().refreshToken } })).statusCode, 401);
      assert.equal((await t.call('POST', '/v1/auth/refresh', { body: { refreshToken: a.refreshToken } })).statusCode, 200);
      assert.equal((await t.call('POST', '/v1/auth/signin', { body: { email: a.email, password: a.password } })).statusCode, 401);
      assert.equal((await t.call('POST', '/v1/auth/signin', { body: { email: a.email, password: 'a brand new pw 2' } })).statusCode, 200);
    });

    it('an anonymous account upgrades to email and keeps its id and documents', async () => {
      const anon = await t.call('POST', '/v1/auth/anonymous', { body: { deviceName: 'first launch' } });
      assert.equal(anon.statusCode, 201);
      const { user, accessToken } = anon.json();
      assert.equal(user.isAnonymous, true);
      assert.equal(user.email, null);
      const note = await t.call('POST', '/v1/collections/notes/documents', { token: accessToken, body: { text: 'made offline' } });
      assert.equal(note.statusCode, 201);

      const email = uniqueEmail('upgraded');
      const up = await t.call('POST', '/v1/auth/signup', { token: accessToken, body: { email, password: 'correct horse 1' } });
      assert.equal(up.statusCode, 201);
      assert.equal(up.json().user.id, user.id);
      assert.equal(up.json().user.isAnonymous, false);
      const again = await t.call('POST', '/v1/auth/signup', { token: up.json().accessToken, body: { email: uniqueEmail(), password: 'correct horse 1' } });
      assert.equal(again.json().code, 'already_upgraded');

      const signedIn = await t.call('POST', '/v1/auth/signin', { body: { email, password: 'correct horse 1' } });
      const notes = await t.call('GET', '/v1/collections/notes/documents', { token: signedIn.json().accessToken });
      assert.equal(notes.json().items.length, 1);
      assert.equal(notes.json().items[0].data.text, 'made offline');
    });

    it('publishes the signing keys with their kid', async () => {
      const res = await t.call('GET', '/.well-known/jwks.json');
      assert.equal(res.statusCode, 200);
      const { keys } = res.json();
      assert.ok(keys.length >= 1);
      assert.ok(keys.every((k: { kid?: string; d?: string; alg: string }) => k.kid && !k.d && k.alg === 'ES256'));
    });

    it('rotating the key signs nobody out, and new tokens use the new kid', async () => {
      const s = await signUp(t);
      const oldKid = JSON.parse(Buffer.from(s.accessToken.split('.')[0]!, 'base64url').toString()).kid;
      const newKid = await t.services.keys.rotate();
      assert.notEqual(newKid, oldKid);
      assert.equal((await t.call('GET', '/v1/auth/me', { token: s.accessToken })).statusCode, 200);
      const jwks = (await t.call('GET', '/.well-known/jwks.json')).json();
      assert.ok(jwks.keys.some((k: { kid: string }) => k.kid === oldKid));
      assert.ok(jwks.keys.some((k: { kid: string }) => k.kid === newKid));
      const r = await t.call('POST', '/v1/auth/refresh', { body: { refreshToken: s.refreshToken } });
      const kid = JSON.parse(Buffer.from(r.json().accessToken.split('.')[0], 'base64url').toString()).kid;
      assert.equal(kid, newKid);
    });
  });
}
