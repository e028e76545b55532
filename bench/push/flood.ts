import { createPrivateKey } from 'node:crypto';
import http2 from 'node:http2';
import https from 'node:https';
import { SignJWT } from 'jose';
import { cpuSecondsOf, machineCpu } from '../support.js';
import { floodApnsToken, floodFcmToken, TEAM, type MockReady } from './protocol.js';

// The mocks' ceiling: a bare HTTP/2 client (node:http2, no queue, no database, no Levee) floods the
// mock process with the same requests Levee sends — APNs with a valid ES256 provider token, FCM
// with an OAuth access token from the mock's token endpoint — half and half, from a few sessions
// per provider with many streams in flight each, for a bounded time. Accepted notifications per
// second in the measured window is the ceiling the pipeline is compared with.

export interface FloodOptions {
  seconds: number;
  warmupSeconds: number;
  sessionsPerProvider: number;
  /** Streams kept in flight per provider (spread over its sessions). */
  inFlightPerProvider: number;
  mockPid: number;
}

export interface FloodResult {
  seconds: number;
  /** Accepted (200) notifications per second in the measured window, both providers. */
  rate: number;
  apnsRate: number;
  fcmRate: number;
  accepted: number;
  /** Answers other than 200, and requests that failed (reset, timeout), in the window. */
  notOk: number;
  errors: number;
  sessionsPerProvider: number;
  inFlightPerProvider: number;
  /** CPU (cores) of the flooding client (this process) and of the mock process, over the window. */
  clientCores: number;
  mockCores: number;
  /** Busy cores of the whole machine over the window (everything, other work included). */
  machineCores: number;
  /** The mock process's CPU per accepted notification, µs. */
  mockCpuUsPerNotification: number;
  /** The bare client's own CPU per accepted notification, µs: what sending costs a Node process with nothing else to do. */
  clientCpuUsPerNotification: number;
  latencyMs: { p50: number; p99: number };
}

const REQUEST_TIMEOUT_MS = 10_000;

function connect(url: string, ca: string): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = http2.connect(url, { ca });
    const timer = setTimeout(() => s.destroy(new Error(`no SETTINGS from ${url} within 10 s`)), 10_000);
    s.once('remoteSettings', () => {
      clearTimeout(timer);
      resolve(s);
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

function post(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body: string): Promise<number> {
  return new Promise((resolve) => {
    let status = 0;
    let done = false;
    const finish = (s: number) => {
      if (done) return;
      done = true;
      resolve(s);
    };
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(headers);
    } catch {
      return finish(-1);
    }
    stream.setTimeout(REQUEST_TIMEOUT_MS, () => stream.close(http2.constants.NGHTTP2_CANCEL));
    stream.on('response', (h) => (status = Number(h[':status'])));
    stream.on('data', () => {});
    stream.on('end', () => finish(status));
    stream.on('error', () => finish(-1));
    stream.on('close', () => finish(status || -1));
    stream.end(body);
  });
}

/** An OAuth access token from the mock's token endpoint (the jwt-bearer grant, as Levee does it). */
async function fcmAccessToken(ready: MockReady): Promise<string> {
  const sa = ready.serviceAccount;
  const iat = Math.floor(Date.now() / 1000);
  const assertion = await new SignJWT({ scope: 'https://www.googleapis.com/auth/firebase.messaging' })
    .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: sa.private_key_id! })
    .setIssuer(sa.client_email!)
    .setSubject(sa.client_email!)
    .setAudience(sa.token_uri!)
    .setIssuedAt(iat)
    .setExpirationTime(iat + 3600)
    .sign(createPrivateKey(sa.private_key!));
  const form = new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion }).toString();
  const body = await new Promise<string>((resolve, reject) => {
    const req = https.request(sa.token_uri!, { method: 'POST', ca: ready.ca, agent: false, timeout: 10_000, headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(form) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`token endpoint: ${res.statusCode} ${text}`))));
    });
    req.on('timeout', () => req.destroy(new Error('token endpoint: no answer within 10 s')));
    req.on('error', reject);
    req.end(form);
  });
  return (JSON.parse(body) as { access_token: string }).access_token;
}

