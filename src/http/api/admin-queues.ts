import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { JobQueues } from '../../jobs/port.js';
import { LeveeError } from '../../lib/errors.js';
import { requirePrincipal } from '../principal.js';
import { problems } from '../schemas.js';

// Operators' view of the job queues: depth per queue, dead letters, and re-driving them. Admins only.

const tags = ['admin'];
const secured = [{ bearer: [] }];
const QueueParams = Type.Object({ queue: Type.String({ maxLength: 64 }) });
const JobParams = Type.Object({ queue: Type.String({ maxLength: 64 }), id: Type.String({ maxLength: 200 }) });
const Page = Type.Object({
  offset: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000, default: 0 })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
});
const Stats = Type.Object({
  queue: Type.String(),
  engine: Type.String(),
  waiting: Type.Integer(),
  delayed: Type.Integer(),
  active: Type.Integer(),
  deadLetters: Type.Integer(),
  oldestWaitingMs: Type.Number(),
});
const DeadLetter = Type.Object({
  id: Type.String(),
  name: Type.String(),
  payload: Type.Unknown(),
  attempts: Type.Integer(),
  reason: Type.String(),
  enqueuedAt: Type.String({ format: 'date-time' }),
  failedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});

const requireAdmin = async (req: FastifyRequest) => {
  if (requirePrincipal(req).role !== 'admin') throw new LeveeError('forbidden', 'Only admins may manage job queues');
};

export const adminQueueRoutes = (queues: JobQueues): FastifyPluginAsyncTypebox => async (app) => {
  app.addHook('preHandler', requireAdmin);
  const known = (queue: string) => {
    if (!queues.specs.has(queue)) throw new LeveeError('unknown_queue', `No queue named ${JSON.stringify(queue)}; queues: ${[...queues.specs.keys()].join(', ')}`);
    return queue;
  };

  app.get('/', { schema: { tags, security: secured, summary: 'Every job queue with its depth and dead letters', response: { 200: Type.Object({ queues: Type.Array(Stats) }), ...problems(401, 403) } } }, async () => ({
    queues: await Promise.all([...queues.specs.keys()].map(async (queue) => ({ queue, engine: queues.engine, ...(await queues.stats(queue)) }))),
  }));

  app.get('/:queue/dead-letters', {
    schema: { tags, security: secured, summary: 'Jobs that used up their attempts, newest first', params: QueueParams, querystring: Page, response: { 200: Type.Object({ deadLetters: Type.Array(DeadLetter) }), ...problems(400, 401, 403, 404) } },
  }, async (req) => {
    const list = await queues.deadLetters(known(req.params.queue), req.query.offset ?? 0, req.query.limit ?? 50);
    return { deadLetters: list.map((d) => ({ ...d, enqueuedAt: d.enqueuedAt.toISOString(), failedAt: d.failedAt?.toISOString() ?? null })) };
  });

  app.post('/:queue/dead-letters/:id/redrive', {
    schema: { tags, security: secured, summary: 'Put a dead-lettered job back on its queue with fresh attempts', params: JobParams, response: { 202: Type.Object({ redriven: Type.String() }), ...problems(401, 403, 404) } },
  }, async (req, reply) => {
    if (!(await queues.redrive(known(req.params.queue), req.params.id))) throw new LeveeError('job_not_found', `No dead-lettered job ${JSON.stringify(req.params.id)} on ${req.params.queue}`);
    return reply.code(202).send({ redriven: req.params.id });
  });
};
