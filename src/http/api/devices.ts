import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { DeviceService } from '../../push/devices.js';
import { MAX_TOPICS_PER_DEVICE } from '../../push/devices.js';
import { requirePrincipal } from '../principal.js';
import { problems } from '../schemas.js';

const tags = ['push'];
const secured = [{ bearer: [] }];

const Subscription = Type.Object(
  {
    endpoint: Type.String({ maxLength: 2048 }),
    keys: Type.Object({ p256dh: Type.String({ maxLength: 128 }), auth: Type.String({ maxLength: 64 }) }, { additionalProperties: false }),
    expirationTime: Type.Optional(Type.Union([Type.Number(), Type.Null()])),
  },
  { additionalProperties: false, description: 'A Web Push subscription, as PushSubscription.toJSON() gives it' },
);
const Register = Type.Object(
  {
    platform: Type.Union([Type.Literal('apns'), Type.Literal('fcm'), Type.Literal('webpush')]),
    token: Type.Optional(Type.String({ maxLength: 4096, description: 'APNs device token (hex) or FCM registration token' })),
    subscription: Type.Optional(Subscription),
    appVersion: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
    locale: Type.Optional(Type.String({ minLength: 2, maxLength: 35 })),
    topics: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), { maxItems: MAX_TOPICS_PER_DEVICE })),
  },
  { additionalProperties: false },
);
const Device = Type.Object({
  id: Type.String({ format: 'uuid' }),
  platform: Type.String(),
  appVersion: Type.Union([Type.String(), Type.Null()]),
  locale: Type.Union([Type.String(), Type.Null()]),
  topics: Type.Array(Type.String()),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
});

export const deviceRoutes = (devices: DeviceService): FastifyPluginAsyncTypebox => async (app) => {
  app.post('/', {
    config: { priority: 'critical' },
    schema: { tags, security: secured, summary: 'Register this device for push notifications (again: same token, same device, updated)', body: Register, response: { 200: Device, 201: Device, ...problems(400, 401) } },
  }, async (req, reply) => {
    const { device, created } = await devices.register(requirePrincipal(req).userId, req.body);
    return reply.code(created ? 201 : 200).send(device);
  });

  app.get('/', { schema: { tags, security: secured, summary: "The caller's devices", response: { 200: Type.Object({ devices: Type.Array(Device) }), ...problems(401) } } }, async (req) => ({
    devices: await devices.list(requirePrincipal(req).userId),
  }));

  app.delete('/:id', {
    schema: { tags, security: secured, summary: 'Unregister a device', params: Type.Object({ id: Type.String({ format: 'uuid' }) }), response: { 204: Type.Null(), ...problems(400, 401, 404) } },
  }, async (req, reply) => {
    await devices.unregister(requirePrincipal(req).userId, req.params.id);
    return reply.code(204).send(null);
  });
};
