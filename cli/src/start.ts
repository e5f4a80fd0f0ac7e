import type { EncoderLogger } from '@cohort/encoder';
import type { Command } from 'commander';

/** Adds cohort start, behind npm start (local mode issue) to the program. Placeholder: registers nothing yet. */
export function registerStartCommand(_program: Command, _logger: () => EncoderLogger): void {}
