import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createPostgresDatabase, postgresReachable, CI } from '../support/engines.js';
import { mockApnsForLevee, type MockApns } from '../support/mock-push/apns.js';
import { epoch, startStreamWorker, type Shot } from '../support/open-loop.js';
import { http, killAll, startLevee, tempDir, type RunningLevee } from '../support/process.js';

// Issue 4, item 6: when a push provider is down or slow, notifications wait in the queue while its
// breaker stops hammering it, and the API is not affected. One Levee process runs every role (the
// harder case: the push role shares the API's event loop) on PostgreSQL, with APNs pointed at a
// local mock. The feed runs at a steady open-loop rate throughout; in alternate windows a push to
// DEVICES devices is sent while the mock APNs answers 503 (first half of the run) or hangs (second
// half). Those pushes expire right after their window, so the healthy windows in between are a
// quiet baseline rather than a delivery burst. The feed's p99 in the failing windows must stay within
// 20 % of its p99 in the healthy ones, and sign-ins keep succeeding. Then a push with a long TTL
// waits out a hanging APNs and is delivered in full once it recovers.

const DEVICES = 2_000;
const FEED_RATE = 200;
const SIGNIN_RATE = 4;
const WINDOW_MS = 3_000;
const PAIRS = 6; // healthy/failing pairs: three with 503s, three with a hanging APNs
const TRANSITION_MS = 500; // left out at the start of each window
const P99_RATIO_MAX = 1.2;
const SERVER_KEY = randomBytes(24).toString('hex');
const pgSkip = (await postgresReachable()) ? false : CI ? assert.fail('PostgreSQL must be reachable in CI') : 'PostgreSQL not reachable';

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? NaN;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

