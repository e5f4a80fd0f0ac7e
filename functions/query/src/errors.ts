/**
 * Errors of the query API. Every error is a {@link QueryError} carrying the HTTP status and a
 * stable machine-readable `code` that the router turns into a JSON body. Messages are written for
 * the caller and never hold note text, query text or a stack trace; the original error, where there
 * is one, is kept as `cause` (for the operator, never sent to the caller).
 */

/** One field-level problem of a rejected request. */
export interface FieldIssue {
  /** Dotted path of the field (`filters.dateFrom`), or `''` for the body itself. */
  readonly path: string;
  readonly message: string;
}

/** Base class of every error raised by `@cohort/query`. */
export class QueryError extends Error {
  /**
   * @param status HTTP status the router answers with
   * @param code stable error code in the JSON body (`invalid_request`, `not_found`, …)
   * @param message what went wrong, safe to show to the caller
   * @param options `cause`: the underlying error
   */
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** 400: the body is not JSON, or fails the schema; `issues` names every bad field. */
export class ValidationError extends QueryError {
  constructor(
    message: string,
    readonly issues: readonly FieldIssue[] = [],
    options?: { cause?: unknown },
  ) {
    super(400, 'invalid_request', message, options);
  }
}

/** 400: a `cursor` that is malformed or belongs to another query. */
export class InvalidCursorError extends QueryError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(400, 'invalid_cursor', message, options);
  }
}

/** 401: no caller identity (no IAM principal or JWT claims, or a missing or wrong bearer token). */
export class UnauthorizedError extends QueryError {
  constructor(message = 'authentication required') {
    super(401, 'unauthorized', message);
  }
}

/** 404: no such route or file. */
export class NotFoundError extends QueryError {
  constructor(message = 'not found') {
    super(404, 'not_found', message);
  }
}

/** 405: the path exists but not for this method; `allow` lists the methods it takes. */
export class MethodNotAllowedError extends QueryError {
  constructor(readonly allow: readonly string[]) {
    super(405, 'method_not_allowed', `use ${allow.join(' or ')}`);
  }
}

/** 409: the index moved to another manifest version between two pages of one paginated search. */
export class IndexChangedError extends QueryError {
  constructor(from: number, to: number) {
    super(
      409,
      'index_changed',
      `the index changed from manifest version ${from} to ${to} since the first page; run the search again without a cursor`,
    );
  }
}

/** 413: the request body is larger than the limit. */
export class PayloadTooLargeError extends QueryError {
  constructor(limitBytes: number) {
    super(413, 'payload_too_large', `the request body exceeds ${limitBytes} bytes`);
  }
}

/** 415: a body that is not `application/json`. */
export class UnsupportedMediaTypeError extends QueryError {
  constructor() {
    super(415, 'unsupported_media_type', 'send the body as application/json');
  }
}

/** 429: too many searches in flight; retry after a moment. */
export class TooManyRequestsError extends QueryError {
  constructor(readonly retryAfterSeconds = 1) {
    super(429, 'too_many_requests', 'too many searches in flight; retry shortly');
  }
}

/** 503: the index or the model cannot be used now; `reason` says why (no note text). */
export class IndexUnavailableError extends QueryError {
  constructor(
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(503, 'index_unavailable', `the index is unavailable: ${reason}`, options);
  }
}

/**
 * A configuration error (environment variables), raised when the container first loads; callers get
 * a 503 naming the variables (never their values), so the operator sees it in the logs and the API.
 */
export class ConfigError extends QueryError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(503, 'misconfigured', message, options);
  }
}

/** A shard function failed or answered something unreadable. */
export class ShardError extends QueryError {
  constructor(
    readonly shard: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(503, 'index_unavailable', `shard ${shard}: ${message}`, options);
  }
}
