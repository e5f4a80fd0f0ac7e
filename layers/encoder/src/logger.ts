import { Logger } from '@aws-lambda-powertools/logger';

/**
 * The logging surface the encoder needs. Powertools' `Logger` satisfies it (pass the handler's own
 * logger in Lambda); the CLI passes one that writes to stderr so that stdout stays machine-readable.
 * Fields carry identifiers and counts only: never note or query text.
 */
export interface EncoderLogger {
  debug(message: string, ...extra: object[]): void;
  info(message: string, ...extra: object[]): void;
  warn(message: string, ...extra: object[]): void;
}

let defaultLogger: EncoderLogger | undefined;

/** The default logger: Powertools for AWS Lambda, service `cohort-encoder`, level from `POWERTOOLS_LOG_LEVEL` (default INFO). */
export function getDefaultLogger(): EncoderLogger {
  defaultLogger ??= new Logger({ serviceName: 'cohort-encoder' });
  return defaultLogger;
}
