import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ERRORS, LeveeError, type ErrorCode, type ErrorSpec } from '../lib/errors.js';

// The one place errors become responses: RFC 9457 problem+json with a stable `code`.
// LeveeErrors carry their own code; Fastify's own errors (validation, body parsing, limits) are
// mapped by kind; anything else is a bug: logged in full, answered with a bare 500.

export const PROBLEM_TYPE = 'application/problem+json';

export interface Problem {
  type: string;
  title: string;
  status: number;
  code: ErrorCode;
  detail?: string;
  instance?: string;
  requestId: string;
  retryable: boolean;
  [extra: string]: unknown;
}

const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'bad_request',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_json',
  FST_ERR_VALIDATION: 'validation_failed',
};

export function toLeveeError(err: unknown): LeveeError {
  if (err instanceof LeveeError) return err;
  const fe = err as FastifyError & { validation?: { instancePath?: string; message?: string; params?: unknown }[] };
  if (fe?.validation) {
    return new LeveeError('validation_failed', fe.message, {
      extra: { errors: fe.validation.slice(0, 20).map((v) => ({ path: v.instancePath || '/', message: v.message ?? 'is invalid' })) },
    });
  }
  const mapped = fe?.code ? FASTIFY_CODES[fe.code] : undefined;
  if (mapped) return new LeveeError(mapped, fe.message);
  if (fe instanceof SyntaxError || fe?.name === 'SyntaxError') return new LeveeError('invalid_json', fe.message);
  // A last line of defence: SQLSTATE class 22 ("data exception": a value the database cannot
  // store or compare) comes from request input that slipped past validation. Still the client's
  // input, so a 400 — logged by sendProblem, since validation should have caught it.
  if (isDataException(err)) return new LeveeError('bad_request', 'A value in the request cannot be stored or compared', { cause: err });
  // Other client errors raised by Fastify or its plugins keep their 4xx meaning.
  const status = fe?.statusCode;
  if (status && status >= 400 && status < 500) {
    const byStatus: Record<number, ErrorCode> = { 401: 'unauthenticated', 403: 'forbidden', 404: 'not_found', 405: 'method_not_allowed', 413: 'payload_too_large', 415: 'unsupported_media_type' };
    return new LeveeError(byStatus[status] ?? 'bad_request', fe.message);
  }
  if (status === 503) return new LeveeError('unavailable', fe.message);
  return new LeveeError('internal', undefined, { cause: err });
}

const isDataException = (err: unknown): boolean => {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^22[0-9A-Z]{3}$/.test(code);
};

/** The problem body for a catalogued error, without an Error behind it (for answers sent before Fastify). */
export function problemFor(code: ErrorCode, instance: string, requestId: string): Problem {
  const spec: ErrorSpec = ERRORS[code];
  return { type: `urn:levee:problem:${code}`, title: spec.title, status: spec.status, code, instance, requestId, retryable: spec.retryable ?? false };
}

export function problemOf(err: LeveeError, req: FastifyRequest): Problem {
  return {
    type: `urn:levee:problem:${err.code}`,
    title: ERRORS[err.code].title,
    status: err.status,
    code: err.code,
    ...(err.message !== ERRORS[err.code].title ? { detail: err.message } : {}),
    instance: req.url.split('?')[0],
    requestId: String(req.id),
    retryable: err.retryable,
    ...err.extra,
  };
}

const EXPECTED_UNDER_LOAD = new Set<ErrorCode>(['database_unavailable', 'draining', 'unavailable', 'overloaded', 'timeout']);

export function sendProblem(err: unknown, req: FastifyRequest, reply: FastifyReply): FastifyReply {
  const e = toLeveeError(err);
  // Overload answers (shed, timed out, a dependency down) are expected under load: a one-line warning,
  // never an error with a stack per request (that alone made each refusal cost ~0.3 ms of CPU).
  if (e.status >= 500 && !EXPECTED_UNDER_LOAD.has(e.code)) {
    req.log.error({ err: err instanceof LeveeError && err.cause ? err.cause : err }, 'request failed');
  } else if (e.status >= 500) {
    req.log.warn({ code: e.code, cause: (e.cause as Error | undefined)?.message }, 'dependency unavailable');
  } else if (isDataException(e.cause)) {
    req.log.warn({ err: e.cause }, 'input rejected by the database: validation missed it');
  }
  if (e.retryAfter !== undefined) reply.header('retry-after', String(e.retryAfter));
  return reply.code(e.status).type(PROBLEM_TYPE).send(problemOf(e, req));
}
