import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AdmissionController, type Priority, type Rejection, type Ticket } from '../../src/protection/admission.js';
import { GradientLimit } from '../../src/protection/gradient-limit.js';

// A controllable clock: admission decisions depend on time (wait budgets, standing queues).
const fakeClock = () => {
  let t = 0;
  return { now: () => t, advance: (ms: number) => (t += ms) };
};

const controller = (over: Partial<ConstructorParameters<typeof AdmissionController>[0]> = {}) => {
  const clock = fakeClock();
  const ac = new AdmissionController({ initialLimit: 2, minLimit: 1, maxLimit: 100, queueSize: 4, queueWaitMs: 100, now: clock.now, ...over });
  return { ac, clock };
};

const isTicket = (x: unknown): x is Ticket => typeof x === 'object' && x !== null && 'release' in x;
/** Settles a queued acquisition into 'admitted' or its rejection reason. */
const outcome = (p: Promise<Ticket | Rejection>) => p.then((o) => (typeof o === 'string' ? { rejected: o } : { admitted: o }));

describe('admission control', () => {
  it('admits up to the limit at once, then queues, then rejects when the queue is full', () => {
    const { ac } = controller();
    assert.ok(isTicket(ac.acquire('default')));
    assert.ok(isTicket(ac.acquire('default')));
    const waiting = [1, 2, 3, 4].map(() => ac.acquire('default'));
    assert.ok(waiting.every((w) => w instanceof Promise));
    assert.equal(ac.acquire('default'), 'queue_full');
    assert.deepEqual(ac.stats(), { limit: 2, inFlight: 2, queued: 4 });
    ac.close();
  });

  it('a released slot goes to the highest class waiting: critical before default before sheddable', async () => {
    const { ac } = controller({ initialLimit: 1 });
    const running = ac.acquire('critical') as Ticket;
    const order: Priority[] = [];
    const queued = (['default', 'critical', 'default'] as Priority[]).map((p) => (ac.acquire(p) as Promise<Ticket>).then((t) => (order.push(p), t)));
    running.release();
    (await queued[1]!).release();
    (await queued[0]!).release();
    (await queued[2]!).release();
    assert.deepEqual(order, ['critical', 'default', 'default']);
    ac.close();
  });

  it('sheddable requests only start while a quarter of the slots are free and nobody waits', () => {
    const { ac } = controller({ initialLimit: 4 });
    assert.ok(isTicket(ac.acquire('sheddable')));
    assert.ok(isTicket(ac.acquire('sheddable')));
    assert.ok(isTicket(ac.acquire('sheddable')));
    // 3 of 4 in flight: a sheddable request must wait, a default one still starts.
    assert.ok(ac.acquire('sheddable') instanceof Promise);
    assert.ok(isTicket(ac.acquire('default')));
    ac.close();
  });

  it('a full queue evicts its oldest lower-class waiter for a higher-class arrival', async () => {
    const { ac } = controller({ initialLimit: 1, queueSize: 2 });
    ac.acquire('critical');
    const shed = outcome(ac.acquire('sheddable') as Promise<Ticket | Rejection>);
    const dflt = outcome(ac.acquire('default') as Promise<Ticket | Rejection>);
    const crit = ac.acquire('critical');
    assert.ok(crit instanceof Promise, 'the critical arrival got a place');
    assert.deepEqual(await shed, { rejected: 'evicted' });
    // Nothing below critical is left to evict for another critical arrival but the default one.
    assert.ok(ac.acquire('critical') instanceof Promise);
    assert.deepEqual(await dflt, { rejected: 'evicted' });
    assert.equal(ac.acquire('critical'), 'queue_full');
    ac.close();
  });

  it('waiters past their class budget are dropped (sheddable first), and a caller deadline caps the wait', async () => {
    const { ac, clock } = controller({ initialLimit: 1, queueSize: 10, queueWaitMs: 100 });
    const running = ac.acquire('default') as Ticket;
    const shed = outcome(ac.acquire('sheddable') as Promise<Ticket | Rejection>); // budget 25 ms
    const dflt = outcome(ac.acquire('default') as Promise<Ticket | Rejection>); // 100 ms
    const crit = outcome(ac.acquire('critical') as Promise<Ticket | Rejection>); // 300 ms
    const hurried = outcome(ac.acquire('critical', 10) as Promise<Ticket | Rejection>); // the request has 10 ms left
    clock.advance(30);
    await new Promise((r) => setTimeout(r, 20)); // the sweep runs every 5 ms
    assert.deepEqual(await shed, { rejected: 'queue_timeout' });
    assert.deepEqual(await hurried, { rejected: 'queue_timeout' });
    clock.advance(80);
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(await dflt, { rejected: 'queue_timeout' });
    running.release();
    const c = await crit;
    assert.ok('admitted' in c, 'the critical waiter was still within its budget');
    ac.close();
  });

  it('a standing queue serves the newest waiter first (adaptive LIFO); a queue that empties serves in order', async () => {
    const { ac, clock } = controller({ initialLimit: 1, queueSize: 10, queueWaitMs: 1000, congestionIntervalMs: 50 });
    let running = ac.acquire('default') as Ticket;
    const order: number[] = [];
    const waiters = [0, 1, 2].map((i) => (ac.acquire('default') as Promise<Ticket>).then((t) => (order.push(i), t)));
    // Not yet congested: FIFO.
    running.release();
    running = await waiters[0]!;
    clock.advance(60); // the queue has not emptied for longer than the interval
    running.release();
    running = await Promise.race([waiters[1]!, waiters[2]!]);
    running.release();
    await Promise.all(waiters);
    assert.deepEqual(order, [0, 2, 1]);
    ac.close();
  });

  it('releasing twice frees one slot only', () => {
    const { ac } = controller({ initialLimit: 1 });
    const t = ac.acquire('default') as Ticket;
    t.release();
    t.release();
    assert.equal(ac.stats().inFlight, 0);
    assert.ok(isTicket(ac.acquire('default')));
    assert.ok(ac.acquire('default') instanceof Promise);
    ac.close();
  });
});

