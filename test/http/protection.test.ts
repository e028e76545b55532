import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Fastify from 'fastify';
import pg from 'pg';
import { classify, createAdmissionGate } from '../../src/http/admission-gate.js';
import { installProtection } from '../../src/http/protection.js';
import { sendProblem } from '../../src/http/problem.js';
import { AdmissionController } from '../../src/protection/admission.js';
import { remainingMs } from '../../src/protection/deadline.js';
import { createTestApp, type TestApp } from '../support/app.js';
import { engines } from '../support/engines.js';

// The front of the request path on a bare Fastify app with controllable routes: admission,
// priorities, deadlines and the event-loop guard. The database side of deadlines is tested
// below on both engines through the real API.

const gate = () => {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { opened, open };
};

async function protectedApp(opts: { limit: number; queueSize?: number; queueWaitMs?: number; deadlineMs?: number; maxEventLoopDelayMs?: number }) {
  const admission = new AdmissionController({ initialLimit: opts.limit, minLimit: opts.limit, maxLimit: opts.limit, queueSize: opts.queueSize ?? 0, queueWaitMs: opts.queueWaitMs ?? 100 });
  const rejected: string[] = [];
  const serverMs: number[] = [];
  const protection = { admission, defaultDeadlineMs: opts.deadlineMs ?? 5000, maxDeadlineMs: 30_000, maxEventLoopDelayMs: opts.maxEventLoopDelayMs ?? 0, onRejected: (p: string, r: string) => rejected.push(`${p}:${r}`) };
  const front = createAdmissionGate(protection);
  const app = Fastify({ serverFactory: (handler, o) => front.serverFactory(handler, o) });
  // Time on the server of a refused request: from the request handed over to the response written.
  app.server.prependListener('request', (_req, res) => {
    const t0 = performance.now();
    res.once('finish', () => {
      if (res.statusCode === 503) serverMs.push(performance.now() - t0);
    });
  });
  app.setErrorHandler((err, req, reply) => sendProblem(err, req, reply));
  await installProtection(app, front, protection);
  let hold = gate();
  hold.open();
  const seen: string[] = [];
  app.get('/slow', async (req) => {
    seen.push(classify(req.method, req.url, req.headers['levee-priority'], req.routeOptions.config.priority));
    await hold.opened;
    return { ok: true };
  });
  app.post('/slow', async (req) => {
    seen.push(classify(req.method, req.url, req.headers['levee-priority'], req.routeOptions.config.priority));
    await hold.opened;
    return { ok: true };
  });
  app.get('/fast', async () => ({ ok: true }));
  // Stands for sign-in: its work is bounded by a bulkhead of its own, whose fullness the test sets.
  const hashing = { full: false, saturated: () => hashing.full };
  app.post('/signin-like', { config: { bulkhead: hashing } }, async () => ({ ok: true }));
  app.get('/budget', { config: { deadlineMs: 200 } }, async () => ({ remaining: remainingMs() }));
  app.get('/healthz', { config: { unprotected: true } }, async () => ({ ok: true }));
  await app.listen({ port: 0, host: '127.0.0.1' });
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  return {
    app,
    url,
    admission,
    hashing,
    rejected,
    seen,
    serverMs,
    /** Lets every held and future /slow request finish, until block(). */
    release() {
      hold.open();
    },
    block() {
      hold = gate();
    },
    async close() {
      hold.open();
      admission.close();
      // Teardown only: do not wait for the test client's keep-alive sockets.
      app.server.closeAllConnections();
      await app.close();
    },
  };
}

