/**
 * Errors raised by the embed pipeline. Every error is an {@link EmbedError}; catch the base class to
 * handle all of them, or a named subclass for one failure. The original error, where there is one,
 * is kept as `cause`. Messages name objects by bucket and key, never by their contents.
 */

/** Base class of every error raised by `@cohort/embed`. */
export class EmbedError extends Error {
  /**
   * @param message what went wrong and, where possible, what the caller can do about it
   * @param options `cause`: the underlying error
   */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** An environment variable or option is missing or invalid. */
export class EmbedConfigError extends EmbedError {}

/** An SQS message does not hold an EventBridge S3 event this pipeline understands. */
export class EventParseError extends EmbedError {}

/** A job spec cannot be read, does not parse, or names no objects. */
export class JobSpecError extends EmbedError {}

/** Submitting a batch job failed (the submitter's error is the cause). */
export class JobSubmitError extends EmbedError {}

/** A source object could not be read for a reason that is not the data's fault (network, permissions). */
export class SourceReadError extends EmbedError {}

/** A part's commit could not land (conflicting model, retries exhausted). */
export class PartCommitError extends EmbedError {}