describe('gradient limit', () => {
  const drive = (limit: GradientLimit, clock: ReturnType<typeof fakeClock>, windows: number, rtt: number, inFlight: number, dropped = false) => {
    for (let w = 0; w < windows; w++) {
      clock.advance(60);
      for (let i = 0; i < 20; i++) limit.onSample(rtt, inFlight, dropped);
    }
  };

  it('grows while latency stays at its long-run level and the limit is in use', () => {
    const clock = fakeClock();
    const limit = new GradientLimit({ initialLimit: 10, minLimit: 2, maxLimit: 200, now: clock.now });
    drive(limit, clock, 50, 5, 1000);
    assert.ok(limit.value > 30, `limit ${limit.value}`);
    assert.ok(limit.value <= 200);
  });

  it('does not grow when the limit is not in use', () => {
    const clock = fakeClock();
    const limit = new GradientLimit({ initialLimit: 10, minLimit: 2, maxLimit: 200, now: clock.now });
    drive(limit, clock, 50, 5, 2);
    assert.equal(limit.value, 10);
  });

  it('shrinks when latency rises well above its long-run level, towards the minimum', () => {
    const clock = fakeClock();
    const limit = new GradientLimit({ initialLimit: 100, minLimit: 4, maxLimit: 200, now: clock.now });
    drive(limit, clock, 20, 5, 1000);
    const before = limit.value;
    drive(limit, clock, 5, 50, 1000);
    assert.ok(limit.value < before * 0.8, `${before} → ${limit.value}`);
    // Latency a thousand times its long-run level: the gradient is at its floor (½) and the limit
    // falls towards the minimum (the long-run level slowly follows, so it settles just above).
    drive(limit, clock, 40, 5000, 1000);
    assert.ok(limit.value <= 8, `limit ${limit.value}`);
  });

  it('timeouts shrink it multiplicatively whatever the latency', () => {
    const clock = fakeClock();
    const limit = new GradientLimit({ initialLimit: 100, minLimit: 4, maxLimit: 200, now: clock.now });
    drive(limit, clock, 3, 5, 1000, true);
    assert.equal(limit.value, Math.floor(100 * 0.9 ** 3));
  });
});
