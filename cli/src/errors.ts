/** Base class of errors raised by the command line itself (bad arguments, not a layer failure). */
export class CliError extends Error {
  /**
   * @param message what a person can act on
   * @param exitCode process exit code. Default 2 (usage error).
   */
  constructor(
    message: string,
    readonly exitCode = 2,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}
