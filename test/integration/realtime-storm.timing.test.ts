import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, describe, it } from 'node:test';
import WebSocket from 'ws';
import { createPostgresDatabase, engines } from '../support/engines.js';
import { http, killAll, runLevee, startLevee, tempDir } from '../support/process.js';

// A reconnect storm: 5,000 WebSocket clients resume at once (each with the same cursor, as after a
// server restart) against one Levee process. Connections are admitted at a bounded rate and the
// rest refused with 503 + Retry-After before the upgrade; the clients honour it and retry; catch-up
// reads are bounded and shared. The process stays up, every client ends connected and caught up
// (exactly the changes it missed, once), and ordinary API requests keep answering meanwhile.
// The server runs as its own process so the probe measures it, not this process's 5,000 clients.

const CLIENTS = 5_000;
const MISSED = 20;

for (const engine of await engines()) {
  describe(`reconnect storm on ${engine.name}`, { skip: engine.skip }, () => {
    let drop: (() => Promise<void>) | undefined;
    after(async () => {
      await killAll();
      await drop?.();
    });

    it(`${CLIENTS} simultaneous resumes: bounded admission, everyone caught up, the API keeps serving`, { timeout: 90_000 }, async () => {
      const dir = tempDir();
      const config = join(dir, 'levee.config.json');
      writeFileSync(config, JSON.stringify({ collections: { posts: { read: 'public', write: 'owner', indexes: ['createdAt'] } } }));
      const env: Record<string, string> = {
        LEVEE_CONFIG: config,
        LEVEE_DATA_DIR: join(dir, 'data'),
        // Every client here shares one IP: the per-IP limit is not what this test is about.
        LEVEE_RATE_LIMIT_IP_BURST: '1000000',
        LEVEE_RATE_LIMIT_IP_PER_MINUTE: '1000000',
        LEVEE_REALTIME_ACCEPT_PER_SECOND: '500',
        LEVEE_REALTIME_ACCEPT_BURST: '500',
      };
      if (engine.name === 'postgres') {
        const d = await createPostgresDatabase();
        drop = d.drop;
        env.DATABASE_URL = d.url;
        assert.equal((await runLevee(['migrate'], { env })).code, 0);
      }
      const levee = await startLevee(['--roles', 'api'], { env });
      const up = await http(`${levee.url}/v1/auth/signup`, { method: 'POST', body: { email: `storm.${Date.now()}@example.com`, password: 'correct horse 1' } });
      assert.equal(up.status, 201, up.body);
      const token = up.json().accessToken as string;
      const write = async (i: number) => {
        const r = await http(`${levee.url}/v1/collections/posts/documents`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: { i } });
        assert.equal(r.status, 201, r.body);
        return r.json().id as string;
      };
      for (let i = 0; i < 5; i++) await write(i);
      const pulled = await http(`${levee.url}/v1/sync/pull?collections=posts`, { headers: { authorization: `Bearer ${token}` } });
      const cursor = pulled.json().cursor as string;
      // What every client missed while "the server was restarting".
      const missed = new Set<string>();
      for (let i = 0; i < MISSED; i++) missed.add(await write(100 + i));

      // The probe: an ordinary API read every 50 ms throughout.
      const probe: { status: number; ms: number }[] = [];
      let probing = true;
      const prober = (async () => {
        while (probing) {
          const t0 = performance.now();
          const r = await http(`${levee.url}/v1/collections/posts/documents?limit=20`, { timeoutMs: 10_000 }).catch((e: Error) => ({ status: 0, body: e.message }));
          probe.push({ status: r.status, ms: performance.now() - t0 });
          if (r.status !== 200) console.log(`probe: ${r.status} ${r.body.slice(0, 300)}`);
          await new Promise((ok) => setTimeout(ok, 50));
        }
      })();

      // The clients: as light as possible — no timers except a refused client's Retry-After wait.
      const url = `${levee.url.replace('http', 'ws')}/v1/realtime?access_token=${token}`;
      const subscribe = JSON.stringify({ type: 'subscribe', collections: ['posts'], cursor });
      const sockets: WebSocket[] = new Array(CLIENTS);
      const state = Array.from({ length: CLIENTS }, () => ({ changes: new Set<string>(), duplicates: 0, caughtUp: false, refusals: 0 }));
      let refused = 0;
      let badRetryAfter = 0;
      let otherFailures = 0;
      let caughtUp = 0;
      let firstRefusal: { status: number; retryAfter: string | undefined; type: string | undefined } | undefined;
      let allCaughtUp!: () => void;
      const done = new Promise<void>((ok) => (allCaughtUp = ok));
      const connect = (i: number) => {
        const ws = new WebSocket(url, { perMessageDeflate: false });
        sockets[i] = ws;
        let settled = false;
        const retry = (ms: number) => {
          if (settled) return;
          settled = true;
          setTimeout(() => connect(i), ms);
        };
        ws.on('unexpected-response', (req, res) => {
          refused++;
          state[i]!.refusals++;
          const ra = Number(res.headers['retry-after']);
          if (!(ra >= 1 && ra <= 5)) badRetryAfter++;
          firstRefusal ??= { status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] as string | undefined, type: res.headers['content-type'] };
          res.resume();
          req.destroy();
          retry((ra >= 1 ? ra : 1) * 1000);
        });
        ws.on('open', () => ws.send(subscribe));
        ws.on('message', (data) => {
          const m = JSON.parse(data.toString()) as { type: string; change?: { id: string } };
          const s = state[i]!;
          if (m.type === 'change') {
            if (s.changes.has(m.change!.id)) s.duplicates++;
            s.changes.add(m.change!.id);
          } else if (m.type === 'subscribed' && !s.caughtUp) {
            s.caughtUp = true;
            if (++caughtUp === CLIENTS) allCaughtUp();
          } else if (m.type === 'error') {
            otherFailures++;
          }
        });
        ws.on('error', () => {});
        ws.on('close', () => {
          // Refused by the kernel's accept backlog, reset, or closed before catching up: try again.
          if (!state[i]!.caughtUp) {
            otherFailures++;
            retry(1000 + Math.random() * 2000);
          }
        });
      };
      const started = performance.now();
      for (let i = 0; i < CLIENTS; i++) connect(i);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([done, new Promise((_, fail) => (timer = setTimeout(() => fail(new Error(`only ${caughtUp}/${CLIENTS} caught up after 75 s (refused ${refused}, other failures ${otherFailures})`)), 75_000)))]).finally(() => clearTimeout(timer));
      const seconds = (performance.now() - started) / 1000;

      // A write now reaches every one of them.
      const live = await write(999);
      await waitUntil(() => state.every((s) => s.changes.has(live)), 20_000, 'the live change to reach every client');
      probing = false;
      await prober;

      const ms = probe.map((p) => p.ms).sort((a, b) => a - b);
      const p99 = ms[Math.ceil(ms.length * 0.99) - 1]!;
      console.log(
        `storm on ${engine.name}: ${CLIENTS} clients caught up in ${seconds.toFixed(1)} s; ${refused} refusals (503 + Retry-After), ${otherFailures} other failed attempts; ` +
          `API probe: ${probe.length} requests, p50 ${ms[Math.floor(ms.length / 2)]!.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${ms.at(-1)!.toFixed(1)} ms`,
      );

      assert.ok(refused > 0, 'a storm larger than the burst must see refusals');
      assert.equal(firstRefusal!.status, 503);
      assert.match(firstRefusal!.type ?? '', /application\/problem\+json/);
      assert.equal(badRetryAfter, 0, 'every refusal carries Retry-After of 1–5 s');
      for (const s of state) {
        assert.equal(s.duplicates, 0);
        for (const id of missed) assert.ok(s.changes.has(id), 'a client missed a change it should have caught up on');
      }
      assert.ok(probe.length > 10);
      assert.deepEqual([...new Set(probe.map((p) => p.status))], [200], 'the API kept answering 200 during the storm');
      assert.ok(ms.at(-1)! < 3_000, `an API request took ${ms.at(-1)!.toFixed(0)} ms during the storm`);
      assert.equal((await http(`${levee.url}/healthz`)).status, 200, 'the process is up');

      for (const ws of sockets) ws.terminate();
    });
  });
}

async function waitUntil(check: () => boolean, timeoutMs: number, what: string) {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((ok) => setTimeout(ok, 50));
  }
}
