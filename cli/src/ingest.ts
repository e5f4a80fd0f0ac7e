import type { EncoderLogger } from '@cohort/encoder';
import type { Command } from 'commander';

/** Adds cohort ingest (embed pipeline issue) to the program. Placeholder: registers nothing yet. */
export function registerIngestCommand(_program: Command, _logger: () => EncoderLogger): void {}