export async function flood(ready: MockReady, o: FloodOptions): Promise<FloodResult> {
  const jwt = await new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: TEAM.keyId }).setIssuer(TEAM.teamId).setIssuedAt().sign(createPrivateKey(ready.teamPrivateKey));
  const accessToken = await fcmAccessToken(ready);
  const apnsSessions = await Promise.all(Array.from({ length: o.sessionsPerProvider }, () => connect(ready.apnsUrl, ready.ca)));
  const fcmSessions = await Promise.all(Array.from({ length: o.sessionsPerProvider }, () => connect(ready.fcmUrl, ready.ca)));
  const expiration = String(Math.floor(Date.now() / 1000) + 86_400);
  // The same headers and bodies as Levee's providers build for the benchmark's push.
  const apnsBody = JSON.stringify({ screen: 'inbox', aps: { alert: { title: 'Levee bench', body: 'One push to every device' } } });
  const apnsHeaders = (i: number): http2.OutgoingHttpHeaders => ({
    ':method': 'POST',
    ':path': `/3/device/${floodApnsToken(i)}`,
    authorization: `bearer ${jwt}`,
    'apns-topic': TEAM.bundleId,
    'apns-push-type': 'alert',
    'apns-priority': '10',
    'apns-expiration': expiration,
    'content-type': 'application/json',
  });
  const fcmPath = `/v1/projects/${ready.serviceAccount.project_id}/messages:send`;
  const fcmHeaders: http2.OutgoingHttpHeaders = { ':method': 'POST', ':path': fcmPath, authorization: `Bearer ${accessToken}`, 'content-type': 'application/json; charset=utf-8' };
  const fcmBody = (i: number) =>
    JSON.stringify({
      message: {
        token: floodFcmToken(i),
        notification: { title: 'Levee bench', body: 'One push to every device' },
        data: { screen: 'inbox' },
        android: { priority: 'HIGH', ttl: '86400s' },
        apns: { headers: { 'apns-priority': '10', 'apns-push-type': 'alert', 'apns-expiration': expiration }, payload: { aps: {} } },
      },
    });

  const t0 = performance.now();
  const windowStart = t0 + o.warmupSeconds * 1000;
  const windowEnd = windowStart + o.seconds * 1000;
  const counts = { apns: 0, fcm: 0, notOk: 0, errors: 0 };
  const latencies: number[] = [];
  let seq = 0;
  type Sample = { client: NodeJS.CpuUsage; mock: number; machine: number };
  let cpuAt: Sample | undefined;
  let cpuEnd: Sample | undefined;
  const sample = (): Sample => ({ client: process.cpuUsage(), mock: cpuSecondsOf(o.mockPid), machine: machineCpu().busy });
  const startTimer = setTimeout(() => (cpuAt = sample()), Math.max(0, windowStart - performance.now()));
  const endTimer = setTimeout(() => (cpuEnd = sample()), Math.max(0, windowEnd - performance.now()));

  const lane = async (provider: 'apns' | 'fcm', k: number) => {
    const sessions = provider === 'apns' ? apnsSessions : fcmSessions;
    const session = sessions[k % sessions.length]!;
    // Bounded by time, and by count as a safeguard (no machine here does 10 million in a run).
    for (let n = 0; n < 10_000_000 && performance.now() < windowEnd; n++) {
      const i = seq++;
      const sent = performance.now();
      const status = provider === 'apns' ? await post(session, apnsHeaders(i), apnsBody) : await post(session, fcmHeaders, fcmBody(i));
      const now = performance.now();
      if (now < windowStart || now > windowEnd) continue;
      if (status === 200) {
        counts[provider]++;
        if ((counts.apns + counts.fcm) % 16 === 0) latencies.push(now - sent);
      } else if (status < 0) counts.errors++;
      else counts.notOk++;
    }
  };
  try {
    await Promise.all([
      ...Array.from({ length: o.inFlightPerProvider }, (_, k) => lane('apns', k)),
      ...Array.from({ length: o.inFlightPerProvider }, (_, k) => lane('fcm', k)),
    ]);
  } finally {
    clearTimeout(startTimer);
    clearTimeout(endTimer);
    await Promise.all([...apnsSessions, ...fcmSessions].map((s) => new Promise<void>((r) => (s.destroyed ? r() : s.close(() => r())))));
  }
  const a = cpuAt ?? sample();
  const b = cpuEnd ?? sample();
  const clientCpu = (b.client.user + b.client.system - a.client.user - a.client.system) / 1e6;
  const mockCpu = b.mock - a.mock;
  const accepted = counts.apns + counts.fcm;
  latencies.sort((x, y) => x - y);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN;
  return {
    seconds: o.seconds,
    rate: accepted / o.seconds,
    apnsRate: counts.apns / o.seconds,
    fcmRate: counts.fcm / o.seconds,
    accepted,
    notOk: counts.notOk,
    errors: counts.errors,
    sessionsPerProvider: o.sessionsPerProvider,
    inFlightPerProvider: o.inFlightPerProvider,
    clientCores: clientCpu / o.seconds,
    mockCores: mockCpu / o.seconds,
    machineCores: (b.machine - a.machine) / o.seconds,
    mockCpuUsPerNotification: (mockCpu / Math.max(1, accepted)) * 1e6,
    clientCpuUsPerNotification: (clientCpu / Math.max(1, accepted)) * 1e6,
    latencyMs: { p50: q(0.5), p99: q(0.99) },
  };
}
