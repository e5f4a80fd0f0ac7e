/**
 * Errors raised by the index layer. Every error is an {@link IndexError}; catch the base class to
 * handle all of them, or a named subclass for one failure. The original error, where there is one,
 * is kept as `cause`.
 */

/** Base class of every error raised by `@cohort/index`. */
export class IndexError extends Error {
  /**
   * @param message what went wrong and, where possible, what the caller can do about it
   * @param options `cause`: the underlying error
   */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * A conditional write lost: a create-only put (`ifNoneMatch: '*'`) found the key already present,
 * or a compare-and-swap put (`ifMatch`) found a different etag (someone else wrote first, or the
 * object is gone). The caller should re-read and retry (rebase), never overwrite.
 */
export class PreconditionFailedError extends IndexError {
  /**
   * @param key the object key the write was aimed at
   * @param message what condition failed
   * @param options `cause`: the underlying error
   */
  constructor(
    readonly key: string,
    message?: string,
    options?: { cause?: unknown },
  ) {
    super(message ?? `conditional write to '${key}' lost: the precondition no longer holds`, options);
  }
}

/** The object asked for does not exist in the store. */
export class ObjectNotFoundError extends IndexError {
  /**
   * @param key the missing object's key
   * @param options `cause`: the underlying error
   */
  constructor(
    readonly key: string,
    options?: { cause?: unknown },
  ) {
    super(`object '${key}' not found`, options);
  }
}

/**
 * The store failed for a reason other than a missing object or a lost condition: I/O error,
 * network error, access denied, retries exhausted, bad store URI. The underlying error is `cause`.
 */
export class StoreError extends IndexError {}

/** A stored or downloaded file does not match its expected checksum or size. */
export class IntegrityError extends IndexError {}

/**
 * A commit cannot be rebased onto the newest manifest: it removes a segment that another commit
 * already removed (two compactions of the same segments), or its model fingerprint or dimensions
 * differ from the index's. The caller must plan again from the newest manifest.
 */
export class CommitConflictError extends IndexError {}

/** A commit kept losing the race for the next version after every retry. */
export class CommitRetriesExhaustedError extends IndexError {}
