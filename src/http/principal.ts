import type { FastifyRequest } from 'fastify';
import type { AccessTokens, Principal } from '../auth/access-tokens.js';
import { LeveeError } from '../lib/errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | undefined;
  }
  interface FastifyContextConfig {
    /** Routes that get a session without one (sign-in, refresh): a stale Authorization header is ignored. */
    ignoreAuthorization?: boolean;
  }
}

/**
 * onRequest hook: a present but bad Authorization header is a 401 on every route, public or not —
 * except the routes that exist to get new tokens, where mobile HTTP clients often still attach the
 * expired one (an app reopening after hours must be able to refresh).
 */
export const authenticate = (tokens: AccessTokens) => async (req: FastifyRequest) => {
  const header = req.headers.authorization;
  if (header === undefined || req.routeOptions.config.ignoreAuthorization) return;
  const m = /^Bearer ([A-Za-z0-9_.-]+)$/i.exec(header);
  if (!m) throw new LeveeError('invalid_token', 'Authorization must be "Bearer <access token>"');
  req.principal = await tokens.verify(m[1]!);
};

export function requirePrincipal(req: FastifyRequest): Principal {
  if (!req.principal) throw new LeveeError('unauthenticated');
  return req.principal;
}
