import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, it } from 'node:test';
import webpush from 'web-push';
import { createApnsProvider, type ApnsOptions } from '../../src/push/providers/apns.js';
import { createFcmProvider, type FcmOptions } from '../../src/push/providers/fcm.js';
import type { PushMessage, PushProvider, SendResult } from '../../src/push/providers/port.js';
import { createWebPushProvider, topicOf, WEB_PUSH_MAX_PLAINTEXT, type WebPushOptions } from '../../src/push/providers/webpush.js';
import { startMockApns, type MockApns, type MockApnsOptions } from '../support/mock-push/apns.js';
import { createServiceAccount, startMockFcm, type MockFcm, type MockFcmOptions } from '../support/mock-push/fcm.js';
import { startMockWebPush, type MockWebPush } from '../support/mock-push/webpush.js';

// Each provider against its local mock, which speaks the real protocol over TLS and checks what it
// receives (signatures, headers, payloads), so these fail when the wire format or the auth is wrong.

const hex = (i: number) => i.toString(16).padStart(64, '0');
const TEAM = { teamId: 'TEAM123456', keyId: 'KEY1234567', bundleId: 'dev.levee.app' };
const teamKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const teamKeyPem = teamKey.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
const alert: PushMessage = { title: 'Hello', body: 'World', priority: 'high' };

async function withApns(fn: (p: PushProvider, mock: MockApns) => Promise<void>, o: { provider?: Partial<ApnsOptions>; mock?: Partial<MockApnsOptions> } = {}) {
  const mock = await startMockApns({ ...TEAM, publicKey: teamKey.publicKey, ...o.mock });
  const provider = createApnsProvider({ ...TEAM, privateKey: teamKeyPem, baseUrl: mock.url, ca: mock.ca, ...o.provider });
  try {
    await fn(provider, mock);
  } finally {
    await provider.close();
    await mock.close();
  }
}

async function withFcm(fn: (p: PushProvider, mock: MockFcm) => Promise<void>, o: { provider?: Partial<FcmOptions>; mock?: MockFcmOptions } = {}) {
  const mock = await startMockFcm(o.mock);
  const provider = createFcmProvider({ serviceAccount: mock.serviceAccount, baseUrl: mock.url, ca: mock.ca, ...o.provider });
  try {
    await fn(provider, mock);
  } finally {
    await provider.close();
    await mock.close();
  }
}

const vapidKeys = webpush.generateVAPIDKeys();
const VAPID = { subject: 'mailto:ops@levee.dev', ...vapidKeys };

async function withWebPush(fn: (p: PushProvider, mock: MockWebPush) => Promise<void>, o: { provider?: Partial<WebPushOptions> } = {}) {
  const mock = await startMockWebPush({ vapidPublicKey: vapidKeys.publicKey });
  const provider = createWebPushProvider({ vapid: VAPID, ca: mock.ca, ...o.provider });
  try {
    await fn(provider, mock);
  } finally {
    await provider.close();
    await mock.close();
  }
}

/** A send against a hanging provider ends by the timeout and by the signal, promptly, as `retry`. */
async function assertCutOff(send: (signal?: AbortSignal) => Promise<SendResult>) {
  let t = Date.now();
  const timedOut = await send();
  assert.equal(timedOut.outcome, 'retry');
  assert.match((timedOut as { reason: string }).reason, /within 300 ms/);
  assert.ok(Date.now() - t < 2_000, `cut off after ${Date.now() - t} ms`);
  t = Date.now();
  const aborted = await send(AbortSignal.timeout(100));
  assert.equal(aborted.outcome, 'retry');
  assert.match((aborted as { reason: string }).reason, /abort/);
  assert.ok(Date.now() - t < 1_500, `aborted after ${Date.now() - t} ms`);
}

