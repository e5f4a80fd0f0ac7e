/**
 * Errors raised by the encoder layer. Every error is an {@link EncoderError}; catch the base class
 * to handle all of them, or a named subclass for one failure. The original error, where there is
 * one, is kept as `cause`.
 */

/** Base class of every error raised by `@cohort/encoder`. */
export class EncoderError extends Error {
  /**
   * @param message what went wrong and, where possible, what the caller can do about it
   * @param options `cause`: the underlying error
   */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A checkpoint file cannot be read: unknown container, corrupt archive, unsupported pickle opcode. */
export class CheckpointFormatError extends EncoderError {}

/** A checkpoint tensor is missing, has an unexpected shape or dtype, or the config is not a BERT config. */
export class CheckpointContentError extends EncoderError {}

/** A model bundle directory is incomplete or inconsistent (missing file, bad `model.json`, checksum). */
export class BundleError extends EncoderError {}

/** No model bundle is at hand and none can be downloaded (e.g. no network); the message names the options. */
export class ModelUnavailableError extends EncoderError {}

/** An execution provider was asked for by name and is not available on this machine. */
export class ProviderUnavailableError extends EncoderError {}

/** An input is longer than the model's maximum sequence length and the caller chose `onOverflow: 'error'`. */
export class SequenceTooLongError extends EncoderError {
  /**
   * @param index position of the offending text in the caller's input
   * @param tokens its length in tokens, special tokens included
   * @param maxLength the model's maximum sequence length
   */
  constructor(
    readonly index: number,
    readonly tokens: number,
    readonly maxLength: number,
  ) {
    super(
      `input ${index} is ${tokens} tokens long, over the model's maximum of ${maxLength}; ` +
        `split it into chunks first, or pass onOverflow: 'truncate' to cut it and count it`,
    );
  }
}

/** A download from the Hugging Face hub failed (HTTP error, network error, integrity check). */
export class HubDownloadError extends EncoderError {}

/** A downloaded or stored file does not match its expected checksum. */
export class IntegrityError extends EncoderError {}
