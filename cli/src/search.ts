import type { EncoderLogger } from '@cohort/encoder';
import type { Command } from 'commander';

/** Adds cohort search and cohort serve (query API issue) to the program. Placeholder: registers nothing yet. */
export function registerSearchCommands(_program: Command, _logger: () => EncoderLogger): void {}
