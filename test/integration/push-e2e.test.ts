import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import webpush from 'web-push';
import { createPostgresDatabase, postgresReachable, CI } from '../support/engines.js';
import { mockApnsForLevee, type MockApns } from '../support/mock-push/apns.js';
import { startMockFcm, type MockFcm } from '../support/mock-push/fcm.js';
import { startMockWebPush, type MockWebPush } from '../support/mock-push/webpush.js';
import { http, killAll, startLevee, tempDir, type RunningLevee } from '../support/process.js';

// Push notifications end to end, as an operator runs them: a real Levee process (every role) on
// PostgreSQL, configured only through its settings to talk to local APNs, FCM and Web Push
// providers that speak the real protocols over TLS. Devices register over the API, the app's
// backend sends with the server key, and the mocks count what each device received.

const SERVER_KEY = randomBytes(24).toString('hex');
const BUNDLE_ID = 'dev.levee.e2e';
const pgSkip = (await postgresReachable()) ? false : CI ? assert.fail('PostgreSQL must be reachable in CI') : 'PostgreSQL not reachable';

describe('push notifications through a running Levee', { skip: pgSkip }, () => {
  let levee: RunningLevee;
  let apns: MockApns;
  let fcm: MockFcm;
  let wp: MockWebPush;
  let dropDb: () => Promise<void>;
  before(async () => {
    const dir = tempDir('levee-push-e2e-');
    let apnsEnv: Record<string, string>;
    ({ apns, env: apnsEnv } = await mockApnsForLevee(dir, BUNDLE_ID));
    fcm = await startMockFcm();
    wp = await startMockWebPush();
    const account = join(dir, 'fcm.json');
    writeFileSync(account, JSON.stringify(fcm.serviceAccount));
    const vapid = webpush.generateVAPIDKeys();
    const db = await createPostgresDatabase();
    dropDb = db.drop;
    levee = await startLevee([], {
      env: {
        DATABASE_URL: db.url,
        LEVEE_QUEUE_ENGINE: 'database',
        LEVEE_SERVER_KEY: SERVER_KEY,
        LEVEE_PUSH_TOPICS: 'news',
        ...apnsEnv,
        LEVEE_FCM_SERVICE_ACCOUNT_FILE: account,
        LEVEE_FCM_URL: fcm.url,
        LEVEE_VAPID_PUBLIC_KEY: vapid.publicKey,
        LEVEE_VAPID_PRIVATE_KEY: vapid.privateKey,
        LEVEE_VAPID_SUBJECT: 'mailto:ops@levee.dev',
        LEVEE_WEBPUSH_ALLOWED_HOSTS: '127.0.0.1',
      },
    });
  });
  after(async () => {
    await killAll();
    await Promise.all([apns?.close(), fcm?.close(), wp?.close()]);
    await dropDb?.();
  });

  const api = (path: string, o: { method?: string; body?: unknown; token?: string; headers?: Record<string, string> } = {}) =>
    http(`${levee.url}${path}`, { method: o.method ?? 'GET', ...(o.body !== undefined ? { body: o.body } : {}), headers: { ...(o.token ? { authorization: `Bearer ${o.token}` } : {}), ...o.headers } });

  it('delivers one push to APNs, FCM and Web Push devices exactly once, prunes a dead token, and reports it all', async () => {
    const signup = await api('/v1/auth/signup', { method: 'POST', body: { email: `e2e.${Date.now()}@example.com`, password: 'correct horse 1' } });
    assert.equal(signup.status, 201, signup.body);
    const { accessToken, user } = signup.json() as { accessToken: string; user: { id: string } };
    const apnsTokens = [randomBytes(32).toString('hex'), randomBytes(32).toString('hex')];
    const dead = randomBytes(32).toString('hex');
    apns.unregistered.set(dead, Date.now());
    const fcmToken = `e2e:${randomBytes(60).toString('base64url')}`;
    const browser = wp.subscribe();
    for (const body of [...[...apnsTokens, dead].map((token) => ({ platform: 'apns', token, topics: ['news'] })), { platform: 'fcm', token: fcmToken }, { platform: 'webpush', subscription: browser.subscription }]) {
      const r = await api('/v1/devices', { method: 'POST', token: accessToken, body });
      assert.equal(r.status, 201, r.body);
    }

    const sent = await api('/v1/push', { method: 'POST', headers: { 'x-server-key': SERVER_KEY }, body: { audience: { userIds: [user.id] }, title: 'Hi', body: 'From Levee', data: { screen: 'inbox' } } });
    assert.equal(sent.status, 202, sent.body);
    const id = (sent.json() as { id: string }).id;
    let progress: Record<string, unknown> = {};
    for (let i = 0; i < 300 && progress.state !== 'done'; i++) {
      await new Promise((r) => setTimeout(r, 50));
      progress = (await api(`/v1/push/${id}`, { headers: { 'x-server-key': SERVER_KEY } })).json() as Record<string, unknown>;
    }
    assert.deepEqual([progress.state, progress.targeted, progress.sent, progress.pruned, progress.failed, progress.pending], ['done', 5, 4, 1, 0, 0]);
    for (const t of apnsTokens) assert.equal(apns.deliveries.get(t)?.count, 1);
    const aps = apns.deliveries.get(apnsTokens[0]!)!.last;
    assert.deepEqual([aps.headers['apns-topic'], aps.headers['apns-push-type'], (aps.payload.aps as { alert: unknown }).alert, aps.payload.screen], [BUNDLE_ID, 'alert', { title: 'Hi', body: 'From Levee' }, 'inbox']);
    assert.equal(fcm.deliveries.get(fcmToken)?.count, 1);
    assert.equal(wp.deliveries.get(browser.id)?.count, 1);
    assert.deepEqual(JSON.parse(wp.decrypt(browser.id)), { title: 'Hi', body: 'From Levee', data: { screen: 'inbox' } });
    const devices = (await api('/v1/devices', { token: accessToken })).json() as { devices: unknown[] };
    assert.equal(devices.devices.length, 4, 'the unregistered APNs token was pruned');

    const metrics = (await api('/metrics')).body;
    assert.match(metrics, /levee_push_notifications_total\{[^}]*provider="apns",outcome="sent"[^}]*\} 2/);
    assert.match(metrics, /levee_push_notifications_total\{[^}]*provider="apns",outcome="pruned"[^}]*\} 1/);
    assert.match(metrics, /levee_push_processing_seconds_count\{[^}]*provider="fcm"[^}]*\} 1/);
    assert.match(metrics, /levee_dependency_circuit_state\{[^}]*dependency="push_apns"[^}]*\} 0/);
    assert.match(metrics, /levee_queue_jobs\{[^}]*queue="push-send",state="waiting"[^}]*\} 0/);
    assert.match(metrics, /levee_queue_oldest_waiting_seconds\{[^}]*queue="push-fanout"[^}]*\} 0/);
  });
});
