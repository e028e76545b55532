import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { createDependencies } from '../../src/protection/dependency.js';
import { guardProvider, rateGate } from '../../src/push/guard.js';
import type { PushProvider, SendResult } from '../../src/push/providers/port.js';

// The isolation around one push provider: breaker, the wait it imposes on batches, the rate gate.

const target = { platform: 'apns' as const, token: 'ab'.repeat(32) };
const message = { body: 'x', priority: 'high' as const };

describe('a guarded push provider', () => {
  it('opens its circuit on repeated failures, makes batches wait, then lets one through to try and closes again', async () => {
    let answer: SendResult = { outcome: 'retry', reason: '503 ServiceUnavailable' };
    let calls = 0;
    const provider: PushProvider = { platform: 'apns', send: async () => (calls++, answer), close: async () => {} };
    const dependency = createDependencies(new Registry())({ name: 'push_test', concurrency: 10, queue: 10, failuresToOpen: 3, halfOpenAfterMs: 150, unavailable: (why) => new Error(why) });
    const guarded = guardProvider(provider, { dependency, perSecond: 1000, openRetryMs: 150 });

    for (let i = 0; i < 3; i++) assert.equal((await guarded.send(target, message)).outcome, 'retry');
    assert.equal(dependency.state(), 'open');
    // Open: sends fail at once without reaching the provider, and batches are told to wait.
    const refused = await guarded.send(target, message);
    assert.deepEqual([refused.outcome, calls], ['retry', 3]);
    assert.equal((refused as { retryAfterMs?: number }).retryAfterMs, 150);
    const wait = guarded.unavailableFor!();
    assert.ok(wait !== undefined && wait > 0 && wait <= 150, `wait ${wait}`);

    // After the delay one batch may try: its call half-opens the circuit, a success closes it.
    await new Promise((r) => setTimeout(r, 170));
    assert.equal(guarded.unavailableFor!(), undefined);
    answer = { outcome: 'sent' };
    assert.equal((await guarded.send(target, message)).outcome, 'sent');
    assert.equal(dependency.state(), 'closed');
    assert.equal(guarded.unavailableFor!(), undefined);
  });

  it('passes outcomes that are about one message or token through without counting them against the provider', async () => {
    const answers: SendResult[] = [{ outcome: 'invalid_token', reason: 'Unregistered' }, { outcome: 'rejected', reason: 'PayloadTooLarge' }];
    const provider: PushProvider = { platform: 'apns', send: async () => answers[0]!, close: async () => {} };
    const dependency = createDependencies(new Registry())({ name: 'push_test2', concurrency: 10, queue: 10, failuresToOpen: 2, halfOpenAfterMs: 1000, unavailable: (why) => new Error(why) });
    const guarded = guardProvider(provider, { dependency, perSecond: 1000, openRetryMs: 1000 });
    for (let i = 0; i < 5; i++) assert.equal((await guarded.send(target, message)).outcome, 'invalid_token');
    answers.shift();
    for (let i = 0; i < 5; i++) assert.equal((await guarded.send(target, message)).outcome, 'rejected');
    assert.equal(dependency.state(), 'closed');
  });

  it('rate gate: sends wait for a token rather than fail', async () => {
    const gate = rateGate(20); // a burst of 20, then one every 50 ms
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 25 }, () => gate.take()));
    const took = performance.now() - t0;
    assert.ok(took >= 200 && took < 1000, `25 takes at 20/s took ${took.toFixed(0)} ms`);
  });
});