describe('APNs provider', () => {
  it('delivers an alert with the APNs headers and payload, reusing one provider token', async () => {
    await withApns(async (apns, mock) => {
      const expiresAt = new Date(Date.now() + 3_600_000);
      const r = await apns.send({ platform: 'apns', token: hex(1) }, { ...alert, badge: 3, sound: 'ping.caf', data: { chat: '42' }, collapseId: 'chat-42', expiresAt });
      assert.equal(r.outcome, 'sent');
      assert.match((r as { id: string }).id, /^[0-9a-f-]{36}$/);
      const d = mock.deliveries.get(hex(1))!;
      assert.equal(d.count, 1);
      assert.equal(d.last.headers['apns-topic'], TEAM.bundleId);
      assert.equal(d.last.headers['apns-push-type'], 'alert');
      assert.equal(d.last.headers['apns-priority'], '10');
      assert.equal(d.last.headers['apns-expiration'], String(Math.floor(expiresAt.getTime() / 1000)));
      assert.equal(d.last.headers['apns-collapse-id'], 'chat-42');
      assert.deepEqual(d.last.payload, { chat: '42', aps: { alert: { title: 'Hello', body: 'World' }, badge: 3, sound: 'ping.caf' } });

      // Data only: a background push, which must go at priority 5 whatever was asked.
      assert.equal((await apns.send({ platform: 'apns', token: hex(2) }, { priority: 'high', data: { sync: '1' } })).outcome, 'sent');
      const bg = mock.deliveries.get(hex(2))!.last;
      assert.equal(bg.headers['apns-push-type'], 'background');
      assert.equal(bg.headers['apns-priority'], '5');
      assert.equal(bg.headers['apns-expiration'], '0');
      assert.deepEqual(bg.payload, { sync: '1', aps: { 'content-available': 1 } });

      for (let i = 0; i < 5; i++) assert.equal((await apns.send({ platform: 'apns', token: hex(3) }, alert)).outcome, 'sent');
      assert.equal(mock.jwtsSeen.size, 1, 'one JWT for every send');
    });
  });

  it('renews its token past 50 minutes, not before', async () => {
    let now = Date.now();
    await withApns(
      async (apns, mock) => {
        await apns.send({ platform: 'apns', token: hex(1) }, alert);
        now += 49 * 60_000;
        await apns.send({ platform: 'apns', token: hex(1) }, alert);
        assert.equal(mock.jwtsSeen.size, 1);
        now += 2 * 60_000;
        assert.equal((await apns.send({ platform: 'apns', token: hex(1) }, alert)).outcome, 'sent');
        assert.equal(mock.jwtsSeen.size, 2);
      },
      { provider: { now: () => now } },
    );
  });

  it('renews an expired provider token once and sends again; a second refusal is a retry', async () => {
    await withApns(async (apns, mock) => {
      await apns.send({ platform: 'apns', token: hex(1) }, alert);
      mock.expireTokens(1);
      // Concurrent sends all hit the expired token; it is renewed once, and each is delivered once.
      const results = await Promise.all([2, 3, 4].map((i) => apns.send({ platform: 'apns', token: hex(i) }, alert)));
      assert.deepEqual(results.map((r) => r.outcome), ['sent', 'sent', 'sent']);
      assert.equal(mock.jwtsSeen.size, 2);
      assert.deepEqual([2, 3, 4].map((i) => mock.deliveries.get(hex(i))?.count), [1, 1, 1]);

      mock.expireTokens(2);
      const r = await apns.send({ platform: 'apns', token: hex(5) }, alert);
      assert.equal(r.outcome, 'retry');
      assert.match((r as { reason: string }).reason, /ExpiredProviderToken/);
      assert.equal(mock.deliveries.has(hex(5)), false);
    });
  });

  it('maps APNs answers: gone and bad tokens, throttling, outages, bad requests, a wrong key', async () => {
    await withApns(async (apns, mock) => {
      mock.unregistered.set(hex(1), Date.now());
      mock.badTokens.add(hex(2));
      assert.deepEqual(await apns.send({ platform: 'apns', token: hex(1) }, alert), { outcome: 'invalid_token', reason: 'Unregistered' });
      assert.deepEqual(await apns.send({ platform: 'apns', token: hex(2) }, alert), { outcome: 'invalid_token', reason: 'BadDeviceToken' });
      const before = mock.requests;
      assert.equal((await apns.send({ platform: 'apns', token: 'not/a/token' }, alert)).outcome, 'invalid_token');
      assert.equal(mock.requests, before, 'a malformed token never reaches APNs');

      mock.failWith = { status: 429, reason: 'TooManyRequests', retryAfter: '7' };
      assert.deepEqual(await apns.send({ platform: 'apns', token: hex(3) }, alert), { outcome: 'retry', reason: 'TooManyRequests', retryAfterMs: 7000 });
      mock.failWith = { status: 503, reason: 'ServiceUnavailable' };
      assert.deepEqual(await apns.send({ platform: 'apns', token: hex(3) }, alert), { outcome: 'retry', reason: 'ServiceUnavailable' });
      mock.failWith = undefined;
    });
    // The wrong topic (another app's bundle id) is a 400 that no retry fixes.
    await withApns(async (apns) => {
      assert.deepEqual(await apns.send({ platform: 'apns', token: hex(1) }, alert), { outcome: 'rejected', reason: 'TopicDisallowed' });
    }, { provider: { bundleId: 'com.other.app' } });
    // A key the team does not have: InvalidProviderToken, a configuration problem.
    const otherKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
    await withApns(async (apns) => {
      assert.deepEqual(await apns.send({ platform: 'apns', token: hex(1) }, alert), { outcome: 'rejected', reason: 'InvalidProviderToken' });
    }, { provider: { privateKey: otherKey } });
  });

  it('rejects an oversize payload or collapse id before sending anything', async () => {
    await withApns(async (apns, mock) => {
      const big = await apns.send({ platform: 'apns', token: hex(1) }, { ...alert, data: { blob: 'x'.repeat(4096) } });
      assert.equal(big.outcome, 'rejected');
      assert.match((big as { reason: string }).reason, /PayloadTooLarge/);
      assert.equal((await apns.send({ platform: 'apns', token: hex(1) }, { ...alert, collapseId: 'c'.repeat(65) })).outcome, 'rejected');
      assert.equal(mock.requests, 0);
      // Just under the limit goes through, and the mock (which enforces 4096 bytes) accepts it.
      const fits = { ...alert, data: { blob: 'x'.repeat(4096 - 80) } };
      assert.ok(Buffer.byteLength(JSON.stringify({ ...fits.data, aps: { alert: { title: 'Hello', body: 'World' } } })) <= 4096);
      assert.equal((await apns.send({ platform: 'apns', token: hex(1) }, fits)).outcome, 'sent');
    });
  });

  it('cuts off a hanging APNs by the request timeout and by the caller signal, then works again', async () => {
    await withApns(
      async (apns, mock) => {
        await apns.send({ platform: 'apns', token: hex(1) }, alert);
        mock.hang = true;
        await assertCutOff((signal) => apns.send({ platform: 'apns', token: hex(2) }, alert, signal));
        mock.hang = false;
        assert.equal((await apns.send({ platform: 'apns', token: hex(3) }, alert)).outcome, 'sent');
      },
      { provider: { requestTimeoutMs: 300 } },
    );
  });

  it('trusts the mock only when given its CA', async () => {
    await withApns(
      async (apns, mock) => {
        const r = await apns.send({ platform: 'apns', token: hex(1) }, alert);
        assert.equal(r.outcome, 'retry');
        assert.match((r as { reason: string }).reason, /certificate/i);
        assert.equal(mock.requests, 0);
      },
      { provider: { ca: undefined } },
    );
  });

  it('spreads concurrent sends over several connections within the server stream limit, and reconnects', async () => {
    await withApns(
      async (apns, mock) => {
        const results = await Promise.all(Array.from({ length: 200 }, (_, i) => apns.send({ platform: 'apns', token: hex(i) }, alert)));
        assert.equal(results.filter((r) => r.outcome === 'sent').length, 200);
        assert.ok(mock.connections >= 2, `${mock.connections} connections`);
        assert.ok(mock.peakStreams > 2 && mock.peakStreams <= 2 * 10, `peak of ${mock.peakStreams} concurrent streams`);
        assert.equal(mock.delivered, 200);
        assert.ok([...mock.deliveries.values()].every((d) => d.count === 1), 'nothing delivered twice');

        // The stream limit can rise (APNs raises it after the first authenticated request).
        mock.setMaxConcurrentStreams(50);
        mock.peakStreams = 0;
        await new Promise((r) => setTimeout(r, 50));
        await Promise.all(Array.from({ length: 200 }, (_, i) => apns.send({ platform: 'apns', token: hex(1000 + i) }, alert)));
        assert.ok(mock.peakStreams > 20 && mock.peakStreams <= 100, `peak of ${mock.peakStreams} after raising the limit`);

        mock.dropConnections();
        await new Promise((r) => setTimeout(r, 50));
        assert.equal((await apns.send({ platform: 'apns', token: hex(5000) }, alert)).outcome, 'sent');
      },
      { mock: { maxConcurrentStreams: 10 } },
    );
  });

  it('bounds the sends waiting for a stream', async () => {
    await withApns(
      async (apns, mock) => {
        await apns.send({ platform: 'apns', token: hex(0) }, alert);
        mock.hang = true;
        const ac = new AbortController();
        const sends = Array.from({ length: 10 }, (_, i) => apns.send({ platform: 'apns', token: hex(i + 1) }, alert, ac.signal));
        const settled = await Promise.race([Promise.all(sends.slice(7)), new Promise((r) => setTimeout(() => r('pending'), 1_000))]);
        // 2 streams open, 5 waiting, the last 3 turned away at once.
        assert.notEqual(settled, 'pending');
        for (const r of settled as SendResult[]) assert.match((r as { reason: string }).reason, /already waiting/);
        ac.abort();
        assert.ok((await Promise.all(sends.slice(0, 7))).every((r) => r.outcome === 'retry'));
      },
      { provider: { connections: 1, maxPending: 5 }, mock: { maxConcurrentStreams: 2 } },
    );
  });
});

