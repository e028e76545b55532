import type { FastifyReply, FastifyRequest } from 'fastify';
import { LeveeError } from '../lib/errors.js';
import { ipKey, type BucketPolicy, type Decision, type RateLimits } from '../protection/rate-limits.js';

// The HTTP side of rate limits (the buckets are in protection/rate-limits.ts): two onRequest hooks
// on `/v1` — per IP before authentication (cheap, stops a flood before a token is verified), per
// user and per route after it — and the response headers of draft-ietf-httpapi-ratelimit-headers
// (structured-field form, drafts 08–11), on successes and refusals alike:
//   RateLimit-Policy: "ip";q=1200;w=60, "user";q=600;w=60
//   RateLimit: "ip";r=597;t=2, "user";r=299;t=1
// `q`/`w`: the refill rate (quota per window of 60 s); `r`: requests left now; `t`: seconds until
// the bucket is full again — or, when `r` is 0, until the next request is allowed.
// Ops and documentation routes live outside `/v1` and are never limited (nor is a route declared
// `unprotected`).

export interface RouteRateLimit {
  /** Names the limit: a configured route limit (settings), or a new one declared with `perMinute`. */
  name: string;
  /** Whose bucket: the client IP, or the signed-in user (callers without a token count by IP). */
  by: 'ip' | 'user';
  perMinute?: number;
  burst?: number;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A tighter limit for an expensive route, on top of the per-IP and per-user ones. */
    rateLimit?: RouteRateLimit;
  }
}

const seconds = (ms: number) => Math.max(1, Math.ceil(ms / 1000));

function appendHeaders(reply: FastifyReply, policy: BucketPolicy, d: Decision) {
  const add = (name: string, item: string) => {
    const prev = reply.getHeader(name);
    reply.header(name, prev ? `${String(prev)}, ${item}` : item);
  };
  add('ratelimit-policy', `"${policy.name}";q=${policy.perMinute};w=60`);
  add('ratelimit', `"${policy.name}";r=${d.remaining};t=${d.remaining === 0 ? seconds(d.nextTokenMs) : Math.ceil(d.resetMs / 1000)}`);
}

async function enforce(limits: RateLimits, reply: FastifyReply, policy: BucketPolicy, key: string): Promise<void> {
  const d = await limits.take(policy, key);
  appendHeaders(reply, policy, d);
  if (!d.allowed) {
    throw new LeveeError('rate_limited', `Rate limit "${policy.name}" reached: at most ${policy.perMinute} requests a minute (bursts of ${policy.burst})`, {
      retryAfter: seconds(d.nextTokenMs),
      extra: { limit: policy.name },
    });
  }
}

/** onRequest, before authentication: every `/v1` request takes a token from its IP's bucket. */
export const limitByIp = (limits: RateLimits) => async (req: FastifyRequest, reply: FastifyReply) => {
  if (req.routeOptions.config.unprotected) return;
  await enforce(limits, reply, limits.ip, ipKey(req.ip));
};

/** onRequest, after authentication: the user's bucket, then the route's own limit if it has one. */
export const limitByUserAndRoute = (limits: RateLimits) => async (req: FastifyRequest, reply: FastifyReply) => {
  if (req.routeOptions.config.unprotected) return;
  const who = (by: 'ip' | 'user') => (by === 'user' && req.principal ? `u:${req.principal.userId}` : `ip:${ipKey(req.ip)}`);
  await enforce(limits, reply, limits.user, who('user'));
  const route = req.routeOptions.config.rateLimit;
  if (route) await enforce(limits, reply, limits.route(route.name, route), who(route.by));
};
