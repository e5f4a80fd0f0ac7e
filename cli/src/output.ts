import { InvalidArgumentError } from 'commander';

/** Writes one JSON line on stdout: commands print their results this way, logs go to stderr. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/** Parses a positive integer option, with a message commander shows on a bad value. */
export function parsePositiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${value} is not a positive integer`);
  return n;
}

/** Parses an integer option that may be 0, with a message commander shows on a bad value. */
export function parseNonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${value} is not an integer ≥ 0`);
  return n;
}