describe('FCM provider', () => {
  it('delivers an HTTP v1 message with one access token for many sends, fetched from token_uri', async () => {
    await withFcm(
      async (fcm, mock) => {
        assert.equal(mock.serviceAccount.token_uri, `${mock.url}/o/oauth2/custom-token`);
        // Concurrent first sends share one token fetch.
        const first = await Promise.all(Array.from({ length: 20 }, (_, i) => fcm.send({ platform: 'fcm', token: `tok-${i}` }, alert)));
        assert.ok(first.every((r) => r.outcome === 'sent'));
        const r = await fcm.send(
          { platform: 'fcm', token: 'tok-a' },
          { ...alert, data: { chat: '42' }, collapseId: 'chat-42', expiresAt: new Date(Date.now() + 60_000), badge: 2 },
        );
        assert.equal(r.outcome, 'sent');
        assert.match((r as { id: string }).id, /^projects\/levee-test\/messages\/[0-9a-f-]{36}$/);
        const m = mock.deliveries.get('tok-a')!.last as Record<string, Record<string, unknown>>;
        assert.deepEqual(m.notification, { title: 'Hello', body: 'World' });
        assert.deepEqual(m.data, { chat: '42' });
        assert.equal(m.android!.priority, 'HIGH');
        assert.equal(m.android!.collapse_key, 'chat-42');
        assert.match(String(m.android!.ttl), /^(59|60)s$/);
        assert.deepEqual((m.apns!.payload as { aps: unknown }).aps, { badge: 2 });

        const normal = await fcm.send({ platform: 'fcm', token: 'tok-b' }, { priority: 'normal', data: { sync: '1' } });
        assert.equal(normal.outcome, 'sent');
        const n = mock.deliveries.get('tok-b')!.last as Record<string, Record<string, unknown>>;
        assert.equal(n.android!.priority, 'NORMAL');
        assert.equal(n.notification, undefined);
        assert.equal(mock.tokenFetches, 1);
      },
      { mock: { tokenPath: '/o/oauth2/custom-token' } },
    );
  });

  it('renews the access token once on 401, and answers retry if FCM still refuses it', async () => {
    await withFcm(async (fcm, mock) => {
      await fcm.send({ platform: 'fcm', token: 't1' }, alert);
      mock.revokeAccessTokens();
      assert.equal((await fcm.send({ platform: 'fcm', token: 't2' }, alert)).outcome, 'sent');
      assert.equal(mock.tokenFetches, 2);
      assert.equal(mock.deliveries.get('t2')?.count, 1);

      mock.failWith = { status: 401, code: 'UNAUTHENTICATED' };
      const r = await fcm.send({ platform: 'fcm', token: 't3' }, alert);
      assert.equal(r.outcome, 'retry');
      assert.equal(mock.tokenFetches, 3);
    });
  });

  it('renews the access token shortly before it expires', async () => {
    let now = Date.now();
    await withFcm(
      async (fcm, mock) => {
        await fcm.send({ platform: 'fcm', token: 't1' }, alert);
        now += 54 * 60_000;
        await fcm.send({ platform: 'fcm', token: 't1' }, alert);
        assert.equal(mock.tokenFetches, 1);
        now += 2 * 60_000; // 56 min: within 5 min of the hour
        await fcm.send({ platform: 'fcm', token: 't1' }, alert);
        assert.equal(mock.tokenFetches, 2);
      },
      { provider: { now: () => now } },
    );
  });

  it('maps FCM errors: unregistered and invalid tokens, quota, outages, bad messages, a wrong sender', async () => {
    await withFcm(async (fcm, mock) => {
      mock.unregistered.add('gone');
      mock.invalidTokens.add('garbage');
      mock.otherSender.add('theirs');
      assert.equal((await fcm.send({ platform: 'fcm', token: 'gone' }, alert)).outcome, 'invalid_token');
      assert.equal((await fcm.send({ platform: 'fcm', token: 'garbage' }, alert)).outcome, 'invalid_token');
      assert.equal((await fcm.send({ platform: 'fcm', token: 'theirs' }, alert)).outcome, 'rejected');
      const reserved = await fcm.send({ platform: 'fcm', token: 'ok' }, { ...alert, data: { from: 'me' } });
      assert.equal(reserved.outcome, 'rejected');
      assert.match((reserved as { reason: string }).reason, /INVALID_ARGUMENT/);

      mock.failWith = { status: 429, code: 'QUOTA_EXCEEDED', retryAfter: '3' };
      assert.deepEqual(await fcm.send({ platform: 'fcm', token: 'ok' }, alert), { outcome: 'retry', reason: 'QUOTA_EXCEEDED: Try again later', retryAfterMs: 3000 });
      mock.failWith = { status: 503, code: 'UNAVAILABLE' };
      assert.equal((await fcm.send({ platform: 'fcm', token: 'ok' }, alert)).outcome, 'retry');
      mock.failWith = undefined;
      assert.equal(mock.delivered, 0);
    });
    // A key the token endpoint does not know: invalid_grant, which no retry fixes.
    const mock = await startMockFcm();
    const stranger = createServiceAccount({ projectId: mock.projectId, tokenUri: mock.tokenUrl }).account;
    const fcm = createFcmProvider({ serviceAccount: stranger, baseUrl: mock.url, ca: mock.ca });
    try {
      const r = await fcm.send({ platform: 'fcm', token: 'x' }, alert);
      assert.equal(r.outcome, 'rejected');
      assert.match((r as { reason: string }).reason, /invalid_grant/);
      assert.equal(mock.requests, 0);
    } finally {
      await fcm.close();
      await mock.close();
    }
  });

  it('rejects an oversize payload before fetching a token or sending', async () => {
    await withFcm(async (fcm, mock) => {
      assert.equal((await fcm.send({ platform: 'fcm', token: 't' }, { ...alert, data: { blob: 'x'.repeat(4096) } })).outcome, 'rejected');
      assert.equal(mock.requests, 0);
      assert.equal(mock.tokenFetches, 0);
    });
  });

  it('cuts off a hanging FCM by the request timeout and by the caller signal', async () => {
    await withFcm(
      async (fcm, mock) => {
        await fcm.send({ platform: 'fcm', token: 't' }, alert);
        mock.hang = true;
        await assertCutOff((signal) => fcm.send({ platform: 'fcm', token: 't' }, alert, signal));
        mock.hang = false;
        assert.equal((await fcm.send({ platform: 'fcm', token: 't' }, alert)).outcome, 'sent');
      },
      { provider: { requestTimeoutMs: 300 } },
    );
  });

  it('trusts the mock only when given its CA', async () => {
    await withFcm(
      async (fcm, mock) => {
        const r = await fcm.send({ platform: 'fcm', token: 't' }, alert);
        assert.equal(r.outcome, 'retry');
        assert.match((r as { reason: string }).reason, /certificate/i);
        assert.equal(mock.tokenFetches, 0);
      },
      { provider: { ca: undefined } },
    );
  });
});

