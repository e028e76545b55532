import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, makeAdmin, signUp, type TestApp } from '../support/app.js';
import { engines } from '../support/engines.js';

// The operators' API over the job queues: depth per queue, dead letters, re-driving them.

for (const engine of await engines()) {
  describe(`admin API for job queues on ${engine.name}`, { skip: engine.skip }, () => {
    let t: TestApp;
    let admin: string;
    let user: string;
    before(async () => {
      t = await createTestApp(engine, { queues: true });
      admin = (await makeAdmin(t)).accessToken;
      user = (await signUp(t)).accessToken;
    });
    after(() => t.close());

    it('lists, and re-drives, a job that used up its attempts', async () => {
      const q = t.queues!;
      const id = await q.enqueue('maintenance', 'broken', { why: 'test' }, { attempts: 1 });
      let healed = false;
      let ranAfterRedrive = false;
      const consumer = q.consume('maintenance', {
        broken: async () => {
          if (!healed) throw new Error('cannot purge: disk on fire');
          ranAfterRedrive = true;
        },
      });
      try {
        let dead: { id: string; name: string; payload: unknown; attempts: number; reason: string; failedAt: string | null }[] = [];
        for (let i = 0; i < 200 && dead.length === 0; i++) {
          await new Promise((r) => setTimeout(r, 25));
          const res = await t.call('GET', '/v1/admin/queues/maintenance/dead-letters', { token: admin });
          assert.equal(res.statusCode, 200);
          dead = res.json().deadLetters;
        }
        assert.equal(dead.length, 1);
        assert.deepEqual([dead[0]!.id, dead[0]!.name, dead[0]!.payload, dead[0]!.attempts, dead[0]!.reason], [id, 'broken', { why: 'test' }, 1, 'cannot purge: disk on fire']);
        assert.ok(dead[0]!.failedAt && !Number.isNaN(Date.parse(dead[0]!.failedAt)));

        const listed = await t.call('GET', '/v1/admin/queues', { token: admin });
        assert.equal(listed.statusCode, 200);
        const maintenance = listed.json().queues.find((x: { queue: string }) => x.queue === 'maintenance');
        assert.deepEqual([maintenance.engine, maintenance.deadLetters], [engine.name, 1]);

        healed = true;
        const redrive = await t.call('POST', `/v1/admin/queues/maintenance/dead-letters/${id}/redrive`, { token: admin });
        assert.equal(redrive.statusCode, 202);
        for (let i = 0; i < 200 && !ranAfterRedrive; i++) await new Promise((r) => setTimeout(r, 25));
        assert.ok(ranAfterRedrive, 'the re-driven job ran');
        const again = await t.call('POST', `/v1/admin/queues/maintenance/dead-letters/${id}/redrive`, { token: admin });
        assert.equal(again.statusCode, 404);
        assert.equal(again.json().code, 'job_not_found');
      } finally {
        await consumer.close();
      }
    });

    it('is for admins only, and names unknown queues', async () => {
      for (const [method, url] of [['GET', '/v1/admin/queues'], ['GET', '/v1/admin/queues/maintenance/dead-letters'], ['POST', '/v1/admin/queues/maintenance/dead-letters/1/redrive']] as const) {
        const anonymous = await t.call(method, url);
        assert.equal(anonymous.statusCode, 401, `${method} ${url}`);
        const plain = await t.call(method, url, { token: user });
        assert.equal(plain.statusCode, 403, `${method} ${url}`);
        assert.equal(plain.json().code, 'forbidden');
      }
      const unknown = await t.call('GET', '/v1/admin/queues/nope/dead-letters', { token: admin });
      assert.deepEqual([unknown.statusCode, unknown.json().code], [404, 'unknown_queue']);
      const badPage = await t.call('GET', '/v1/admin/queues/maintenance/dead-letters?limit=100000', { token: admin });
      assert.deepEqual([badPage.statusCode, badPage.json().code], [400, 'validation_failed']);
    });
  });
}
