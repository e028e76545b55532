import assert from 'node:assert/strict';
import { cpSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  connectionRefused,
  http,
  killAll,
  partialRequest,
  runLevee,
  startLevee,
  tempDir,
  waitFor,
  type RunningLevee,
} from '../support/process.js';

// `levee start` on the embedded engine, as real processes: the banner, data that survives a
// restart, the data-directory lock, and SIGTERM draining.

const signupBody = (email: string) => JSON.stringify({ email, password: 'correct horse 1', deviceName: 'it' });
const email = (tag: string) => `${tag}.${process.pid}.${Date.now()}@example.com`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('levee start on the embedded engine', () => {
  after(killAll);
  const root = tempDir();
  const dataDir = join(root, 'data');
  const lockFile = join(dataDir, 'levee.lock');
  const account = { email: email('restart'), password: 'correct horse 1' };
  let first: RunningLevee;

  it('prints the URL, the docs link and where the data is, and becomes ready', async () => {
    first = await startLevee([], { env: { LEVEE_DATA_DIR: dataDir } });
    const out = first.stdout;
    assert.match(out, /running \(roles: api, worker, push\)/);
    assert.ok(out.includes(`API:      ${first.url}/v1`), out);
    assert.ok(out.includes(`Docs:     ${first.url}/docs`), out);
    assert.ok(out.includes(`Data:     embedded PostgreSQL in ${dataDir}`), out);
    assert.match(first.url, /^http:\/\/127\.0\.0\.1:\d+$/);

    const ready = await http(`${first.url}/readyz`);
    assert.equal(ready.status, 200);
    assert.equal(ready.json().status, 'ready');
    assert.deepEqual((await http(`${first.url}/healthz`)).json().roles, ['api', 'worker', 'push']);
    const docs = await http(`${first.url}/docs`);
    assert.ok(docs.status === 200 || (docs.status >= 300 && docs.status < 400), `docs answered ${docs.status}`);
    assert.equal(readFileSync(lockFile, 'utf8'), String(first.pid));
  });

  it('a second levee start on the same data directory exits 1 saying the directory is in use', async () => {
    const second = await runLevee(['start'], { env: { LEVEE_DATA_DIR: dataDir } });
    assert.equal(second.code, 1, second.stderr);
    const lines = second.stderr.split('\n').filter(Boolean);
    assert.match(lines[0]!, /^levee: LEVEE_DATA_DIR: .* is in use by another Levee process \(pid \d+\)/);
    assert.ok(lines[0]!.includes(`pid ${first.pid}`), second.stderr);
    assert.ok(lines[0]!.includes(dataDir), second.stderr);
    assert.doesNotMatch(second.stdout, /running/);
    // The loser must not have touched the winner's lock or its database.
    assert.equal(readFileSync(lockFile, 'utf8'), String(first.pid));
    assert.equal((await http(`${first.url}/readyz`)).status, 200);
  });

  it('data survives a restart: an account made before SIGTERM signs in afterwards', async () => {
    const up = await http(`${first.url}/v1/auth/signup`, { method: 'POST', body: account });
    assert.equal(up.status, 201, up.body);
    first.kill('SIGTERM');
    assert.deepEqual(await first.waitForExit(20_000), { code: 0, signal: null });
    assert.equal(existsSync(lockFile), false, 'a clean stop releases the lock');

    const again = await startLevee([], { env: { LEVEE_DATA_DIR: dataDir } });
    const signin = await http(`${again.url}/v1/auth/signin`, { method: 'POST', body: account });
    assert.equal(signin.status, 200, signin.body);
    assert.equal(signin.json().user.email, account.email);

    // Killed without a chance to clean up: the lock file stays behind, naming a dead process.
    again.kill('SIGKILL');
    await again.waitForExit(10_000);
    assert.equal(readFileSync(lockFile, 'utf8'), String(again.pid));
  });

  it('a stale lock from a dead process is taken over, and the data is still there', async () => {
    const stalePid = readFileSync(lockFile, 'utf8');
    const next = await startLevee([], { env: { LEVEE_DATA_DIR: dataDir } });
    assert.notEqual(readFileSync(lockFile, 'utf8'), stalePid);
    assert.equal(readFileSync(lockFile, 'utf8'), String(next.pid));
    const signin = await http(`${next.url}/v1/auth/signin`, { method: 'POST', body: account });
    assert.equal(signin.status, 200, signin.body);
    next.kill('SIGTERM');
    assert.equal((await next.waitForExit(20_000)).code, 0);
  });
});