describe('Web Push provider', () => {
  it('delivers an aes128gcm message that the browser can decrypt, with VAPID, TTL, Urgency and Topic', async () => {
    await withWebPush(async (wp, mock) => {
      const { id, subscription } = mock.subscribe();
      const message: PushMessage = { ...alert, data: { chat: '42' }, collapseId: 'chat-42', expiresAt: new Date(Date.now() + 60_000) };
      const r = await wp.send({ platform: 'webpush', subscription }, message);
      assert.equal(r.outcome, 'sent');
      assert.equal(JSON.parse(mock.decrypt(id)).data.chat, '42');
      assert.deepEqual(JSON.parse(mock.decrypt(id)), { title: 'Hello', body: 'World', data: { chat: '42' } });
      const h = mock.deliveries.get(id)!.last.headers;
      assert.equal(h['content-encoding'], 'aes128gcm');
      assert.match(String(h.ttl), /^(59|60)$/);
      assert.equal(h.urgency, 'high');
      assert.equal(h.topic, 'chat-42');

      const long = 'conversation/with spaces and more than thirty-two characters';
      await wp.send({ platform: 'webpush', subscription }, { priority: 'normal', collapseId: long });
      const h2 = mock.deliveries.get(id)!.last.headers;
      assert.equal(h2.topic, topicOf(long));
      assert.match(String(h2.topic), /^[A-Za-z0-9_-]{32}$/);
      assert.equal(h2.urgency, 'normal');
      assert.equal(h2.ttl, String(28 * 24 * 3600));
      assert.equal(h2.authorization, h.authorization, 'one VAPID JWT reused');
      assert.equal(mock.deliveries.get(id)!.count, 2);
    });
  });

  it('maps push service answers: gone subscriptions, throttling, outages, a refused VAPID key', async () => {
    await withWebPush(async (wp, mock) => {
      const a = mock.subscribe();
      const b = mock.subscribe();
      mock.notFound.add(a.id);
      mock.gone.add(b.id);
      assert.equal((await wp.send({ platform: 'webpush', subscription: a.subscription }, alert)).outcome, 'invalid_token');
      assert.equal((await wp.send({ platform: 'webpush', subscription: b.subscription }, alert)).outcome, 'invalid_token');
      const c = mock.subscribe();
      mock.failWith = { status: 429, retryAfter: '11' };
      const throttled = await wp.send({ platform: 'webpush', subscription: c.subscription }, alert);
      assert.equal(throttled.outcome, 'retry');
      assert.equal((throttled as { retryAfterMs?: number }).retryAfterMs, 11_000);
      mock.failWith = { status: 503 };
      assert.equal((await wp.send({ platform: 'webpush', subscription: c.subscription }, alert)).outcome, 'retry');
      mock.failWith = undefined;

      assert.equal((await wp.send({ platform: 'webpush', subscription: { ...c.subscription, endpoint: 'http://insecure.example/push/1' } }, alert)).outcome, 'invalid_token');
      assert.equal((await wp.send({ platform: 'webpush', subscription: { ...c.subscription, keys: { p256dh: 'AAAA', auth: 'AAAA' } } }, alert)).outcome, 'invalid_token');
    });
    // Another application server's key: 403, a configuration problem.
    const mock = await startMockWebPush({ vapidPublicKey: webpush.generateVAPIDKeys().publicKey });
    const wp = createWebPushProvider({ vapid: VAPID, ca: mock.ca });
    try {
      assert.equal((await wp.send({ platform: 'webpush', subscription: mock.subscribe().subscription }, alert)).outcome, 'rejected');
    } finally {
      await wp.close();
      await mock.close();
    }
  });

  it('rejects a payload that would not fit in 4096 encrypted bytes, and sends one that just fits', async () => {
    await withWebPush(async (wp, mock) => {
      const { id, subscription } = mock.subscribe();
      const overhead = Buffer.byteLength(JSON.stringify({ title: 'Hello', body: 'World', data: { blob: '' } }));
      const fits = { ...alert, data: { blob: 'x'.repeat(WEB_PUSH_MAX_PLAINTEXT - overhead) } };
      const over = { ...alert, data: { blob: 'x'.repeat(WEB_PUSH_MAX_PLAINTEXT - overhead + 1) } };
      assert.equal((await wp.send({ platform: 'webpush', subscription }, over)).outcome, 'rejected');
      assert.equal(mock.requests, 0);
      assert.equal((await wp.send({ platform: 'webpush', subscription }, fits)).outcome, 'sent');
      assert.equal(mock.deliveries.get(id)!.last.body.length, 4096);
      assert.equal(JSON.parse(mock.decrypt(id)).data.blob.length, fits.data.blob.length);
    });
  });

  it('cuts off a hanging push service by the request timeout and by the caller signal', async () => {
    await withWebPush(
      async (wp, mock) => {
        const { subscription } = mock.subscribe();
        mock.hang = true;
        await assertCutOff((signal) => wp.send({ platform: 'webpush', subscription }, alert, signal));
        mock.hang = false;
        assert.equal((await wp.send({ platform: 'webpush', subscription }, alert)).outcome, 'sent');
      },
      { provider: { requestTimeoutMs: 300 } },
    );
  });

  it('trusts the mock only when given its CA', async () => {
    await withWebPush(
      async (wp, mock) => {
        const r = await wp.send({ platform: 'webpush', subscription: mock.subscribe().subscription }, alert);
        assert.equal(r.outcome, 'retry');
        assert.match((r as { reason: string }).reason, /certificate/i);
        assert.equal(mock.requests, 0);
      },
      { provider: { ca: undefined } },
    );
  });
});
