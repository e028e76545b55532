// The error catalogue: every error a client can see, with its stable `code`, HTTP status and title.
// Services throw `LeveeError`s made by the factories below; http/problem.ts turns them into
// RFC 9457 problem+json in exactly one place. docs/errors.md is checked against this list by a test.

export interface ErrorSpec {
  status: number;
  title: string;
  /** Whether a client may retry the same request later (exposed as `retryable`). */
  retryable?: boolean;
}

export const ERRORS = {
  bad_request: { status: 400, title: 'The request is malformed' },
  invalid_json: { status: 400, title: 'The body is not valid JSON' },
  validation_failed: { status: 400, title: 'The request does not match its schema' },
  invalid_filter: { status: 400, title: 'A filter or sort names an undeclared field or has a bad value' },
  invalid_cursor: { status: 400, title: 'The pagination cursor is malformed' },
  invalid_device: { status: 400, title: 'The device token or subscription is not valid for its platform' },
  unknown_topic: { status: 400, title: 'A push topic is not one of the configured topics' },
  invalid_push: { status: 400, title: 'The push is malformed' },
  too_many_subscriptions: { status: 400, title: 'A realtime connection asked for more subscriptions than it may hold' },
  payload_too_large_for_provider: { status: 413, title: 'The notification is larger than the push providers accept' },
  unauthenticated: { status: 401, title: 'Authentication is required' },
  invalid_token: { status: 401, title: 'The access token is invalid or expired' },
  invalid_credentials: { status: 401, title: 'Email or password is wrong' },
  invalid_refresh_token: { status: 401, title: 'The refresh token is invalid, expired or revoked' },
  refresh_token_reused: { status: 401, title: 'The refresh token was already used; the session has been revoked' },
  invalid_id_token: { status: 401, title: 'The identity provider token could not be verified' },
  invalid_signed_url: { status: 403, title: 'The file URL is not validly signed' },
  signed_url_expired: { status: 403, title: 'The signed file URL has expired' },
  forbidden: { status: 403, title: 'You may not do this' },
  not_found: { status: 404, title: 'Not found' },
  unknown_collection: { status: 404, title: 'No such collection' },
  document_not_found: { status: 404, title: 'No such document' },
  session_not_found: { status: 404, title: 'No such session' },
  unknown_queue: { status: 404, title: 'No such job queue' },
  device_not_found: { status: 404, title: 'No such device' },
  push_not_found: { status: 404, title: 'No such push' },
  job_not_found: { status: 404, title: 'No such dead-lettered job' },
  file_not_found: { status: 404, title: 'No such file or upload' },
  unknown_bucket: { status: 404, title: 'No such file bucket' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  document_exists: { status: 409, title: 'A document with this id already exists' },
  sync_conflict: { status: 409, title: 'Documents changed on the server since your last pull: pull, then push again' },
  email_taken: { status: 409, title: 'An account with this email already exists' },
  already_upgraded: { status: 409, title: 'This account already has an email and password' },
  idempotency_in_progress: { status: 409, title: 'A request with this Idempotency-Key is still in progress', retryable: true },
  upload_offset_mismatch: { status: 409, title: 'The upload offset does not match the bytes received so far' },
  upload_incomplete: { status: 409, title: 'The upload has not received all its bytes yet' },
  file_not_ready: { status: 409, title: 'The file is still being processed', retryable: true },
  version_conflict: { status: 412, title: 'The document changed since you read it (If-Match failed)' },
  cursor_expired: { status: 410, title: 'The sync cursor is older than the change log keeps deletions: resync from scratch (no cursor)' },
  payload_too_large: { status: 413, title: 'The body is too large' },
  file_too_large: { status: 413, title: 'The file is larger than its bucket allows' },
  quota_exceeded: { status: 413, title: 'The file would take you over your storage quota' },
  unsupported_media_type: { status: 415, title: 'Unsupported Content-Type' },
  range_not_satisfiable: { status: 416, title: 'The requested byte range is outside the file' },
  unsupported_file_type: { status: 415, title: 'This type of file is not accepted in this bucket' },
  file_type_mismatch: { status: 415, title: 'The file’s bytes are not of the type it was declared as' },
  idempotency_key_reused: { status: 422, title: 'This Idempotency-Key was used with a different request' },
  document_invalid: { status: 422, title: 'The document does not match the collection schema' },
  weak_password: { status: 422, title: 'The password is too weak' },
  image_too_large: { status: 422, title: 'The image has more pixels than the server processes' },
  invalid_image: { status: 422, title: 'The image is corrupt, truncated or in a format that cannot be processed' },
  checksum_mismatch: { status: 460, title: 'The bytes received do not match their checksum' },
  rate_limited: { status: 429, title: 'Too many requests: a rate limit was reached', retryable: true },
  too_many_sign_in_attempts: { status: 429, title: 'Too many failed sign-ins: try again later', retryable: true },
  provider_not_configured: { status: 501, title: 'This sign-in provider is not configured' },
  unavailable: { status: 503, title: 'The service is temporarily unavailable', retryable: true },
  database_unavailable: { status: 503, title: 'The database is unavailable or overloaded', retryable: true },
  overloaded: { status: 503, title: 'The server is overloaded; retry after the delay in Retry-After', retryable: true },
  queue_full: { status: 503, title: 'A job queue is at its bound; retry after the delay in Retry-After', retryable: true },
  storage_unavailable: { status: 503, title: 'File storage is unavailable or overloaded', retryable: true },
  draining: { status: 503, title: 'The server is shutting down', retryable: true },
  timeout: { status: 504, title: 'The request took too long', retryable: true },
  internal: { status: 500, title: 'Internal error', retryable: true },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export class LeveeError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly retryable: boolean;
  /** Extra problem+json members (e.g. `errors` for validation, `currentVersion` for conflicts). */
  readonly extra: Record<string, unknown> | undefined;
  /** Seconds, sent as Retry-After on retryable errors. */
  readonly retryAfter: number | undefined;

  constructor(code: ErrorCode, detail?: string, opts: { extra?: Record<string, unknown>; retryAfter?: number; cause?: unknown } = {}) {
    const spec: ErrorSpec = ERRORS[code];
    super(detail ?? spec.title, { cause: opts.cause });
    this.name = 'LeveeError';
    this.code = code;
    this.status = spec.status;
    this.retryable = spec.retryable ?? false;
    this.extra = opts.extra;
    this.retryAfter = opts.retryAfter ?? (this.retryable ? 1 : undefined);
  }
}

export const fail = (code: ErrorCode, detail?: string, opts?: ConstructorParameters<typeof LeveeError>[2]): never => {
  throw new LeveeError(code, detail, opts);
};

export const isLeveeError = (e: unknown): e is LeveeError => e instanceof LeveeError;