describe('admission control over HTTP', () => {
  let s: Awaited<ReturnType<typeof protectedApp>>;
  before(async () => {
    s = await protectedApp({ limit: 2, queueSize: 1, queueWaitMs: 10_000 });
  });
  after(() => s.close());

  it('past the limit and its queue, a request is rejected at once: 503 overloaded, problem+json, Retry-After', async () => {
    s.block();
    const inFlight = [fetch(`${s.url}/slow`), fetch(`${s.url}/slow`), fetch(`${s.url}/slow`)];
    try {
      while (s.admission.stats().queued < 1) await new Promise((r) => setTimeout(r, 5));
      s.serverMs.length = 0;
      for (let i = 0; i < 20; i++) {
        const res = await fetch(`${s.url}/fast`);
        assert.equal(res.status, 503);
        assert.equal(res.headers.get('content-type'), 'application/problem+json; charset=utf-8');
        assert.match(res.headers.get('retry-after') ?? '', /^[1-3]$/);
        const text = await res.text();
        assert.equal(Number(res.headers.get('content-length')), Buffer.byteLength(text));
        const body = JSON.parse(text) as { code: string; retryable: boolean; instance: string; requestId: string };
        assert.equal(body.code, 'overloaded');
        assert.equal(body.retryable, true);
        assert.equal(body.instance, '/fast');
        assert.equal(body.requestId, res.headers.get('x-request-id'));
      }
      // Time on the server, from arrival to the response written (the client's own overhead aside);
      // the median, since a shared CI machine can pause any single request.
      const times = s.serverMs.sort((a, b) => a - b);
      assert.equal(times.length, 20);
      assert.ok(times[10]! < 5, `median rejection took ${times[10]!.toFixed(2)} ms on the server`);
      // Probes are never shed.
      assert.equal((await fetch(`${s.url}/healthz`)).status, 200);
    } finally {
      s.release();
    }
    for (const r of await Promise.all(inFlight)) assert.equal(r.status, 200);
    assert.ok(s.rejected.some((r) => r === 'default:queue_full'));
  });

  it('slots come back when clients go away mid-request', async () => {
    s.block();
    const aborts = [new AbortController(), new AbortController()];
    const calls = aborts.map((a) => fetch(`${s.url}/slow`, { signal: a.signal }).catch(() => 'aborted'));
    while (s.admission.stats().inFlight < 2) await new Promise((r) => setTimeout(r, 5));
    for (const a of aborts) a.abort();
    await Promise.all(calls);
    const t0 = Date.now();
    while (s.admission.stats().inFlight > 0 && Date.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 5));
    assert.equal(s.admission.stats().inFlight, 0);
    s.release();
    assert.equal((await fetch(`${s.url}/fast`)).status, 200);
  });

  it('classes: writes are critical, reads default, later pages sheddable; a client may lower its class, never raise it', async () => {
    const requests: [string, RequestInit][] = [
      ['/slow', { method: 'POST' }],
      ['/slow?cursor=abc', {}],
      ['/slow', { headers: { 'levee-priority': 'sheddable' } }],
      ['/slow', { method: 'POST', headers: { 'levee-priority': 'default' } }],
      ['/slow', { headers: { 'levee-priority': 'critical' } }],
    ];
    const seen = [];
    for (const [path, init] of requests) {
      s.seen.length = 0;
      s.block();
      const call = fetch(`${s.url}${path}`, init);
      while (s.seen.length === 0) await new Promise((r) => setTimeout(r, 2));
      seen.push(s.seen[0]);
      s.release();
      assert.equal((await call).status, 200);
    }
    assert.deepEqual(seen, ['critical', 'sheddable', 'sheddable', 'default', 'default']);
  });

  it('a critical request waits for a slot while default ones are turned away', async () => {
    const full = await protectedApp({ limit: 1, queueSize: 1, queueWaitMs: 1000 });
    try {
      full.block();
      const running = fetch(`${full.url}/slow`);
      while (full.admission.stats().inFlight < 1) await new Promise((r) => setTimeout(r, 2));
      const sheddable = fetch(`${full.url}/slow?cursor=x`);
      while (full.admission.stats().queued < 1) await new Promise((r) => setTimeout(r, 2));
      // The queue is full: a critical arrival evicts the sheddable waiter; a default one is refused.
      const critical = fetch(`${full.url}/slow`, { method: 'POST' });
      assert.equal((await sheddable).status, 503);
      assert.equal((await fetch(`${full.url}/fast`)).status, 503);
      full.release();
      assert.equal((await running).status, 200);
      assert.equal((await critical).status, 200);
      assert.deepEqual(full.seen, ['default', 'critical']);
    } finally {
      await full.close();
    }
  });
});

describe('deadlines over HTTP', () => {
  let s: Awaited<ReturnType<typeof protectedApp>>;
  before(async () => {
    s = await protectedApp({ limit: 10, deadlineMs: 1000 });
  });
  after(() => s.close());

  it('a handler sees the budget its route declares (capped), counted from arrival', async () => {
    const { remaining } = (await (await fetch(`${s.url}/budget`)).json()) as { remaining: number };
    assert.ok(remaining > 100 && remaining <= 200, `remaining ${remaining}`);
  });

  it('a request that waited for admission past its deadline is not started', async () => {
    const tight = await protectedApp({ limit: 1, queueSize: 5, queueWaitMs: 10_000, deadlineMs: 150 });
    try {
      tight.block();
      const running = fetch(`${tight.url}/slow`);
      while (tight.admission.stats().inFlight < 1) await new Promise((r) => setTimeout(r, 2));
      const t0 = performance.now();
      const waiting = await fetch(`${tight.url}/fast`);
      const took = performance.now() - t0;
      assert.equal(waiting.status, 503);
      assert.ok(took >= 140 && took < 400, `answered after ${took.toFixed(0)} ms`);
      tight.release();
      await running;
    } finally {
      await tight.close();
    }
  });
});

