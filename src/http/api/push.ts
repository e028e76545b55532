import { timingSafeEqual } from 'node:crypto';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { LeveeError } from '../../lib/errors.js';
import type { PushService } from '../../push/service.js';
import { problems } from '../schemas.js';

// Sending pushes is for the app's own backend (the server key) and for admins.

const tags = ['push'];
const secured: Record<string, string[]>[] = [{ bearer: [] }, { serverKey: [] }];

const Audience = Type.Union([
  Type.Object({ userIds: Type.Array(Type.String({ format: 'uuid' }), { minItems: 1, maxItems: 10_000 }) }, { additionalProperties: false }),
  Type.Object({ topics: Type.Array(Type.String({ maxLength: 64 }), { minItems: 1, maxItems: 20 }) }, { additionalProperties: false }),
  Type.Object({ all: Type.Literal(true) }, { additionalProperties: false }),
]);
const SendPush = Type.Object(
  {
    audience: Audience,
    title: Type.Optional(Type.String({ maxLength: 256 })),
    body: Type.Optional(Type.String({ maxLength: 4096 })),
    data: Type.Optional(Type.Record(Type.String({ maxLength: 64 }), Type.String({ maxLength: 4096 }), { maxProperties: 64 })),
    collapseId: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    ttlSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 28 * 86_400, description: 'How long providers may keep trying; default 1 day' })),
    priority: Type.Optional(Type.Union([Type.Literal('high'), Type.Literal('normal')])),
    sendAt: Type.Optional(Type.String({ format: 'date-time', description: 'Send later (at most 30 days ahead)' })),
  },
  { additionalProperties: false },
);
const Progress = Type.Object({
  id: Type.String({ format: 'uuid' }),
  state: Type.String({ description: 'scheduled, fanning_out, sending or done' }),
  targeted: Type.Integer(),
  sent: Type.Integer(),
  failed: Type.Integer(),
  pruned: Type.Integer({ description: 'Devices the provider disowned (uninstalled, token expired): removed' }),
  pending: Type.Integer(),
  createdAt: Type.String({ format: 'date-time' }),
  sendAt: Type.String({ format: 'date-time' }),
  expiresAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});

/** Who may send: the server key (X-Server-Key) or a signed-in admin. */
function sender(serverKey: string | undefined) {
  const expected = serverKey ? Buffer.from(serverKey) : undefined;
  return (req: FastifyRequest): string => {
    const given = req.headers['x-server-key'];
    if (given !== undefined) {
      const b = Buffer.from(String(given));
      if (expected && b.length === expected.length && timingSafeEqual(b, expected)) return 'server';
      throw new LeveeError('unauthenticated', 'The server key is wrong');
    }
    if (!req.principal) throw new LeveeError('unauthenticated', 'Send pushes with the server key (X-Server-Key) or as an admin');
    if (req.principal.role !== 'admin') throw new LeveeError('forbidden', 'Only the server key or an admin may send pushes');
    return `admin:${req.principal.userId}`;
  };
}

export const pushRoutes = (push: PushService, serverKey: string | undefined): FastifyPluginAsyncTypebox => async (app) => {
  const who = sender(serverKey);
  app.post('/', {
    config: { priority: 'critical' },
    schema: { tags, security: secured, summary: 'Send a push to users, topics or everyone; answers at once, fan-out is a job', body: SendPush, response: { 202: Progress, ...problems(400, 401, 403, 413, 503) } },
  }, async (req, reply) => {
    const createdBy = who(req);
    const { sendAt, ...rest } = req.body;
    return reply.code(202).send(await push.send({ ...rest, ...(sendAt ? { sendAt: new Date(sendAt) } : {}) }, createdBy));
  });

  app.get('/:id', {
    schema: { tags, security: secured, summary: "A push's live progress", params: Type.Object({ id: Type.String({ format: 'uuid' }) }), response: { 200: Progress, ...problems(400, 401, 403, 404) } },
  }, async (req) => {
    who(req);
    return push.progress(req.params.id);
  });
};
