import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { AuthService, Device } from '../../auth/service.js';
import { PASSWORD_MAX } from '../../auth/service.js';
import { UUID } from '../../lib/ids.js';
import { LeveeError } from '../../lib/errors.js';
import { requirePrincipal } from '../principal.js';
import { DeviceName, problems, SignedIn } from '../schemas.js';

const Credentials = Type.Object({
  email: Type.String({ maxLength: 254 }),
  password: Type.String({ maxLength: PASSWORD_MAX }),
  deviceName: DeviceName,
});
const IdToken = Type.Object({ idToken: Type.String({ maxLength: 8192 }), nonce: Type.Optional(Type.String({ maxLength: 256 })), deviceName: DeviceName });
const Session = Type.Object({
  id: Type.String(),
  deviceName: Type.Union([Type.String(), Type.Null()]),
  userAgent: Type.Union([Type.String(), Type.Null()]),
  ip: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String({ format: 'date-time' }),
  lastUsedAt: Type.String({ format: 'date-time' }),
  current: Type.Boolean(),
});
const tags = ['auth'];
const secured = [{ bearer: [] }];

export const authRoutes = (auth: AuthService): FastifyPluginAsyncTypebox => async (app) => {
  const device = (req: { headers: Record<string, unknown>; ip: string }, deviceName?: string): Device => ({
    deviceName,
    userAgent: typeof req.headers['user-agent'] === 'string' ? req.headers['user-agent'] : undefined,
    ip: req.ip,
  });

  app.post('/signup', {
    config: { rateLimit: { name: 'signup', by: 'ip' }, bulkhead: auth.passwordHashing },
    schema: { tags, summary: 'Create an account with email and password (upgrades the caller if it is anonymous)', body: Credentials, response: { 201: SignedIn, ...problems(400, 409, 422, 429) } },
  }, async (req, reply) => {
    const { email, password, deviceName } = req.body;
    return reply.code(201).send(await auth.signUp({ email, password, ...device(req, deviceName) }, req.principal));
  });

  app.post('/signin', { config: { ignoreAuthorization: true, bulkhead: auth.passwordHashing }, schema: { tags, summary: 'Sign in with email and password', body: Credentials, response: { 200: SignedIn, ...problems(400, 401, 429) } } }, async (req) => {
    const { email, password, deviceName } = req.body;
    return auth.signIn({ email, password, ...device(req, deviceName) });
  });

  app.post('/anonymous', {
    config: { ignoreAuthorization: true, rateLimit: { name: 'anonymous', by: 'ip' } },
    schema: { tags, summary: "An anonymous account for a device's first launch", body: Type.Optional(Type.Object({ deviceName: DeviceName })), response: { 201: SignedIn, ...problems(429) } },
    // The body is optional: a bodyless POST is validated as an empty object, not refused.
    preValidation: async (req) => {
      req.body ??= {};
    },
  }, async (req, reply) => reply.code(201).send(await auth.anonymous(device(req, req.body?.deviceName))));

  app.post('/refresh', {
    config: { ignoreAuthorization: true },
    schema: { tags, summary: 'Exchange a refresh token for new tokens (each refresh token works once)', body: Type.Object({ refreshToken: Type.String({ maxLength: 256 }) }), response: { 200: SignedIn, ...problems(400, 401) } },
  }, async (req) => auth.refresh(req.body.refreshToken));

  app.post('/signout', { schema: { tags, security: secured, summary: 'End the current device session', response: { 204: Type.Null(), ...problems(401) } } }, async (req, reply) => {
    await auth.signOut(requirePrincipal(req));
    return reply.code(204).send(null);
  });

  app.get('/me', {
    schema: {
      tags, security: secured, summary: 'The signed-in user',
      response: { 200: Type.Object({ id: Type.String(), email: Type.Union([Type.String(), Type.Null()]), isAnonymous: Type.Boolean(), role: Type.String(), createdAt: Type.String(), providers: Type.Array(Type.String()) }), ...problems(401) },
    },
  }, async (req) => auth.me(requirePrincipal(req)));

  app.get('/sessions', { schema: { tags, security: secured, summary: "The user's signed-in devices", response: { 200: Type.Object({ items: Type.Array(Session) }), ...problems(401) } } }, async (req) => ({
    items: await auth.listSessions(requirePrincipal(req)),
  }));

  app.delete('/sessions', {
    schema: { tags, security: secured, summary: 'Sign out every other device', response: { 200: Type.Object({ revoked: Type.Integer() }), ...problems(401) } },
  }, async (req) => ({ revoked: await auth.revokeOtherSessions(requirePrincipal(req)) }));

  app.delete('/sessions/:id', {
    schema: { tags, security: secured, summary: 'Sign out one device', params: Type.Object({ id: Type.String({ maxLength: 64 }) }), response: { 204: Type.Null(), ...problems(401, 404) } },
  }, async (req, reply) => {
    const p = requirePrincipal(req);
    if (!UUID.test(req.params.id)) throw new LeveeError('session_not_found');
    await auth.revokeSession(p, req.params.id);
    return reply.code(204).send(null);
  });

  app.post('/password', {
    config: { rateLimit: { name: 'password_change', by: 'user' }, bulkhead: auth.passwordHashing },
    schema: {
      tags, security: secured, summary: 'Change the password; signs out every other device',
      body: Type.Object({ currentPassword: Type.String({ maxLength: PASSWORD_MAX }), newPassword: Type.String({ maxLength: PASSWORD_MAX }) }),
      response: { 204: Type.Null(), ...problems(400, 401, 422, 429) },
    },
  }, async (req, reply) => {
    await auth.changePassword(requirePrincipal(req), req.body.currentPassword, req.body.newPassword);
    return reply.code(204).send(null);
  });

  for (const provider of ['apple', 'google'] as const) {
    app.post(`/${provider}`, {
      schema: { tags, summary: `Sign in with ${provider === 'apple' ? 'Apple' : 'Google'} (an ID token from the platform SDK); links to the caller if anonymous`, body: IdToken, response: { 200: SignedIn, ...problems(400, 401, 501, 503) } },
    }, async (req) => auth.signInWithProvider(provider, { idToken: req.body.idToken, nonce: req.body.nonce, ...device(req, req.body.deviceName) }, req.principal));
  }
};
