import { Logger } from '@aws-lambda-powertools/logger';

/**
 * The logging surface the encoder needs. Powertools' `Logger` satisfies it (pass the handler's own
 * logger in Lambda); the CLI passes one that writes to stderr so that stdout stays machine-readable.
 * Fields carry identifiers and counts only: never note or query text.
 */
export interface EncoderLogger {
  debug(message: string, ...extra: Record<string, unknown>[]): void;
  info(message: string, ...extra: Record<string, unknown>[]): void;
  warn(message: string, ...extra: Record<string, unknown>[]): void;
}

let defaultLogger: EncoderLogger | undefined;

/** The default logger: Powertools for AWS Lambda, service `cohort-encoder`, level from `POWERTOOLS_LOG_LEVEL` (default INFO). */
export function getDefaultLogger(): EncoderLogger {
  if (!defaultLogger) defaultLogger = new Logger({ serviceName: 'cohort-encoder' });
  return defaultLogger;
}