describe('SIGTERM drains the api role', () => {
  after(killAll);
  // One initialised data directory (initdb takes seconds), copied for each test.
  const template = join(tempDir(), 'template');
  before(async () => {
    const r = await runLevee(['migrate'], { env: { LEVEE_DATA_DIR: template }, timeoutMs: 40_000 });
    assert.equal(r.code, 0, r.stderr);
  });
  const copy = () => {
    const dir = join(tempDir(), 'data');
    cpSync(template, dir, { recursive: true });
    return dir;
  };

  /** Sends a request's head and part of its body, and waits until the server has surely read them. */
  async function inFlight(url: string, body: string, timeoutMs = 20_000) {
    const req = await partialRequest(url, { method: 'POST', path: '/v1/auth/signup', body, holdBackBytes: body.length - 10, timeoutMs });
    // A full round trip on another connection after ours was written: the event loop has read our head.
    assert.equal((await http(`${url}/healthz`)).status, 200);
    await sleep(200);
    return req;
  }

  it('readiness goes false, new connections are refused, the in-flight request completes, exit 0', async () => {
    const graceMs = 10_000;
    const p = await startLevee([], { env: { LEVEE_DATA_DIR: copy(), LEVEE_SHUTDOWN_GRACE_MS: String(graceMs) } });
    const addr = p.url;

    // Open connections with a request head half-written, so the server cannot treat them as idle:
    // the rest is sent after SIGTERM, as a client on a kept-alive connection would.
    const probe = await partialRequest(addr, { method: 'GET', path: '/readyz', holdBackBytes: 2 });
    const late = await partialRequest(addr, { method: 'GET', path: '/v1/auth/me', holdBackBytes: 2 });
    const acct = email('drain');
    const signup = await inFlight(addr, signupBody(acct));

    const t0 = Date.now();
    p.kill('SIGTERM');
    await waitFor('the listener to close', () => connectionRefused(addr), 5_000, 50);
    assert.equal(p.child.exitCode, null, 'still running while a request is in flight');

    probe.finish();
    const ready = await probe.response;
    assert.equal(ready.status, 503, `readiness while draining: ${JSON.stringify(ready)}`);
    assert.equal(JSON.parse(ready.body).checks.draining, 'draining');
    assert.match(ready.head, /\r\nconnection: close/i);

    // A new request on an old connection is turned away as a retryable problem, not served.
    late.finish();
    const turnedAway = await late.response;
    assert.equal(turnedAway.status, 503, JSON.stringify(turnedAway));
    assert.match(turnedAway.head, /\r\ncontent-type: application\/problem\+json/i);
    assert.match(turnedAway.head, /\r\nretry-after: \d+/i);
    assert.equal(JSON.parse(turnedAway.body).code, 'draining');

    signup.finish();
    const res = await signup.response;
    assert.equal(res.status, 201, `in-flight signup: ${JSON.stringify(res)}`);
    assert.equal(JSON.parse(res.body).user.email, acct);

    const exit = await p.waitForExit(graceMs + 5_000);
    assert.deepEqual(exit, { code: 0, signal: null }, p.stderr);
    assert.ok(Date.now() - t0 < graceMs, `exited ${Date.now() - t0} ms after SIGTERM: it should not wait out the grace period once idle`);
    assert.doesNotMatch(p.stdout + p.stderr, /shutdown failed|grace period over/);
  });

  it('a request still in flight when the grace period ends is cut, and the process still exits 0', async () => {
    const graceMs = 1_500;
    const p = await startLevee([], { env: { LEVEE_DATA_DIR: copy(), LEVEE_SHUTDOWN_GRACE_MS: String(graceMs) } });
    const stuck = await inFlight(p.url, signupBody(email('stuck')), graceMs + 8_000);

    const t0 = Date.now();
    p.kill('SIGTERM');
    const res = await stuck.response; // never finished by us: the server has to cut it
    const cutAfter = Date.now() - t0;
    assert.equal(res.status, 0, `the stuck request got no response: ${JSON.stringify(res)}`);
    assert.ok(cutAfter >= graceMs - 100, `cut after ${cutAfter} ms, before the ${graceMs} ms grace period`);

    const exit = await p.waitForExit(10_000);
    const exitAfter = Date.now() - t0;
    assert.deepEqual(exit, { code: 0, signal: null }, p.stderr);
    assert.ok(exitAfter < graceMs + 5_000, `exit took ${exitAfter} ms`);
    assert.match(p.stdout, /grace period over/, 'the cut is logged');
  });
});
