import { Type, type TSchema } from 'typebox';

// Shared request/response schemas. They validate input, speed up serialisation, and are the
// source of the OpenAPI document served at /openapi.json.

export const Problem = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    code: Type.String({ description: 'Stable machine-readable error code (docs/errors.md)' }),
    detail: Type.Optional(Type.String()),
    instance: Type.Optional(Type.String()),
    requestId: Type.String(),
    retryable: Type.Boolean({ description: 'Whether the same request may succeed if retried later (honour Retry-After)' }),
  },
  { additionalProperties: true, $id: 'Problem' },
);

/** Error responses of a route, documented as problem+json. */
export const problems = (...statuses: number[]): Record<number, { description: string; content: Record<string, { schema: TSchema }> }> =>
  Object.fromEntries(statuses.map((s) => [s, { description: 'Problem', content: { 'application/problem+json': { schema: Type.Ref('Problem') } } }]));

export const User = Type.Object({
  id: Type.String({ format: 'uuid' }),
  email: Type.Union([Type.String(), Type.Null()]),
  isAnonymous: Type.Boolean(),
  role: Type.Union([Type.Literal('user'), Type.Literal('admin')]),
  createdAt: Type.String({ format: 'date-time' }),
});

export const SignedIn = Type.Object({
  user: User,
  accessToken: Type.String(),
  refreshToken: Type.String(),
  expiresIn: Type.Integer({ description: 'Seconds until the access token expires' }),
});

export const Document = Type.Object({
  id: Type.String({ format: 'uuid' }),
  ownerId: Type.Union([Type.String(), Type.Null()]),
  version: Type.Integer(),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
  data: Type.Object({}, { additionalProperties: true }),
});

export const DeviceName = Type.Optional(Type.String({ maxLength: 100, description: 'Shown in the session list, e.g. "Ada’s iPhone"' }));