describe('routes with a bulkhead of their own (sign-in)', () => {
  it('take no admission slot, and are refused at the gate while their bulkhead is full', async () => {
    const s = await protectedApp({ limit: 1, queueSize: 0 });
    s.block();
    const held = fetch(`${s.url}/slow`);
    try {
      while (s.admission.stats().inFlight < 1) await new Promise((r) => setTimeout(r, 5));
      // The admission limit is used up: an ordinary request is shed, a sign-in still goes through.
      assert.equal((await fetch(`${s.url}/fast`)).status, 503);
      const admitted = await fetch(`${s.url}/signin-like`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      assert.equal(admitted.status, 200);
      assert.equal(s.admission.stats().inFlight, 1, 'the sign-in did not take a slot');
      // Its bulkhead full: refused before its body is read, as overloaded, retryable.
      s.hashing.full = true;
      const refused = await fetch(`${s.url}/signin-like`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      assert.equal(refused.status, 503);
      assert.equal(refused.headers.get('retry-after'), '1');
      const body = (await refused.json()) as { code: string; retryable: boolean };
      assert.deepEqual([body.code, body.retryable], ['overloaded', true]);
      assert.ok(s.rejected.includes('critical:bulkhead_full'), s.rejected.join());
      s.hashing.full = false;
    } finally {
      s.release();
      await held;
      await s.close();
    }
  });
});

describe('the event-loop guard (@fastify/under-pressure)', () => {
  it('sheds requests while the event loop is blocked; probes still answer', async () => {
    const s = await protectedApp({ limit: 100, maxEventLoopDelayMs: 50 });
    try {
      // Block the loop for long stretches until the guard's 500 ms sample sees it.
      const until = Date.now() + 3000;
      let res: Response;
      do {
        const end = Date.now() + 400;
        while (Date.now() < end);
        res = await fetch(`${s.url}/fast`);
      } while (res.status === 200 && Date.now() < until);
      assert.equal(res.status, 503);
      assert.equal(((await res.json()) as { code: string }).code, 'overloaded');
      assert.equal((await fetch(`${s.url}/healthz`)).status, 200);
      // Once the loop is free again, service returns.
      let ok = false;
      for (let i = 0; i < 30 && !ok; i++) {
        await new Promise((r) => setTimeout(r, 100));
        ok = (await fetch(`${s.url}/fast`)).status === 200;
      }
      assert.ok(ok, 'served again after the loop recovered');
    } finally {
      await s.close();
    }
  });
});

for (const engine of await engines()) {
  describe(`request deadlines reach the database on ${engine.name}`, { skip: engine.skip }, () => {
    let t: TestApp;
    let token: string;
    before(async () => {
      t = await createTestApp(engine, { overrides: { requestDeadlineMs: 400 } });
      // Straight through the service (no request, no deadline): password hashing on a busy machine
      // is not what this suite is about.
      token = (await t.services.auth.signUp({ email: `deadline.${Date.now()}@example.com`, password: 'correct horse 1' })).accessToken;
    });
    after(() => t.close());

    it('a request stuck behind a lock answers 504 timeout at its deadline, and the statement is cancelled', async () => {
      const created = await t.call('POST', '/v1/collections/notes/documents', { token, body: { a: 1 } });
      const id = (created.json() as { id: string }).id;
      if (engine.name === 'postgres') {
        // Another session holds the row: the API's UPDATE waits on the lock.
        const other = new pg.Client({ connectionString: t.database.url });
        await other.connect();
        try {
          await other.query('BEGIN');
          await other.query('SELECT 1 FROM documents WHERE id = $1 FOR UPDATE', [id]);
          const t0 = performance.now();
          const res = await t.call('PATCH', `/v1/collections/notes/documents/${id}`, { token, body: { a: 2 }, headers: { 'content-type': 'application/merge-patch+json' } });
          const took = performance.now() - t0;
          assert.equal(res.statusCode, 504, res.body);
          assert.equal(res.json().code, 'timeout');
          assert.equal(res.headers['retry-after'], '1');
          assert.ok(took < 1000, `took ${took.toFixed(0)} ms`);
          // The cancel reached PostgreSQL: nothing of ours is left waiting on the lock.
          let waiting = -1;
          for (let i = 0; i < 20 && waiting !== 0; i++) {
            await new Promise((r) => setTimeout(r, 50));
            waiting = (await other.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")).rows[0]!.n;
          }
          assert.equal(waiting, 0, 'the blocked statement was cancelled on the server');
        } finally {
          await other.query('ROLLBACK').catch(() => {});
          await other.end();
        }
      } else {
        // PGlite is one session: a long transaction holds it, and the request waits in line.
        const held = gate();
        const tx = t.services.db.transaction(() => held.opened);
        const t0 = performance.now();
        const res = await t.call('GET', `/v1/collections/notes/documents/${id}`, { token });
        const took = performance.now() - t0;
        held.open();
        await tx;
        assert.equal(res.statusCode, 504, res.body);
        assert.ok(took < 1000, `took ${took.toFixed(0)} ms`);
      }
      // Nothing was changed, and the connection pool / session serves the next request.
      const after = await t.call('GET', `/v1/collections/notes/documents/${id}`, { token });
      assert.equal(after.statusCode, 200);
      assert.deepEqual(after.json().data, { a: 1 });
    });

    it('breaker and admission state are exported as metrics', async () => {
      const res = await t.call('GET', '/metrics');
      assert.match(res.body, /levee_dependency_circuit_state\{dependency="database"[^}]*\} 0/);
      assert.match(res.body, /levee_dependency_circuit_state\{dependency="password_hashing"/);
      assert.match(res.body, /levee_admission_limit\{/);
    });
  });
}