describe('a failing push provider does not touch the API', { skip: pgSkip }, () => {
  let levee: RunningLevee;
  let apns: MockApns;
  let dropDb: () => Promise<void>;
  let feedToken: string;
  let email: string;
  before(async () => {
    const dir = tempDir('levee-push-isolation-');
    let apnsEnv: Record<string, string>;
    ({ apns, env: apnsEnv } = await mockApnsForLevee(dir, 'dev.levee.isolation'));
    writeFileSync(join(dir, 'levee.config.json'), JSON.stringify({ collections: { posts: { read: 'public', write: 'owner', indexes: ['createdAt'] } } }));
    const db = await createPostgresDatabase();
    dropDb = db.drop;
    levee = await startLevee([], {
      env: {
        DATABASE_URL: db.url,
        LEVEE_QUEUE_ENGINE: 'database',
        LEVEE_CONFIG: join(dir, 'levee.config.json'),
        LEVEE_SERVER_KEY: SERVER_KEY,
        ...apnsEnv,
        LEVEE_RATE_LIMIT_IP_PER_MINUTE: '10000000',
        LEVEE_RATE_LIMIT_IP_BURST: '100000',
        LEVEE_RATE_LIMIT_USER_PER_MINUTE: '10000000',
        LEVEE_RATE_LIMIT_USER_BURST: '100000',
      },
    });
    email = `iso.${Date.now()}@example.com`;
    const signup = await http(`${levee.url}/v1/auth/signup`, { method: 'POST', body: { email, password: 'correct horse 1' } });
    assert.equal(signup.status, 201, signup.body);
    const { accessToken, user } = signup.json() as { accessToken: string; user: { id: string } };
    feedToken = accessToken;
    // The audience, by SQL: DEVICES APNs devices of one user.
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      await c.query(
        `INSERT INTO devices (id, user_id, platform, token) SELECT gen_random_uuid(), $1, 'apns', md5(random()::text) || md5(random()::text) FROM generate_series(1, $2)`,
        [user.id, DEVICES],
      );
      await c.query(`INSERT INTO documents (collection, id, owner_id, data) SELECT 'posts', gen_random_uuid(), $1, jsonb_build_object('title', 'post ' || n) FROM generate_series(1, 40) n`, [user.id]);
    } finally {
      await c.end();
    }
  });
  after(async () => {
    await killAll();
    await apns?.close();
    await dropDb?.();
  });

  it('keeps the feed p99 within 20 % and sign-ins succeeding while APNs answers 503 or hangs', async (t) => {
    const feed = startStreamWorker({ url: levee.url, connections: 32, requests: [{ method: 'GET', path: '/v1/collections/posts/documents?limit=20', headers: { authorization: `Bearer ${feedToken}` } }], timeoutMs: 10_000 });
    const signins = startStreamWorker({ url: levee.url, connections: 8, requests: [{ method: 'POST', path: '/v1/auth/signin', body: { email, password: 'correct horse 1' } }], timeoutMs: 10_000 });
    const windows = Array.from({ length: PAIRS * 2 }, (_, i) => ({ from: 1_000 + i * WINDOW_MS, to: 1_000 + (i + 1) * WINDOW_MS, failing: i % 2 === 1, mode: i < PAIRS ? ('503' as const) : ('hang' as const) }));
    const total = windows.at(-1)!.to;
    const pushes: string[] = [];
    let feedShots: Shot[] = [];
    let signinShots: Shot[] = [];
    try {
      await Promise.all([feed.ready, signins.ready]);
      const startAt = epoch() + 300;
      const running = Promise.all([
        feed.run(startAt, [{ from: 0, to: total, rate: FEED_RATE }]),
        signins.run(startAt, windows.filter((w) => w.failing).map((w) => ({ from: w.from, to: w.to, rate: SIGNIN_RATE }))),
      ]);
      for (const w of windows) {
        await sleep(startAt + w.from - epoch());
        if (w.failing) {
          if (w.mode === '503') apns.failWith = { status: 503, reason: 'ServiceUnavailable', retryAfter: '1' };
          else apns.hang = true;
          const r = await http(`${levee.url}/v1/push`, { method: 'POST', headers: { 'x-server-key': SERVER_KEY }, body: { audience: { all: true }, body: `window ${w.from}`, ttlSeconds: Math.ceil(WINDOW_MS / 1000) } });
          assert.equal(r.status, 202, r.body);
          pushes.push((r.json() as { id: string }).id);
        } else {
          apns.failWith = undefined;
          apns.hang = false;
        }
      }
      [{ shots: feedShots }, { shots: signinShots }] = await running;
    } finally {
      apns.failWith = undefined;
      apns.hang = false;
      await Promise.all([feed.terminate(), signins.terminate()]);
    }

    const inWindows = (failing: boolean) => feedShots.filter((s) => windows.some((w) => w.failing === failing && s.at >= w.from + TRANSITION_MS && s.at < w.to));
    const healthy = inWindows(false);
    const failing = inWindows(true);
    const p99 = { healthy: percentile(healthy.map((s) => s.ms), 99), failing: percentile(failing.map((s) => s.ms), 99) };
    const metrics = (await http(`${levee.url}/metrics`)).body;
    const breaker = metrics.split('\n').filter((l) => l.startsWith('levee_dependency_') && l.includes('push_apns')).join(' ');
    t.diagnostic(`feed ${FEED_RATE}/s: healthy windows n=${healthy.length} p50 ${percentile(healthy.map((s) => s.ms), 50).toFixed(1)} p99 ${p99.healthy.toFixed(1)} ms; APNs failing n=${failing.length} p50 ${percentile(failing.map((s) => s.ms), 50).toFixed(1)} p99 ${p99.failing.toFixed(1)} ms → ×${(p99.failing / p99.healthy).toFixed(2)} (limit ×${P99_RATIO_MAX})`);
    t.diagnostic(`sign-ins during failures: ${signinShots.length}, ${signinShots.filter((s) => s.status === 200).length} succeeded; mock APNs saw ${apns.requests} requests; ${breaker}`);

    assert.equal(levee.child.exitCode, null, 'Levee is still running');
    assert.deepEqual(feedShots.filter((s) => s.status !== 200).map((s) => s.status), [], 'every feed request answered 200');
    assert.ok(signinShots.length >= 30 && signinShots.every((s) => s.status === 200), `sign-ins: ${signinShots.map((s) => s.status).join(',')}`);
    // The breaker did its job: far fewer requests reached the failing APNs than notifications queued.
    assert.match(metrics, /levee_dependency_rejected_total\{[^}]*dependency="push_apns",reason="open"[^}]*\} [1-9]/);
    assert.ok(apns.requests < DEVICES * pushes.length, `APNs got ${apns.requests} requests for ${DEVICES * pushes.length} notifications`);
    // Nothing was lost: each push ended, its notifications failed as expired rather than vanishing.
    // Bounded: a hung send times out after 10 s, then the breaker holds the batch 5 s, then it retries.
    const ended = async (id: string) => {
      let p: { state: string; sent: number; failed: number; targeted: number; pending: number } | undefined;
      for (let i = 0; i < 600; i++) {
        p = (await http(`${levee.url}/v1/push/${id}`, { headers: { 'x-server-key': SERVER_KEY } })).json() as typeof p;
        if (p!.state === 'done') return p!;
        await sleep(100);
      }
      const m = (await http(`${levee.url}/metrics`)).body.split('\n').filter((l) => /^levee_(queue_jobs|jobs_processed_total|push_notifications_total|dependency_circuit_state)\{/.test(l));
      assert.fail(`push ${id} did not finish in 60 s: ${JSON.stringify(p)}\n${m.join('\n')}\n${levee.stderr.slice(-3000)}`);
    };
    for (const id of pushes) {
      const p = await ended(id);
      assert.equal(p.sent + p.failed, DEVICES, JSON.stringify(p));
    }
    // A push that outlives the outage is delivered in full once APNs answers again.
    apns.hang = true;
    const before = apns.delivered;
    const waiting = (await http(`${levee.url}/v1/push`, { method: 'POST', headers: { 'x-server-key': SERVER_KEY }, body: { audience: { all: true }, body: 'after the outage', ttlSeconds: 600 } })).json() as { id: string };
    await sleep(1_500);
    apns.hang = false;
    const delivered = await ended(waiting.id);
    assert.deepEqual([delivered.sent, delivered.failed, apns.delivered - before], [DEVICES, 0, DEVICES]);
    assert.ok(p99.failing <= P99_RATIO_MAX * p99.healthy, `the feed's p99 rose from ${p99.healthy.toFixed(1)} ms to ${p99.failing.toFixed(1)} ms while APNs failed`);
  });
});
