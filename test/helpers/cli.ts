import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/** The `cohort` executable as npm links it. */
export const COHORT_BIN = fileURLToPath(new URL('../../cli/bin/cohort.mjs', import.meta.url));

const run = promisify(execFile);

/** Exit code and both streams of one CLI run. */
export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `cohort` as a user would, in a child process; resolves with the exit code and both streams
 * instead of throwing. Logging is at `warn` unless `env` says otherwise.
 */
export async function runCohort(
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(process.execPath, [COHORT_BIN, ...args], {
      env: { ...process.env, COHORT_LOG_LEVEL: 'warn', ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

/** Parses one JSON value per line of a command's stdout. */
export function jsonLines(stdout: string): Record<string, unknown>[] {
  return stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
