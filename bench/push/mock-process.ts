import { generateKeyPairSync } from 'node:crypto';
import { MockApns } from '../../test/support/mock-push/apns.js';
import { MockFcm } from '../../test/support/mock-push/fcm.js';
import { apnsToken, fcmToken, platformOf, TEAM, type FromMock, type MockReport, type ToMock } from './protocol.js';

// The local APNs and FCM of the push benchmark, in a process of their own (forked by main.ts with
// `--import tsx`), so that their CPU is not charged to the push role. They are the test mocks
// (test/support/mock-push): real HTTP/2 over TLS, real token checks, every accepted notification
// counted per device token. This process adds what the benchmark needs on top: the time of the
// first and last accepted notification, a message when the expected number has been reached, and
// per-token verdicts (lost, duplicated) over the seeded devices.

if (!process.send) throw new Error('mock-process.ts is started by bench/push/main.ts (it talks over IPC)');
const send = (m: FromMock) => process.send!(m);

const APNS_STREAMS = Number(process.env.BENCH_PUSH_MOCK_STREAMS ?? 1000);
const teamKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const apns = await new MockApns({ ...TEAM, publicKey: teamKey.publicKey, maxConcurrentStreams: APNS_STREAMS }).listen();
const fcm = await new MockFcm({ projectId: 'levee-bench' }).listen();

let label = '';
let expected = 0;
let reached = false;
let firstAt = 0;
let lastAt = 0;
let base = { apns: 0, fcm: 0 };

// Every accepted notification increments `delivered` on its mock: a setter there timestamps it
// (Date.now(): the orchestrator compares it with its own clock, on the same machine).
function watchDelivered(mock: { delivered: number }, which: 'apns' | 'fcm') {
  let value = mock.delivered;
  Object.defineProperty(mock, 'delivered', {
    configurable: true,
    enumerable: true,
    get: () => value,
    set: (v: number) => {
      value = v;
      const now = Date.now();
      if (firstAt === 0) firstAt = now;
      lastAt = now;
      if (!reached && expected > 0 && deliveredSince() >= expected) {
        reached = true;
        send({ type: 'reached', label, at: now, delivered: deliveredSince() });
      }
    },
  });
  return () => value - base[which];
}
const apnsSince = watchDelivered(apns, 'apns');
const fcmSince = watchDelivered(fcm, 'fcm');
const deliveredSince = () => apnsSince() + fcmSince();
const requestBase = { apns: 0, fcm: 0, apnsConn: 0, fcmConn: 0 };

function report(): MockReport {
  let lost = 0;
  let duplicated = 0;
  let extraCopies = 0;
  let found = 0;
  const lostSample: string[] = [];
  for (let i = 0; i < expected; i++) {
    const p = platformOf(i);
    const token = p === 'apns' ? apnsToken(i) : fcmToken(i);
    const count = (p === 'apns' ? apns.deliveries.get(token)?.count : fcm.deliveries.get(token)?.count) ?? 0;
    if (count === 0) {
      lost++;
      if (lostSample.length < 5) lostSample.push(`${p}:${token.slice(0, 24)}…`);
    } else {
      found += count;
      if (count > 1) {
        duplicated++;
        extraCopies += count - 1;
      }
    }
  }
  const total = deliveredSince();
  return {
    type: 'report',
    label,
    apns: { requests: apns.requests - requestBase.apns, delivered: apnsSince(), tokens: apns.deliveries.size, connections: apns.connections - requestBase.apnsConn, peakStreams: apns.peakStreams },
    fcm: { requests: fcm.requests - requestBase.fcm, delivered: fcmSince(), tokens: fcm.deliveries.size, connections: fcm.connections - requestBase.fcmConn, tokenFetches: fcm.tokenFetches },
    lost,
    duplicated,
    extraCopies,
    unexpected: total - found,
    firstAt,
    lastAt,
    lostSample,
  };
}

process.on('message', (m: ToMock) => {
  try {
    if (m.type === 'expect') {
      label = m.label;
      expected = m.n;
      reached = false;
      firstAt = 0;
      lastAt = 0;
      base = { apns: apns.delivered, fcm: fcm.delivered };
      Object.assign(requestBase, { apns: apns.requests, fcm: fcm.requests, apnsConn: apns.connections, fcmConn: fcm.connections });
      apns.deliveries.clear();
      fcm.deliveries.clear();
      apns.peakStreams = apns.activeStreams;
      send(report());
    } else if (m.type === 'report') {
      send(report());
    } else if (m.type === 'exit') {
      void Promise.race([Promise.all([apns.close(), fcm.close()]), new Promise((r) => setTimeout(r, 3_000))]).finally(() => process.exit(0));
    }
  } catch (e) {
    send({ type: 'error', message: String((e as Error)?.stack ?? e) });
  }
});
process.on('disconnect', () => process.exit(0));

send({
  type: 'ready',
  pid: process.pid,
  apnsUrl: apns.url,
  fcmUrl: fcm.url,
  tokenUrl: fcm.tokenUrl,
  ca: apns.ca,
  serviceAccount: fcm.serviceAccount as unknown as Record<string, string>,
  teamPrivateKey: teamKey.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string,
  teamPublicKey: teamKey.publicKey.export({ format: 'pem', type: 'spki' }) as string,
  apnsMaxConcurrentStreams: APNS_STREAMS,
});
