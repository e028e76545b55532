import assert from 'node:assert/strict';
import { createECDH, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { createTestApp, signUp, type TestApp } from '../support/app.js';
import { engines } from '../support/engines.js';

// Device registration for push notifications: POST /v1/devices, GET, DELETE /v1/devices/{id}.

const apnsToken = () => randomBytes(32).toString('hex');
const fcmToken = () => `${randomBytes(8).toString('base64url')}:APA91b${randomBytes(100).toString('base64url')}`;
const webPushSubscription = (host = 'push.example.com') => {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  return { endpoint: `https://${host}/push/${randomBytes(12).toString('base64url')}`, keys: { p256dh: ecdh.getPublicKey().toString('base64url'), auth: randomBytes(16).toString('base64url') } };
};

for (const engine of await engines()) {
  describe(`push devices on ${engine.name}`, { skip: engine.skip }, () => {
    let t: TestApp;
    const count = async () => (await t.database.db.query<{ n: number }>('SELECT count(*)::int AS n FROM devices')).rows[0]!.n;
    before(async () => {
      t = await createTestApp(engine, { overrides: { pushTopics: ['news', 'offers'], webPushAllowedHosts: ['push.example.com', '*.push.example.org'] } });
    });
    after(() => t.close());

    it('registers an APNs device; registering the same token again is the same device, updated', async () => {
      const a = await signUp(t);
      const token = apnsToken();
      const first = await t.call('POST', '/v1/devices', { token: a.accessToken, body: { platform: 'apns', token, appVersion: '1.0.0', locale: 'en-GB', topics: ['news'] } });
      assert.equal(first.statusCode, 201, first.body);
      const d = first.json();
      assert.deepEqual([d.platform, d.appVersion, d.locale, d.topics], ['apns', '1.0.0', 'en-GB', ['news']]);
      // Uppercase hex is the same token.
      const again = await t.call('POST', '/v1/devices', { token: a.accessToken, body: { platform: 'apns', token: token.toUpperCase(), appVersion: '1.1.0', locale: 'en-GB', topics: ['news', 'offers'] } });
      assert.equal(again.statusCode, 200, again.body);
      assert.equal(again.json().id, d.id);
      assert.deepEqual([again.json().appVersion, again.json().topics], ['1.1.0', ['news', 'offers']]);
      const listed = await t.call('GET', '/v1/devices', { token: a.accessToken });
      assert.deepEqual(listed.json().devices.map((x: { id: string }) => x.id), [d.id]);
    });

    it('a user has many devices, on every platform; a token registered by someone else moves to them', async () => {
      const a = await signUp(t);
      const b = await signUp(t);
      const shared = fcmToken();
      for (const body of [{ platform: 'apns', token: apnsToken() }, { platform: 'fcm', token: shared }, { platform: 'webpush', subscription: webPushSubscription('eu.push.example.org') }]) {
        const res = await t.call('POST', '/v1/devices', { token: a.accessToken, body });
        assert.equal(res.statusCode, 201, res.body);
      }
      assert.equal((await t.call('GET', '/v1/devices', { token: a.accessToken })).json().devices.length, 3);
      // The phone is signed in as b now: the FCM token is b's, and no longer a's.
      const moved = await t.call('POST', '/v1/devices', { token: b.accessToken, body: { platform: 'fcm', token: shared } });
      assert.equal(moved.statusCode, 200);
      assert.equal((await t.call('GET', '/v1/devices', { token: a.accessToken })).json().devices.length, 2);
      assert.deepEqual((await t.call('GET', '/v1/devices', { token: b.accessToken })).json().devices.map((x: { platform: string }) => x.platform), ['fcm']);
    });

    it("an anonymous user's devices follow it when it signs up", async () => {
      const anon = (await t.call('POST', '/v1/auth/anonymous', { body: {} })).json();
      const reg = await t.call('POST', '/v1/devices', { token: anon.accessToken, body: { platform: 'apns', token: apnsToken() } });
      assert.equal(reg.statusCode, 201);
      const upgraded = await t.call('POST', '/v1/auth/signup', { token: anon.accessToken, body: { email: `up.${Date.now()}@example.com`, password: 'correct horse 1' } });
      assert.equal(upgraded.statusCode, 201, upgraded.body);
      const devices = (await t.call('GET', '/v1/devices', { token: upgraded.json().accessToken })).json().devices;
      assert.deepEqual(devices.map((x: { id: string }) => x.id), [reg.json().id]);
    });

    it('unregisters a device; only its owner can', async () => {
      const a = await signUp(t);
      const b = await signUp(t);
      const id = (await t.call('POST', '/v1/devices', { token: a.accessToken, body: { platform: 'apns', token: apnsToken() } })).json().id;
      const notYours = await t.call('DELETE', `/v1/devices/${id}`, { token: b.accessToken });
      assert.deepEqual([notYours.statusCode, notYours.json().code], [404, 'device_not_found']);
      assert.equal((await t.call('DELETE', `/v1/devices/${id}`, { token: a.accessToken })).statusCode, 204);
      assert.equal((await t.call('DELETE', `/v1/devices/${id}`, { token: a.accessToken })).statusCode, 404);
      assert.equal((await t.call('DELETE', '/v1/devices/not-a-uuid', { token: a.accessToken })).statusCode, 400);
    });

    it('refuses malformed tokens and subscriptions per platform, unknown topics, someone else as the owner — and stores nothing', async () => {
      const a = await signUp(t);
      const sub = webPushSubscription();
      const cases: [unknown, number, string][] = [
        [{ platform: 'apns', token: 'abc' }, 400, 'invalid_device'],
        [{ platform: 'apns', token: 'zz'.repeat(32) }, 400, 'invalid_device'],
        [{ platform: 'apns' }, 400, 'invalid_device'],
        [{ platform: 'apns', subscription: sub }, 400, 'invalid_device'],
        [{ platform: 'fcm', token: 'short' }, 400, 'invalid_device'],
        [{ platform: 'fcm', token: `${fcmToken()} ` }, 400, 'invalid_device'],
        [{ platform: 'webpush', token: fcmToken() }, 400, 'invalid_device'],
        [{ platform: 'webpush', subscription: { ...sub, endpoint: 'http://push.example.com/x' } }, 400, 'invalid_device'],
        [{ platform: 'webpush', subscription: { ...sub, endpoint: 'https://169.254.169.254/latest/meta-data' } }, 400, 'invalid_device'],
        [{ platform: 'webpush', subscription: { ...sub, endpoint: 'https://evilpush.example.org/x' } }, 400, 'invalid_device'],
        [{ platform: 'webpush', subscription: { ...sub, keys: { ...sub.keys, p256dh: 'AAAA' } } }, 400, 'invalid_device'],
        [{ platform: 'webpush', subscription: { ...sub, keys: { ...sub.keys, auth: randomBytes(8).toString('base64url') } } }, 400, 'invalid_device'],
        [{ platform: 'apns', token: apnsToken(), topics: ['news', 'gossip'] }, 400, 'unknown_topic'],
        [{ platform: 'apns', token: apnsToken(), locale: 'not a locale' }, 400, 'invalid_device'],
        [{ platform: 'apns', token: apnsToken(), userId: '00000000-0000-4000-8000-000000000000' }, 400, 'validation_failed'],
        [{ platform: 'sms', token: '123' }, 400, 'validation_failed'],
        [{ platform: 'apns', token: apnsToken(), topics: Array.from({ length: 51 }, () => 'news') }, 400, 'validation_failed'],
      ];
      const before = await count();
      for (const [body, status, code] of cases) {
        const res = await t.call('POST', '/v1/devices', { token: a.accessToken, body });
        assert.equal(res.statusCode, status, `${JSON.stringify(body).slice(0, 120)} → ${res.body}`);
        assert.equal(res.json().code, code, JSON.stringify(body).slice(0, 120));
        assert.match(res.headers['content-type'] as string, /application\/problem\+json/);
      }
      assert.equal((await t.call('POST', '/v1/devices', { body: { platform: 'apns', token: apnsToken() } })).statusCode, 401);
      assert.equal(await count(), before);
    });

    it('never answers 5xx to arbitrary registration bodies, and stores nothing it refuses (property)', async () => {
      const a = await signUp(t);
      const str = fc.string({ maxLength: 300 });
      const body = fc.record(
        {
          platform: fc.oneof(fc.constantFrom('apns', 'fcm', 'webpush'), str),
          token: fc.oneof(str, fc.constant(apnsToken()), fc.integer(), fc.constant(null)),
          subscription: fc.oneof(fc.record({ endpoint: str, keys: fc.record({ p256dh: str, auth: str }) }), fc.anything()),
          appVersion: fc.oneof(str, fc.integer()),
          locale: str,
          topics: fc.oneof(fc.array(fc.constantFrom('news', 'offers', 'x'), { maxLength: 5 }), fc.anything()),
        },
        { requiredKeys: [] },
      );
      await fc.assert(
        fc.asyncProperty(body, async (b) => {
          const n = await count();
          const res = await t.call('POST', '/v1/devices', { token: a.accessToken, body: b });
          assert.ok(res.statusCode < 500, `${res.statusCode} ${res.body}`);
          if (res.statusCode >= 400) {
            assert.match(res.headers['content-type'] as string, /application\/problem\+json/);
            assert.equal(await count(), n);
          }
        }),
        { numRuns: Number(process.env.FC_RUNS ?? 150), seed: Number(process.env.FC_SEED ?? 20261123) },
      );
    });
  });
}
