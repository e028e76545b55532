import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Mutation, SyncService } from '../../sync/service.js';
import { problems } from '../schemas.js';

// Offline sync: pull changes since a cursor, push offline mutations (docs/sync.md).

const tags = ['sync'];

const Change = Type.Object({
  collection: Type.String(),
  id: Type.String({ format: 'uuid' }),
  op: Type.Union([Type.Literal('create'), Type.Literal('update'), Type.Literal('delete')]),
  version: Type.Integer(),
  ownerId: Type.Union([Type.String(), Type.Null()]),
  updatedAt: Type.String({ format: 'date-time' }),
  data: Type.Optional(Type.Object({}, { additionalProperties: true })),
});

const PullQuery = Type.Object(
  {
    cursor: Type.Optional(Type.String({ maxLength: 200, description: 'The cursor of the previous pull; absent to start from scratch' })),
    collections: Type.Optional(Type.String({ maxLength: 2000, description: 'Comma-separated collection names; default: every collection you may read' })),
    limit: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,5}$', description: 'Most changes in this page, 1 or more (capped by LEVEE_SYNC_PULL_LIMIT)' })),
  },
  { additionalProperties: false },
);

const Mutation = Type.Object(
  {
    id: Type.String({ minLength: 1, maxLength: 128, description: "The client's id for this mutation: a retried push applies it at most once" }),
    collection: Type.String({ maxLength: 64 }),
    op: Type.Union([Type.Literal('create'), Type.Literal('update'), Type.Literal('delete')]),
    docId: Type.String({ maxLength: 64, description: 'The document id (a UUID the client chose when creating offline)' }),
    baseVersion: Type.Optional(Type.Integer({ minimum: 1, maximum: 2_147_483_647, description: 'The version the change was based on (update, delete)' })),
    data: Type.Optional(Type.Object({}, { additionalProperties: true, description: 'create: the document; update: the changed fields (JSON Merge Patch)' })),
  },
  { additionalProperties: false },
);

const MutationResult = Type.Object(
  {
    id: Type.String(),
    status: Type.Union([Type.Literal('applied'), Type.Literal('conflict'), Type.Literal('rejected')]),
    version: Type.Optional(Type.Union([Type.Integer(), Type.Null()])),
    merged: Type.Optional(Type.Boolean({ description: 'last-write-wins merged this change over a newer server version' })),
    replayed: Type.Optional(Type.Boolean({ description: 'Already applied by an earlier push: this is its answer again' })),
    current: Type.Optional(Type.Union([Type.Object({}, { additionalProperties: true }), Type.Null()], { description: "conflict: the server's current document (null: deleted)" })),
    code: Type.Optional(Type.String()),
    detail: Type.Optional(Type.String()),
  },
);

export const syncRoutes = (sync: SyncService): FastifyPluginAsyncTypebox => async (app) => {
  app.get('/pull', {
    // A resuming app's catch-up: not the sheddable "later page" its cursor would otherwise suggest.
    config: { priority: 'default' },
    schema: {
      tags,
      summary: 'Changes since a cursor, in order (each collection’s read rule applies)',
      querystring: PullQuery,
      response: { 200: Type.Object({ changes: Type.Array(Change), cursor: Type.String(), hasMore: Type.Boolean() }), ...problems(400, 401, 403, 404, 410) },
    },
  }, async (req) => {
    const names = req.query.collections?.split(',').map((s) => s.trim()).filter(Boolean);
    return sync.pull(req.principal, { cursor: req.query.cursor, collections: names, limit: req.query.limit === undefined ? undefined : Number(req.query.limit) });
  });

  app.post('/push', {
    schema: {
      tags,
      summary: 'Apply offline mutations in order; each is answered applied, conflict or rejected',
      body: Type.Object({ mutations: Type.Array(Mutation, { maxItems: sync.limits.pushMax }) }, { additionalProperties: false }),
      response: { 200: Type.Object({ results: Type.Array(MutationResult) }), ...problems(400, 401, 413) },
    },
  }, async (req) => sync.push(req.principal, req.body.mutations as Mutation[]));

  await app.register(watermelonRoutes(sync), { prefix: '/watermelon' });
};

// WatermelonDB's synchronize(): pullChanges and pushChanges map to these two (README: the glue).
const WatermelonTable = Type.Object(
  {
    created: Type.Array(Type.Object({ id: Type.String({ maxLength: 64 }) }, { additionalProperties: true })),
    updated: Type.Array(Type.Object({ id: Type.String({ maxLength: 64 }) }, { additionalProperties: true })),
    deleted: Type.Array(Type.String({ maxLength: 64 })),
  },
  { additionalProperties: false },
);
const LastPulledAt = Type.Union([Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }), Type.Null()]);

export const watermelonRoutes = (sync: SyncService): FastifyPluginAsyncTypebox => async (app) => {
  const tags = ['sync'];
  app.get('/', {
    config: { priority: 'default' },
    schema: {
      tags,
      summary: 'WatermelonDB pullChanges: {changes: {table: {created, updated, deleted}}, timestamp}',
      querystring: Type.Object(
        {
          lastPulledAt: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,15}$', description: 'The timestamp of the previous pull; absent on the first sync' })),
          collections: Type.Optional(Type.String({ maxLength: 2000 })),
        },
        { additionalProperties: true },
      ),
      response: { 200: Type.Object({ changes: Type.Record(Type.String(), WatermelonTable), timestamp: Type.Integer(), hasMore: Type.Boolean() }), ...problems(400, 401, 403, 404, 410) },
    },
  }, async (req) =>
    sync.watermelon.pull(req.principal, {
      lastPulledAt: req.query.lastPulledAt === undefined ? null : Number(req.query.lastPulledAt),
      collections: req.query.collections?.split(',').map((s) => s.trim()).filter(Boolean),
    }));

  app.post('/', {
    schema: {
      tags,
      summary: 'WatermelonDB pushChanges: applied all at once, or 409 sync_conflict (pull, then push again)',
      body: Type.Object({ changes: Type.Record(Type.String({ maxLength: 64 }), WatermelonTable), lastPulledAt: LastPulledAt }, { additionalProperties: false }),
      response: { 204: Type.Null(), ...problems(400, 401, 403, 404, 409, 413, 422) },
    },
  }, async (req, reply) => {
    await sync.watermelon.push(req.principal, req.body as Parameters<SyncService['watermelon']['push']>[1]);
    return reply.code(204).send(null);
  });
};
