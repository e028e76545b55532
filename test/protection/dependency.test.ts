import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { RequestDeadline, runWithDeadline } from '../../src/protection/deadline.js';
import { createDependencies } from '../../src/protection/dependency.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const refused = (reason: string) => Object.assign(new Error(`refused: ${reason}`), { reason });
const reasonOf = (p: Promise<unknown>) => p.then(() => 'ok', (e: { reason?: string; message: string }) => e.reason ?? e.message);

function setup(opts: { concurrency?: number; queue?: number; failuresToOpen?: number; halfOpenAfterMs?: number } = {}) {
  const registry = new Registry();
  const dep = createDependencies(registry)({ name: 'thing', unavailable: refused, ...opts });
  const metric = async (name: string) => (await registry.getSingleMetricAsString(name)).split('\n').filter((l) => !l.startsWith('#'));
  return { dep, metric };
}

describe('dependency guard (bulkhead + circuit breaker)', () => {
  it('runs at most `concurrency` calls at once, queues `queue` more and refuses the rest at once', async () => {
    const { dep, metric } = setup({ concurrency: 2, queue: 1 });
    let running = 0;
    let peak = 0;
    const work = () =>
      dep.run(async () => {
        peak = Math.max(peak, ++running);
        await sleep(30);
        running--;
        return 'done';
      });
    const results = await Promise.all([1, 2, 3, 4, 5].map(() => reasonOf(work())));
    assert.equal(peak, 2);
    assert.deepEqual(results.sort(), ['full', 'full', 'ok', 'ok', 'ok']);
    assert.ok((await metric('levee_dependency_rejected_total')).some((l) => l.includes('reason="full"') && l.endsWith(' 2')));
  });

  it("a queued call waits no longer than the request's deadline, and is then skipped, not run", async () => {
    const { dep } = setup({ concurrency: 1, queue: 10 });
    let ran = 0;
    const blocker = dep.run(() => sleep(200));
    const t0 = performance.now();
    const queued = runWithDeadline(new RequestDeadline(performance.now() + 50), () => reasonOf(dep.run(async () => void ran++)));
    assert.equal(await queued, 'deadline');
    const waited = performance.now() - t0;
    assert.ok(waited >= 45 && waited < 150, `waited ${waited.toFixed(0)} ms`);
    await blocker;
    await sleep(10);
    assert.equal(ran, 0, 'the abandoned call never ran');
  });

  it('opens after consecutive failures (calls then fail at once, untouched), half-opens, and closes on success', async () => {
    const { dep, metric } = setup({ failuresToOpen: 3, halfOpenAfterMs: 100 });
    let calls = 0;
    const failing = () => dep.run(async () => (calls++, Promise.reject(new Error('down'))));
    for (let i = 0; i < 3; i++) assert.equal(await reasonOf(failing()), 'down');
    assert.equal(dep.state(), 'open');
    assert.ok((await metric('levee_dependency_circuit_state')).some((l) => l.endsWith(' 2')));
    assert.equal(await reasonOf(failing()), 'open');
    assert.equal(calls, 3, 'an open circuit does not call the dependency');
    await sleep(120);
    assert.equal(await reasonOf(dep.run(async () => 'fine')), 'ok');
    assert.equal(dep.state(), 'closed');
    assert.ok((await metric('levee_dependency_circuit_state')).some((l) => l.endsWith(' 0')));
  });

  it('errors that are not outages pass through without opening the circuit', async () => {
    const registry = new Registry();
    const dep = createDependencies(registry)({ name: 'db', failuresToOpen: 2, isFailure: (e) => (e as Error).message === 'outage', unavailable: refused });
    for (let i = 0; i < 5; i++) assert.equal(await reasonOf(dep.run(() => Promise.reject(new Error('unique violation')))), 'unique violation');
    assert.equal(dep.state(), 'closed');
  });
});
