import { IndexError, IntegrityError } from '../errors.ts';

/** A vector given to a segment build is unusable: wrong length, not finite, or zero. */
export class InvalidVectorError extends IndexError {
  /**
   * @param index position of the offending vector (= chunk index) in the caller's input
   * @param reason what is wrong with it
   */
  constructor(
    readonly index: number,
    reason: string,
  ) {
    super(`vector of chunk ${index} is invalid: ${reason}`);
  }
}

/**
 * A segment failed its integrity check on open: a file missing, of the wrong size or checksum, a
 * malformed `segment.json`, or dims, metric or model fingerprint other than expected.
 */
export class SegmentIntegrityError extends IntegrityError {
  /**
   * @param segment the segment's id, or its directory when the id is not known yet
   * @param file the file at fault (e.g. `graph.hnsw`, `segment.json`)
   * @param reason what is wrong
   * @param options `cause`: the underlying error
   */
  constructor(
    readonly segment: string,
    readonly file: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`segment ${segment}: ${file}: ${reason}`, options);
  }
}
