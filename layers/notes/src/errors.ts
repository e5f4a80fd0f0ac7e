/**
 * Errors raised by the notes layer. Bad input records are not errors: readers quarantine them
 * and go on. These are for callers' mistakes and configuration problems.
 */

/** Base class of every error raised by `@cohort/notes`. */
export class NotesError extends Error {
  /**
   * @param message what went wrong and what the caller can do about it
   * @param options `cause`: the underlying error
   */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A rule or pattern file shipped with the layer cannot be read or parsed. */
export class RuleFileError extends NotesError {}

/** An option is out of range (e.g. a chunk size smaller than a sentence overlap). */
export class NotesConfigError extends NotesError {}
